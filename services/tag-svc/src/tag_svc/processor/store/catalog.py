"""SQL of segment definitions and backfill progress, tenants' timezones and RFM thresholds, and
the reads the segments API serves (members, a contact's segments, size history, previews)."""

# Statements share fixed column lists (module constants) through f-strings; no value is ever
# formatted into SQL, values are $n arguments: which is what S608 guards against.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from tag_svc.processor.store import Conn, Executor
from tag_svc.segments import CompiledSql, ContactRange, RfmThresholds, Rule, SqlParams, compile_sql

__all__ = [
    "SegmentRow",
    "backfill_state",
    "backfilling",
    "contact_ranges",
    "contact_segments",
    "count_profiles",
    "delete_segment",
    "finish_backfill",
    "get_segment",
    "history",
    "insert_segment",
    "is_followed_by",
    "list_segments",
    "live_segments",
    "members_page",
    "plan_cost",
    "preview",
    "preview_rule",
    "record_backfill_chunk",
    "restart_rfm_backfills",
    "rfm_thresholds",
    "run_compiled",
    "save_rfm_thresholds",
    "set_timezone",
    "tenants_with_segments",
    "timezones",
    "update_segment",
]

SegmentRow = asyncpg.Record

_SEGMENT = """segment_id, name, rule, rule_version, uses_rfm, status, backfill_cause, backfill_processed,
backfill_total, size, created_at, updated_at"""

SELECT_TIMEZONES = "SELECT tenant_id, timezone FROM segment_tenants WHERE tenant_id = ANY($1::text[])"

UPSERT_TIMEZONE = """
INSERT INTO segment_tenants (tenant_id, timezone) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET timezone = EXCLUDED.timezone
"""

# What the processor evaluates: every segment of the tenant, live or still backfilling (a contact
# an event touches mid-backfill is evaluated at once, wherever the backfill's cursor is).
SELECT_LIVE_SEGMENTS = "SELECT segment_id, rule_version, rule FROM segments WHERE tenant_id = $1"

# The schedule's starting point, across tenants: only tenants with segments have anything due.
SELECT_TENANTS_WITH_SEGMENTS = "SELECT DISTINCT tenant_id FROM segments ORDER BY tenant_id"

COUNT_PROFILES = "SELECT count(*) FROM profiles WHERE tenant_id = $1 AND status <> 'erased'"

INSERT_SEGMENT = f"""
INSERT INTO segments (tenant_id, segment_id, name, rule, uses_rfm, status, backfill_cause, backfill_cursor,
                      backfill_total)
VALUES ($1, $2, $3, $4::text::jsonb, $5, 'backfilling', 'backfill', '', $6)
RETURNING {_SEGMENT}
"""

SELECT_SEGMENTS = f"SELECT {_SEGMENT} FROM segments WHERE tenant_id = $1 ORDER BY created_at, segment_id"
SELECT_SEGMENT = f"SELECT {_SEGMENT} FROM segments WHERE tenant_id = $1 AND segment_id = $2"
LOCK_SEGMENT = f"SELECT {_SEGMENT} FROM segments WHERE tenant_id = $1 AND segment_id = $2 FOR UPDATE"

# A new rule: a new version, and a backfill from the first profile (chunks of the old version
# still in flight are refused when they commit).
UPDATE_SEGMENT_RULE = f"""
UPDATE segments SET name = $3, rule = $4::text::jsonb, uses_rfm = $5, rule_version = rule_version + 1,
    status = 'backfilling', backfill_cause = 'rule-edited', backfill_cursor = '', backfill_processed = 0,
    backfill_total = $6, updated_at = now()
WHERE tenant_id = $1 AND segment_id = $2
RETURNING {_SEGMENT}
"""

RENAME_SEGMENT = f"""
UPDATE segments SET name = $3, updated_at = now() WHERE tenant_id = $1 AND segment_id = $2
RETURNING {_SEGMENT}
"""

# The tenant's RFM thresholds moved: every segment using them is recomputed like an edit.
RESTART_RFM_BACKFILLS = """
UPDATE segments SET rule_version = rule_version + 1, status = 'backfilling', backfill_cause = 'rule-edited',
    backfill_cursor = '', backfill_processed = 0, backfill_total = $2, updated_at = now()
WHERE tenant_id = $1 AND uses_rfm
"""

