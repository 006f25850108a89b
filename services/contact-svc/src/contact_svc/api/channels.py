"""/v1/channels: channel QR codes, by their WeCom ``state`` (which store/poster/campaign)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from contact_svc.api.contacts import Pool
from contact_svc.schemas import Channel, ChannelIn
from contact_svc.store import directory
from scrm_shared.auth import AdminOrOperator, AnyRole
from scrm_shared.problems import Problem

router = APIRouter(prefix="/v1/channels", tags=["channels"])

State = Annotated[str, Path(min_length=1, max_length=256)]


@router.get("", response_model=list[Channel], summary="Channel codes")
async def list_channels(principal: AnyRole, pool: Pool) -> list[Channel]:
    """Channel codes of the tenant."""
    return [Channel(**dict(r)) for r in await directory.list_channels(pool, principal.tenant_id)]


@router.put("/{state}", response_model=Channel, summary="Create or replace a channel code")
async def put_channel(state: State, body: ChannelIn, principal: AdminOrOperator, pool: Pool) -> Channel:
    """Friends added through this code later are attributed to its store (when their event has none)."""
    async with pool.acquire() as conn, conn.transaction():
        if body.store_id is not None and not await directory.store_exists(
            conn, principal.tenant_id, body.store_id
        ):
            raise Problem(
                422,
                "Unknown store",
                "store_id is not a store of this tenant; create it with PUT /v1/stores/{store_id} first",
                type="unknown-store",
            )
        row = await directory.upsert_channel(
            conn,
            principal.tenant_id,
            state,
            name=body.name,
            store_id=body.store_id,
            campaign_id=body.campaign_id,
        )
    return Channel(**dict(row))
