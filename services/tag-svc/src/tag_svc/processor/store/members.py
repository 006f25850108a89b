"""SQL of memberships, segment sizes and their daily history, and the schedule of time-driven
re-evaluations.

Lock order, the same for every writer (processor, schedule, backfill): the contacts' ``profiles``
rows first (see :mod:`.profiles`), then the ``segments`` rows whose size changes (``segment_id``
order) ``FOR KEY SHARE``, then their member rows, and last, just before the commit, those
``segments`` rows again for the size (the ``UPDATE`` locks them ``FOR NO KEY UPDATE``, again in
id order); deleting a segment locks its row (``FOR UPDATE``) before its members. So concurrent
writers wait for each other but never deadlock, and two writers (the processor's lanes, two
workers) only wait for each other over the sizes at the end of their transactions: the key share
lock does not exclude another writer, only a deletion.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from uuid import UUID

from tag_svc.processor.store import Conn, Executor

__all__ = [
    "add_members",
    "apply_sizes",
    "due_contacts",
    "lock_segments",
    "memberships",
    "remove_all",
    "remove_members",
    "schedule_earlier",
    "schedule_exact",
    "still_due",
    "unschedule",
]

SELECT_MEMBERSHIPS = """
SELECT segment_id, external_userid FROM segment_members
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
"""

INSERT_MEMBERS = """
INSERT INTO segment_members (tenant_id, segment_id, external_userid, entered_at)
SELECT $1, x.* FROM unnest($2::uuid[], $3::text[], $4::timestamptz[]) AS x
ON CONFLICT (tenant_id, segment_id, external_userid) DO NOTHING
"""

DELETE_MEMBERS = """
DELETE FROM segment_members m
USING unnest($2::uuid[], $3::text[]) AS x(s, e)
WHERE m.tenant_id = $1 AND m.segment_id = x.s AND m.external_userid = x.e
"""

# Erasure: every membership of the contacts ends.
DELETE_ALL_MEMBERS = """
DELETE FROM segment_members WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
RETURNING segment_id, external_userid
"""

LOCK_SEGMENT_ROWS = """
SELECT segment_id FROM segments WHERE tenant_id = $1 AND segment_id = ANY($2::uuid[])
ORDER BY segment_id
FOR KEY SHARE
"""

# A batch's size changes per segment, and the day's row of the history: the size after the
# change, with the day's entries and exits added up.
APPLY_SIZES = """
WITH d AS (
    SELECT * FROM unnest($3::uuid[], $4::integer[], $5::integer[]) AS x(segment_id, entered, exited)
), s AS (
    UPDATE segments SET size = segments.size + d.entered - d.exited
    FROM d WHERE segments.tenant_id = $1 AND segments.segment_id = d.segment_id
    RETURNING segments.segment_id, segments.size
)
INSERT INTO segment_size_history AS h (tenant_id, segment_id, day, size, entered, exited)
SELECT $1, s.segment_id, $2, s.size, d.entered, d.exited FROM s JOIN d USING (segment_id)
ON CONFLICT (tenant_id, segment_id, day) DO UPDATE SET
    size = EXCLUDED.size, entered = h.entered + EXCLUDED.entered, exited = h.exited + EXCLUDED.exited