# Members, size history and (through the cascade) everything else of the segment go with it.
DELETE_SEGMENT = "DELETE FROM segments WHERE tenant_id = $1 AND segment_id = $2 RETURNING name, size"

# The backfill runner's queue scan, across tenants: the segment whose last chunk is oldest.
SELECT_BACKFILLING = """
SELECT tenant_id, segment_id FROM segments WHERE status = 'backfilling' ORDER BY updated_at LIMIT $1
"""

SELECT_BACKFILL_STATE = """
SELECT rule, rule_version, backfill_cause, backfill_cursor FROM segments
WHERE tenant_id = $1 AND segment_id = $2 AND status = 'backfilling'
"""

# A chunk's progress commits only under the rule version it was computed with.
RECORD_BACKFILL_CHUNK = """
UPDATE segments SET backfill_cursor = $4, backfill_processed = backfill_processed + $5,
    backfill_total = GREATEST(backfill_total, backfill_processed + $5), updated_at = now()
WHERE tenant_id = $1 AND segment_id = $2 AND rule_version = $3 AND status = 'backfilling'
RETURNING segment_id
"""

FINISH_BACKFILL = """
UPDATE segments SET status = 'live', backfill_total = backfill_processed, updated_at = now()
WHERE tenant_id = $1 AND segment_id = $2 AND rule_version = $3 AND status = 'backfilling'
RETURNING segment_id
"""

SELECT_RFM = """
SELECT recent_within_days, frequent_min_orders, monetary_min, window_days, derived, buyers, computed_at
FROM rfm_thresholds WHERE tenant_id = $1
"""

UPSERT_RFM = """
INSERT INTO rfm_thresholds (tenant_id, recent_within_days, frequent_min_orders, monetary_min, window_days,
                            derived, buyers, computed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (tenant_id) DO UPDATE SET
    recent_within_days = EXCLUDED.recent_within_days, frequent_min_orders = EXCLUDED.frequent_min_orders,
    monetary_min = EXCLUDED.monetary_min, window_days = EXCLUDED.window_days, derived = EXCLUDED.derived,
    buyers = EXCLUDED.buyers, computed_at = EXCLUDED.computed_at
"""

# Cursor pagination in key order; a guide sees the members among the contacts they follow.
SELECT_MEMBERS_PAGE = """
SELECT m.external_userid, m.entered_at FROM segment_members m
WHERE m.tenant_id = $1 AND m.segment_id = $2 AND m.external_userid > $3
ORDER BY m.external_userid
LIMIT $4
"""
SELECT_MEMBERS_PAGE_OF_STAFF = """
SELECT m.external_userid, m.entered_at FROM segment_members m
JOIN profiles p ON p.tenant_id = m.tenant_id AND p.external_userid = m.external_userid
WHERE m.tenant_id = $1 AND m.segment_id = $2 AND m.external_userid > $3 AND p.staff_ids @> ARRAY[$5::text]
ORDER BY m.external_userid
LIMIT $4
"""

SELECT_CONTACT_SEGMENTS = """
SELECT m.segment_id, s.name, m.entered_at FROM segment_members m
JOIN segments s ON s.tenant_id = m.tenant_id AND s.segment_id = m.segment_id
WHERE m.tenant_id = $1 AND m.external_userid = $2
ORDER BY s.name, m.segment_id
"""

SELECT_IS_FOLLOWED_BY = """
SELECT EXISTS (SELECT 1 FROM profiles WHERE tenant_id = $1 AND external_userid = $2 AND staff_ids @> ARRAY[$3::text])
"""

SELECT_HISTORY = """
SELECT day, size, entered, exited FROM segment_size_history
WHERE tenant_id = $1 AND segment_id = $2 AND day BETWEEN $3 AND $4
ORDER BY day
"""
SELECT_SIZE_BEFORE = """
SELECT size FROM segment_size_history
WHERE tenant_id = $1 AND segment_id = $2 AND day < $3
ORDER BY day DESC
LIMIT 1
"""

