"""/v1/rfm: the tenant's RFM thresholds and how many contacts each of the 8 classes holds.

Thresholds are derived from the tenant's own buyers (medians, docs/segments.md) when first
needed, re-derived on request (``POST /v1/rfm/thresholds/recompute``), or set explicitly
(``PUT``). A change re-backfills every segment with an ``rfm`` condition (cause
``rule-edited``): their memberships follow the new thresholds.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from scrm_shared.auth import AdminOnly, AdminOrOperator
from tag_svc.api.deps import Pool
from tag_svc.api.segment_models import RfmClassCount, RfmClasses, RfmThresholdsIn, RfmThresholdsOut
from tag_svc.api.segments import today_of
from tag_svc.processor.store import Executor, catalog
from tag_svc.processor.tenants import ensure_rfm, recompute_rfm, thresholds_of
from tag_svc.segments import RFM_CLASSES
from tag_svc.segments.sql import rfm_class_counts_query

__all__ = ["router"]

router = APIRouter(prefix="/v1/rfm", tags=["rfm"])


async def _stored(db: Executor, tenant_id: str) -> RfmThresholdsOut:
    row = await catalog.rfm_thresholds(db, tenant_id)
    assert row is not None
    return RfmThresholdsOut(**dict(row))


@router.get("/thresholds", response_model=RfmThresholdsOut, summary="The tenant's RFM thresholds")
async def get_thresholds(request: Request, principal: AdminOrOperator, pool: Pool) -> RfmThresholdsOut:
    tenant = principal.tenant_id
    _, today = await today_of(pool, request, tenant)
    await ensure_rfm(pool, tenant, today)
    return await _stored(pool, tenant)


@router.put("/thresholds", response_model=RfmThresholdsOut, summary="Set the tenant's RFM thresholds")
async def set_thresholds(body: RfmThresholdsIn, principal: AdminOnly, pool: Pool) -> RfmThresholdsOut:
    tenant = principal.tenant_id
    async with pool.acquire() as conn, conn.transaction():
        await catalog.save_rfm_thresholds(conn, tenant, body.thresholds(), derived=False, buyers=None)
        await catalog.restart_rfm_backfills(conn, tenant, await catalog.count_profiles(conn, tenant))
        return await _stored(conn, tenant)


@router.post(
    "/thresholds/recompute",
    response_model=RfmThresholdsOut,
    summary="Derive the thresholds from the buyers again",
)
async def recompute_thresholds(request: Request, principal: AdminOnly, pool: Pool) -> RfmThresholdsOut:
    tenant = principal.tenant_id
    async with pool.acquire() as conn, conn.transaction():
        _, today = await today_of(conn, request, tenant)
        row = await catalog.rfm_thresholds(conn, tenant)
        before = thresholds_of(row) if row is not None else None
        after, _ = await recompute_rfm(conn, tenant, today, before.window_days if before else 365)
        if after != before:
            await catalog.restart_rfm_backfills(conn, tenant, await catalog.count_profiles(conn, tenant))
        return await _stored(conn, tenant)


@router.get("/classes", response_model=RfmClasses, summary="Contacts per RFM class today")
async def class_counts(request: Request, principal: AdminOrOperator, pool: Pool) -> RfmClasses:
    """Buyers per class under the tenant's thresholds (contacts without an order in the last 3650
    days have no class and are not counted)."""
    tenant = principal.tenant_id
    _, today = await today_of(pool, request, tenant)
    thresholds = await ensure_rfm(pool, tenant, today)
    rows = await catalog.run_compiled(pool, rfm_class_counts_query(tenant, today, thresholds))
    counts = {r["rfm_class"]: r["contacts"] for r in rows}
    return RfmClasses(
        day=today,
        thresholds=await _stored(pool, tenant),
        classes=[RfmClassCount(rfm_class=c, contacts=counts.get(c, 0)) for c in RFM_CLASSES],
    )