"""

# The answer of every segment was computed: the due day is exactly the next change.
UPSERT_SCHEDULE_EXACT = """
INSERT INTO segment_schedule (tenant_id, external_userid, due_day)
SELECT $1, x.* FROM unnest($2::text[], $3::date[]) AS x
ON CONFLICT (tenant_id, external_userid) DO UPDATE SET due_day = EXCLUDED.due_day
"""

# Only some segments were evaluated: the others' next change is still covered by the stored day,
# so the due day may only move earlier (an early wake-up costs one re-evaluation, a late one
# would miss a transition).
UPSERT_SCHEDULE_EARLIER = """
INSERT INTO segment_schedule AS s (tenant_id, external_userid, due_day)
SELECT $1, x.* FROM unnest($2::text[], $3::date[]) AS x
ON CONFLICT (tenant_id, external_userid) DO UPDATE SET due_day = EXCLUDED.due_day
WHERE EXCLUDED.due_day < s.due_day
"""

DELETE_SCHEDULE = "DELETE FROM segment_schedule WHERE tenant_id = $1 AND external_userid = ANY($2::text[])"

# The schedule's scan: contacts of a tenant whose due day has come, earliest first.
SELECT_DUE = """
SELECT external_userid FROM segment_schedule
WHERE tenant_id = $1 AND due_day <= $2
ORDER BY due_day, external_userid
LIMIT $3
"""

# After locking the profiles: are they still due (or did someone re-evaluate them meanwhile)?
SELECT_STILL_DUE = """
SELECT external_userid, due_day FROM segment_schedule
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND due_day <= $3
"""


async def memberships(conn: Conn, tenant_id: str, euids: Collection[str]) -> dict[str, set[UUID]]:
    """The segments each of ``euids`` is stored as a member of."""
    out: dict[str, set[UUID]] = {}
    if euids:
        for r in await conn.fetch(SELECT_MEMBERSHIPS, tenant_id, list(euids)):
            out.setdefault(r["external_userid"], set()).add(r["segment_id"])
    return out


async def add_members(conn: Conn, tenant_id: str, rows: Sequence[tuple[UUID, str, datetime]]) -> None:
    if rows:
        await conn.execute(
            INSERT_MEMBERS, tenant_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        )


async def remove_members(conn: Conn, tenant_id: str, rows: Sequence[tuple[UUID, str]]) -> None:
    if rows:
        await conn.execute(DELETE_MEMBERS, tenant_id, [r[0] for r in rows], [r[1] for r in rows])


async def remove_all(conn: Conn, tenant_id: str, euids: Collection[str]) -> list[tuple[UUID, str]]:
    """End every membership of ``euids``; returns what ended."""
    rows = await conn.fetch(DELETE_ALL_MEMBERS, tenant_id, sorted(euids))
    return [(r["segment_id"], r["external_userid"]) for r in rows]


async def lock_segments(conn: Conn, tenant_id: str, segment_ids: Collection[UUID]) -> None:
    """Lock the segment rows whose memberships and size are about to change (id order, ``FOR KEY
    SHARE``), before writing members: a segment being deleted meanwhile then either waits for
    us or is gone, and never deadlocks with us over its member rows. Other writers are not kept
    out (they wait only for :func:`apply_sizes`)."""
    if segment_ids:
        await conn.execute(LOCK_SEGMENT_ROWS, tenant_id, sorted(segment_ids))


async def apply_sizes(conn: Conn, tenant_id: str, day: date, deltas: Mapping[UUID, tuple[int, int]]) -> None:
    """Add (entered, exited) per segment to its size and to ``day``'s history row (rows locked
    by :func:`lock_segments`). The last statement of a writer's transaction: from here to the
    commit, another writer changing the same segments' sizes waits."""
    if not deltas:
        return
    ids = sorted(deltas)
    await conn.execute(
        APPLY_SIZES, tenant_id, day, ids, [deltas[i][0] for i in ids], [deltas[i][1] for i in ids]
    )


async def schedule_exact(conn: Conn, tenant_id: str, due: Mapping[str, date | None]) -> None:
    """Set each contact's due day (``None``: nothing changes by time alone)."""
    keep = sorted(e for e, d in due.items() if d is not None)
    drop = sorted(e for e, d in due.items() if d is None)
    if keep:
        await conn.execute(UPSERT_SCHEDULE_EXACT, tenant_id, keep, [due[e] for e in keep])
    if drop:
        await conn.execute(DELETE_SCHEDULE, tenant_id, drop)


async def schedule_earlier(conn: Conn, tenant_id: str, due: Mapping[str, date]) -> None:
    """Move each contact's due day earlier to ``due`` (never later)."""
    keys = sorted(due)
    if keys:
        await conn.execute(UPSERT_SCHEDULE_EARLIER, tenant_id, keys, [due[e] for e in keys])


async def unschedule(conn: Conn, tenant_id: str, euids: Collection[str]) -> None:
    if euids:
        await conn.execute(DELETE_SCHEDULE, tenant_id, sorted(euids))


async def due_contacts(db: Executor, tenant_id: str, today: date, limit: int) -> list[str]:
    rows = await db.fetch(SELECT_DUE, tenant_id, today, limit)
    return [r["external_userid"] for r in rows]


async def still_due(conn: Conn, tenant_id: str, euids: Collection[str], today: date) -> dict[str, date]:
    """Those of ``euids`` still due by ``today``, with the day each was due."""
    rows = await conn.fetch(SELECT_STILL_DUE, tenant_id, list(euids), today)
    return {r["external_userid"]: r["due_day"] for r in rows}