# Previews: the compiled rule (tag_svc.segments.compile_sql, arguments from $2 on) over the
# tenant's profiles (one contact range of them). The predicate holds only $n placeholders and fixed
# SQL, never a value. Count and sample in one statement over the materialised matches: measured at
# 1M profiles split in two ranges, p50 over the 20 benchmark rules 560 -> 404 ms against a count
# and then a sample (which evaluates the rule again when the matches are not found in key order).
PREVIEW = """
WITH m AS MATERIALIZED (
    SELECT p.external_userid FROM profiles p
    WHERE p.tenant_id = $1 AND p.status <> 'erased' AND ({predicate})
)
SELECT (SELECT count(*) FROM m) AS matches,
       ARRAY(SELECT m.external_userid FROM m ORDER BY m.external_userid LIMIT {limit}) AS sample
"""


async def set_timezone(db: Executor, tenant_id: str, timezone: str) -> None:
    """Store the tenant's timezone (an IANA name the caller has checked)."""
    await db.execute(UPSERT_TIMEZONE, tenant_id, timezone)


async def timezones(db: Executor, tenants: Collection[str]) -> dict[str, str]:
    """The timezone name of each tenant that set one."""
    rows = await db.fetch(SELECT_TIMEZONES, sorted(tenants))
    return {r["tenant_id"]: r["timezone"] for r in rows}


async def live_segments(conn: Conn, tenant_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_LIVE_SEGMENTS, tenant_id)


async def tenants_with_segments(db: Executor) -> list[str]:
    return [r["tenant_id"] for r in await db.fetch(SELECT_TENANTS_WITH_SEGMENTS)]


async def count_profiles(db: Executor, tenant_id: str) -> int:
    return int(await db.fetchval(COUNT_PROFILES, tenant_id))


async def insert_segment(
    conn: Conn, tenant_id: str, segment_id: UUID, name: str, rule: dict[str, Any], uses_rfm: bool, total: int
) -> SegmentRow:
    row = await conn.fetchrow(INSERT_SEGMENT, tenant_id, segment_id, name, _json(rule), uses_rfm, total)
    assert row is not None
    return row


async def list_segments(db: Executor, tenant_id: str) -> list[SegmentRow]:
    return await db.fetch(SELECT_SEGMENTS, tenant_id)


async def get_segment(
    db: Executor, tenant_id: str, segment_id: UUID, *, lock: bool = False
) -> SegmentRow | None:
    return await db.fetchrow(LOCK_SEGMENT if lock else SELECT_SEGMENT, tenant_id, segment_id)


async def update_segment(
    conn: Conn,
    tenant_id: str,
    segment_id: UUID,
    name: str,
    rule: dict[str, Any] | None = None,
    uses_rfm: bool = False,
    total: int = 0,
) -> SegmentRow | None:
    """Rename, or with ``rule`` replace the rule and restart the backfill."""
    if rule is None:
        return await conn.fetchrow(RENAME_SEGMENT, tenant_id, segment_id, name)
    return await conn.fetchrow(UPDATE_SEGMENT_RULE, tenant_id, segment_id, name, _json(rule), uses_rfm, total)


async def restart_rfm_backfills(conn: Conn, tenant_id: str, total: int) -> None:
    await conn.execute(RESTART_RFM_BACKFILLS, tenant_id, total)


async def delete_segment(conn: Conn, tenant_id: str, segment_id: UUID) -> asyncpg.Record | None:
    """Delete the segment (its members and history cascade); its name and size, ``None`` when
    there was no such segment."""
    return await conn.fetchrow(DELETE_SEGMENT, tenant_id, segment_id)


async def backfilling(db: Executor, limit: int) -> list[tuple[str, UUID]]:
    return [(r["tenant_id"], r["segment_id"]) for r in await db.fetch(SELECT_BACKFILLING, limit)]


async def backfill_state(conn: Conn, tenant_id: str, segment_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BACKFILL_STATE, tenant_id, segment_id)


