"""A tenant as the segment engine needs it: its timezone, its segments (parsed once per rule
version), and its RFM thresholds (derived from its own buyers when it has none)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tag_svc.processor.model import LiveSegment, TenantView, rule_inputs
from tag_svc.processor.store import Conn, Executor, catalog
from tag_svc.segments import DEFAULT_TZ, RfmThresholds, day_in, parse_rule
from tag_svc.segments.sql import rfm_medians_query, thresholds_from_medians_row

__all__ = ["SegmentCache", "ensure_rfm", "load_view", "recompute_rfm", "thresholds_of", "timezones"]

log = logging.getLogger(__name__)


class SegmentCache:
    """Parsed rules by (tenant, segment, version): a batch re-reads the segment rows (cheap) but
    parses a rule only once per edit."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, UUID, int], LiveSegment] = {}

    def get(self, tenant_id: str, segment_id: UUID, version: int, rule: object) -> LiveSegment:
        key = (tenant_id, segment_id, version)
        segment = self._parsed.get(key)
        if segment is None:
            parsed = parse_rule(rule)
            segment = self._parsed[key] = LiveSegment(segment_id, parsed, version, rule_inputs(parsed))
        return segment


async def timezones(db: Executor, tenants: Collection[str]) -> dict[str, ZoneInfo]:
    """Each tenant's timezone (Asia/Shanghai unless the tenant set another)."""
    names = await catalog.timezones(db, tenants)
    out: dict[str, ZoneInfo] = {}
    for tenant in tenants:
        try:
            out[tenant] = ZoneInfo(names[tenant]) if tenant in names else DEFAULT_TZ
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown timezone for tenant, using the default", extra={"tenant_id": tenant})
            out[tenant] = DEFAULT_TZ
    return out


async def load_view(
    conn: Conn,
    cache: SegmentCache,
    tenant_id: str,
    tz: ZoneInfo,
    now: datetime,
    *,
    only: UUID | None = None,
) -> TenantView:
    """The tenant's segments (or just segment ``only``) as of now, with today and thresholds.

    Read after the contacts are locked, so an edit that committed before the lock is seen.
    """
    rows = await catalog.live_segments(conn, tenant_id)
    segments = tuple(
        cache.get(tenant_id, r["segment_id"], r["rule_version"], r["rule"])
        for r in sorted(rows, key=lambda r: r["segment_id"])
        if only is None or r["segment_id"] == only
    )
    today = day_in(now, tz)
    rfm = await ensure_rfm(conn, tenant_id, today) if any(s.uses_rfm for s in segments) else None
    return TenantView(tenant_id, tz, today, segments, rfm)


async def ensure_rfm(db: Executor, tenant_id: str, today: date) -> RfmThresholds:
    """The tenant's thresholds; derived from its buyers and stored when it has none yet."""
    row = await catalog.rfm_thresholds(db, tenant_id)
    if row is not None:
        return thresholds_of(row)
    thresholds, _ = await recompute_rfm(db, tenant_id, today)
    return thresholds


def thresholds_of(row: Mapping[str, Any]) -> RfmThresholds:
    """The thresholds of an ``rfm_thresholds`` row."""
    return RfmThresholds(
        row["recent_within_days"],
        row["frequent_min_orders"],
        Decimal(row["monetary_min"]),
        row["window_days"],
    )


async def recompute_rfm(
    db: Executor, tenant_id: str, today: date, window_days: int = 365
) -> tuple[RfmThresholds, int]:
    """Derive the tenant's thresholds from its buyers' medians (docs/segments.md) and store them;
    returns them with the number of buyers they came from."""
    (row,) = await catalog.run_compiled(db, rfm_medians_query(tenant_id, today, window_days))
    thresholds = thresholds_from_medians_row(row, window_days)
    await catalog.save_rfm_thresholds(db, tenant_id, thresholds, derived=True, buyers=int(row["buyers"]))
    return thresholds, int(row["buyers"])
