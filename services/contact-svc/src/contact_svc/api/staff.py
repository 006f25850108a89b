"""/v1/staff and /v1/stores: the tenant's staff (WeCom userids) and stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from contact_svc.api.contacts import Pool
from contact_svc.schemas import Staff, StaffIn, Store, StoreIn
from contact_svc.store import directory
from scrm_shared.auth import AdminOnly, AdminOrOperator, AnyRole
from scrm_shared.problems import Problem

router = APIRouter(tags=["staff"])

StaffId = Annotated[str, Path(min_length=1, max_length=256)]
StoreId = Annotated[str, Path(min_length=1, max_length=256)]


def _unknown_store() -> Problem:
    return Problem(
        422,
        "Unknown store",
        "store_id is not a store of this tenant; create it with PUT /v1/stores/{store_id} first",
        type="unknown-store",
    )


@router.get("/v1/staff", response_model=list[Staff], summary="Staff with their follower counts")
async def list_staff(principal: AnyRole, pool: Pool) -> list[Staff]:
    """Staff members of the tenant with the customers each actively follows (a guide: themself)."""
    # A guide sees their own row only: other guides' customer counts are not theirs to compare.
    only = principal.staff_id if principal.is_guide else None
    rows = await directory.list_staff(pool, principal.tenant_id, only=only)
    return [Staff(**dict(r)) for r in rows]


@router.put("/v1/staff/{staff_id}", response_model=Staff, summary="Create or update a staff member")
async def put_staff(staff_id: StaffId, body: StaffIn, principal: AdminOnly, pool: Pool) -> Staff:
    """Set a staff member's name, store or status; fields not given stay as they are."""
    fields = body.model_dump(include=body.model_fields_set)
    async with pool.acquire() as conn, conn.transaction():
        if body.store_id is not None and not await directory.store_exists(
            conn, principal.tenant_id, body.store_id
        ):
            raise _unknown_store()
        row = await directory.upsert_staff(conn, principal.tenant_id, staff_id, fields=fields)
    return Staff(**dict(row))


@router.get("/v1/stores", response_model=list[Store], summary="Stores")
async def list_stores(principal: AnyRole, pool: Pool) -> list[Store]:
    """Stores of the tenant, named or only seen in events so far."""
    return [Store(**dict(r)) for r in await directory.list_stores(pool, principal.tenant_id)]


@router.put("/v1/stores/{store_id}", response_model=Store, summary="Create or rename a store")
async def put_store(store_id: StoreId, body: StoreIn, principal: AdminOrOperator, pool: Pool) -> Store:
    """Create or rename a store."""
    row = await directory.upsert_store(pool, principal.tenant_id, store_id, body.name)
    return Store(**dict(row))