async def record_backfill_chunk(
    conn: Conn, tenant_id: str, segment_id: UUID, version: int, cursor: str, processed: int
) -> bool:
    """Move the cursor; ``False`` when the rule changed (or the segment went) meanwhile."""
    return (
        await conn.fetchval(RECORD_BACKFILL_CHUNK, tenant_id, segment_id, version, cursor, processed)
        is not None
    )


async def finish_backfill(conn: Conn, tenant_id: str, segment_id: UUID, version: int) -> bool:
    return await conn.fetchval(FINISH_BACKFILL, tenant_id, segment_id, version) is not None


async def rfm_thresholds(db: Executor, tenant_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_RFM, tenant_id)


async def save_rfm_thresholds(
    db: Executor, tenant_id: str, thresholds: RfmThresholds, *, derived: bool, buyers: int | None
) -> None:
    await db.execute(
        UPSERT_RFM,
        tenant_id,
        thresholds.recent_within_days,
        thresholds.frequent_min_orders,
        thresholds.monetary_min,
        thresholds.window_days,
        derived,
        buyers,
    )


async def run_compiled(db: Executor, query: CompiledSql) -> list[asyncpg.Record]:
    """Rows of one of tag_svc.segments.sql's RFM queries (built there, values as arguments)."""
    return await db.fetch(query.sql, *query.args)


async def members_page(
    db: Executor, tenant_id: str, segment_id: UUID, after: str, limit: int, staff_id: str | None
) -> list[asyncpg.Record]:
    if staff_id is None:
        return await db.fetch(SELECT_MEMBERS_PAGE, tenant_id, segment_id, after, limit)
    return await db.fetch(SELECT_MEMBERS_PAGE_OF_STAFF, tenant_id, segment_id, after, limit, staff_id)


async def contact_segments(db: Executor, tenant_id: str, external_userid: str) -> list[asyncpg.Record]:
    return await db.fetch(SELECT_CONTACT_SEGMENTS, tenant_id, external_userid)


async def is_followed_by(db: Executor, tenant_id: str, external_userid: str, staff_id: str) -> bool:
    return bool(await db.fetchval(SELECT_IS_FOLLOWED_BY, tenant_id, external_userid, staff_id))


async def history(
    db: Executor, tenant_id: str, segment_id: UUID, first: date, last: date
) -> tuple[int, list[asyncpg.Record]]:
    """The size before ``first`` and the history rows of ``first..last``."""
    before = await db.fetchval(SELECT_SIZE_BEFORE, tenant_id, segment_id, first)
    rows = await db.fetch(SELECT_HISTORY, tenant_id, segment_id, first, last)
    return int(before or 0), rows


# A preview scans a whole tenant once: plan it for its actual window (a generic plan, which
# asyncpg's prepared statements get after five runs of one rule shape, cannot see the window's
# days and took 4.4 s instead of 1.5 s for a 365-day count over 1M profiles), and skip JIT
# compilation, which costs more than it saves on these plans.
PREVIEW_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan",
    "SET LOCAL jit = off",
)
# A tenant's contacts split into ranges of about equal size by key, from a 1% sample of the
# profiles' pages (how many it saw says how large the tenant is).
CONTACT_SPLITS = """
SELECT count(*) AS sampled, percentile_disc($2::float8[]) WITHIN GROUP (ORDER BY external_userid) AS bounds
FROM profiles TABLESAMPLE SYSTEM (1) WHERE tenant_id = $1
"""
SAMPLED_SHARE = 100  # 1 %: a sampled profile stands for about this many


async def contact_ranges(
    db: Executor, tenant_id: str, parts: int, *, min_contacts: int
) -> list[ContactRange]:
    """The tenant's contacts as up to ``parts`` key ranges of about equal size, together covering
    every key (one range, unbounded, for a tenant of fewer than about ``min_contacts``). The
    split only balances work: any boundaries give the same union."""
    if parts < 2:
        return [ContactRange(None, None)]
    row = await db.fetchrow(CONTACT_SPLITS, tenant_id, [i / parts for i in range(1, parts)])
    if row is None or row["sampled"] * SAMPLED_SHARE < min_contacts or not row["bounds"]:
        return [ContactRange(None, None)]
    # Increasing in the database's collation (its order, not Python's), duplicates dropped.
    bounds: list[str | None] = [None, *dict.fromkeys(row["bounds"]), None]
    return [ContactRange(first, end) for first, end in itertools.pairwise(bounds)]


