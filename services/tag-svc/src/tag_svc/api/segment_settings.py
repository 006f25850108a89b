"""/v1/segment-settings: the tenant's timezone, the one every segment window is counted in.

"Within 30 days" means 30 calendar days in the tenant's timezone (Asia/Shanghai unless set here):
facts are bucketed by their day there, "today" and the time-driven changes (a window passing at
local midnight) follow it. Set it when the tenant starts: a change applies to the facts that
arrive after it and to "today" from then on; facts already recorded keep the day they were
bucketed in.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from scrm_shared.auth import AdminOnly, AdminOrOperator
from tag_svc.api.deps import Pool
from tag_svc.api.segments import today_of
from tag_svc.processor.store import catalog
from tag_svc.processor.tenants import timezones

__all__ = ["router"]

router = APIRouter(prefix="/v1/segment-settings", tags=["segments"])


class SegmentSettingsIn(BaseModel):
    timezone: str = Field(description="IANA timezone name, e.g. Asia/Shanghai.", examples=["Asia/Shanghai"])

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class SegmentSettingsOut(BaseModel):
    timezone: str
    today: date = Field(description="Today in that timezone: the day windows are counted back from.")


async def _settings(pool: Pool, request: Request, tenant_id: str) -> SegmentSettingsOut:
    zone = (await timezones(pool, [tenant_id]))[tenant_id]
    _, today = await today_of(pool, request, tenant_id)
    return SegmentSettingsOut(timezone=zone.key, today=today)


@router.get("", response_model=SegmentSettingsOut, summary="The tenant's segment timezone")
async def get_settings(request: Request, principal: AdminOrOperator, pool: Pool) -> SegmentSettingsOut:
    return await _settings(pool, request, principal.tenant_id)


@router.put("", response_model=SegmentSettingsOut, summary="Set the tenant's segment timezone")
async def set_settings(
    body: SegmentSettingsIn, request: Request, principal: AdminOnly, pool: Pool
) -> SegmentSettingsOut:
    await catalog.set_timezone(pool, principal.tenant_id, body.timezone)
    return await _settings(pool, request, principal.tenant_id)