async def preview_rule(
    pool: asyncpg.Pool,
    tenant_id: str,
    rule: Rule,
    params: SqlParams,
    sample: int,
    *,
    parallelism: int,
    min_contacts: int,
    min_cost: float = 0.0,
) -> tuple[int, list[str]]:
    """How many of the tenant's contacts ``rule`` matches, and the first ``sample`` of them.

    A rule PostgreSQL expects to cost at least ``min_cost`` (its planner's units) over a tenant
    of about ``min_contacts`` or more is counted as up to ``parallelism`` contact ranges side by
    side (:func:`contact_ranges`, never more than the pool's connections), each by its own
    compiled predicate (:func:`preview`). A cheaper rule is one statement: a second connection
    and a second plan cost it about as much as the split saves.
    """
    whole = compile_sql(rule, params, first_arg=2)
    parts = min(parallelism, pool.get_max_size())
    if parts > 1 and (min_cost <= 0 or await plan_cost(pool, tenant_id, whole, sample) >= min_cost):
        ranges = await contact_ranges(pool, tenant_id, parts, min_contacts=min_contacts)
        if len(ranges) > 1:
            predicates = [compile_sql(rule, replace(params, contacts=r), first_arg=2) for r in ranges]
            return await preview(pool, tenant_id, predicates, sample)
    return await preview(pool, tenant_id, [whole], sample)


async def plan_cost(pool: asyncpg.Pool, tenant_id: str, predicate: CompiledSql, sample: int) -> float:
    """The planner's estimated total cost of the preview statement of ``predicate`` (with the
    preview's settings: a custom plan for the actual values)."""
    sql = PREVIEW.format(predicate=predicate.sql, limit=int(sample))
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        for setting in PREVIEW_SETTINGS:
            await conn.execute(setting)
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", tenant_id, *predicate.args)
    if isinstance(plan, str):  # json without a codec on the connection
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Total Cost"])


async def preview(
    pool: asyncpg.Pool, tenant_id: str, predicates: Sequence[CompiledSql], sample: int
) -> tuple[int, list[str]]:
    """How many of the tenant's contacts match, and the first ``sample`` of them in key order.

    ``predicates``: the rule compiled (with ``first_arg=2``) once per contact range of
    :func:`contact_ranges`, in key order. Each range is counted on its own connection, side by
    side, all in one snapshot (exported by the first, imported by the others): the sum is the
    count at one instant, as if one statement had counted them all.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for setting in PREVIEW_SETTINGS:
            await conn.execute(setting)
        if len(predicates) == 1:
            results = [await _preview_range(conn, tenant_id, predicates[0], sample)]
        else:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            # A failing range cancels the others (their connections go back to the pool).
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(_preview_range(conn, tenant_id, predicates[0], sample))]
                tasks += [
                    group.create_task(_preview_imported(pool, snapshot, tenant_id, p, sample))
                    for p in predicates[1:]
                ]
            results = [t.result() for t in tasks]
    # Ranges in key order, each sample in key order: their concatenation is in key order.
    count = sum(n for n, _ in results)
    return count, [euid for _, found in results for euid in found][:sample]


async def _preview_imported(
    pool: asyncpg.Pool, snapshot: str, tenant_id: str, predicate: CompiledSql, sample: int
) -> tuple[int, list[str]]:
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        for setting in PREVIEW_SETTINGS:
            await conn.execute(setting)
        return await _preview_range(conn, tenant_id, predicate, sample)


_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")


async def _preview_range(
    conn: Conn, tenant_id: str, predicate: CompiledSql, sample: int
) -> tuple[int, list[str]]:
    sql = PREVIEW.format(predicate=predicate.sql, limit=int(sample))
    row = await conn.fetchrow(sql, tenant_id, *predicate.args)
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row["matches"]), list(row["sample"])


def _json(value: Any) -> str:
    # The rule column is written through text (::jsonb) so the statement does not depend on the
    # connection's jsonb codec.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
