"""SQL of tag name syncs: a renamed tag's new name reaching the segments (migration 0009).

A sync row says "tag T was renamed from A to B"; its contacts are ``tag_job_items`` rows under the
sync's id, numbered in ``external_userid`` order, taken a chunk at a time like a bulk job's (see
:mod:`tag_svc.tags.store.jobs`). The statements on ``profiles`` and ``segment_contact_tags`` are
the processor's tables (:mod:`tag_svc.processor.store.profiles`) written the way it writes them:
profile rows are locked first, in key order, and only locked contacts' rows are written.
"""

# Statements share a fixed column list (a module constant) through an f-string; no value is ever
# formatted into SQL, values are $n arguments: which is what S608 guards against.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from tag_svc.tags.store import Conn, Executor

__all__ = [
    "NameSyncRow",
    "advance_sync",
    "claim_sync",
    "fail_sync",
    "get_syncs",
    "lock_profiles",
    "queue_sync",
    "record_failure",
    "rename_contact_tags",
    "tag_names",
    "write_tags",
]

SyncStatus = Literal["queued", "running", "done", "failed"]

_SYNC = """tenant_id, sync_id, tag_id, old_name, new_name, status, total, processed, attempts, error,
created_at, finished_at"""

# The contacts carrying the tag at the rename (the tag row is locked by the rename): in key order,
# so the chunks lock profile rows in the order every writer of memberships does.
INSERT_SYNC_ITEMS = """
INSERT INTO tag_job_items (tenant_id, job_id, seq, external_userid)
SELECT $1, $3, (row_number() OVER (ORDER BY external_userid))::integer, external_userid
FROM contact_tags
WHERE tenant_id = $1 AND tag_id = $2
"""

INSERT_SYNC = """
INSERT INTO tag_name_syncs (tenant_id, sync_id, tag_id, old_name, new_name, total)
VALUES ($1, $2, $3, $4, $5, $6)
"""

# The runner's queue scan, across tenants: the sync whose last chunk is oldest goes next.
CLAIM_SYNC = f"""
SELECT {_SYNC} FROM tag_name_syncs
WHERE status IN ('queued', 'running') AND next_attempt_at <= now()
ORDER BY last_chunk_at NULLS FIRST, created_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""

SELECT_SYNCS = f"""
SELECT {_SYNC} FROM tag_name_syncs WHERE tenant_id = $1 AND tag_id = $2 ORDER BY created_at, sync_id
"""

ADVANCE_SYNC = """
UPDATE tag_name_syncs SET
    processed = processed + $3,
    status = $4,
    last_chunk_at = now(),
    finished_at = CASE WHEN $4 = 'done' THEN now() END,
    attempts = 0,
    error = NULL
WHERE tenant_id = $1 AND sync_id = $2
"""

RECORD_FAILURE = """
UPDATE tag_name_syncs SET attempts = attempts + 1, next_attempt_at = now() + $3::interval, error = $4
WHERE tenant_id = $1 AND sync_id = $2 AND status IN ('queued', 'running')
RETURNING attempts
"""

FAIL_SYNC = """
UPDATE tag_name_syncs SET status = 'failed', error = $3, finished_at = now(), last_chunk_at = now()
WHERE tenant_id = $1 AND sync_id = $2
"""

DELETE_SYNC_ITEMS = "DELETE FROM tag_job_items WHERE tenant_id = $1 AND job_id = $2"

# The chunk's contacts that have a profile (no profile: the processor has not seen them yet, and
# the contact-tagged event it will see takes the tag's name as it is then), locked in key order:
# the same columns as the processor's own locking read (tag_svc.processor.store.profiles).
LOCK_PROFILES = """
SELECT external_userid, state, store_id, staff_ids, gender, status, first_added_at, first_added_day, tags
FROM profiles
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
ORDER BY external_userid
FOR UPDATE
"""

# The tag's rows of the locked contacts take its name as it is now (a second rename meanwhile has
# its own sync, which re-evaluates the segments of its names).
RENAME_CONTACT_TAGS = """
UPDATE segment_contact_tags s SET tag_name = t.name
FROM tags t
WHERE s.tenant_id = $1 AND s.external_userid = ANY($3::text[]) AND s.tag_id = $2::uuid::text
  AND t.tenant_id = $1 AND t.tag_id = $2::uuid AND s.tag_name <> t.name
"""

# The names of the tags each contact carries, as the processor derives profiles.tags: a name
# stays while any tag of that name (in any group) is present.
SELECT_TAG_NAMES = """
SELECT external_userid, array_agg(DISTINCT tag_name) AS tags
FROM segment_contact_tags
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND present
GROUP BY external_userid
"""

# Each row's names travel as a JSON array (unnest cannot take an array of arrays of different
# lengths). Rows already locked.
UPDATE_PROFILE_TAGS = """
UPDATE profiles p SET tags = ARRAY(SELECT jsonb_array_elements_text(x.t::jsonb)), updated_at = now()
FROM unnest($2::text[], $3::text[]) AS x(e, t)
WHERE p.tenant_id = $1 AND p.external_userid = x.e
"""


@dataclass(frozen=True, slots=True)
class NameSyncRow:
    tenant_id: str
    sync_id: uuid.UUID
    tag_id: uuid.UUID
    old_name: str
    new_name: str
    status: SyncStatus
    total: int
    processed: int
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def _row(r: asyncpg.Record) -> NameSyncRow:
    return NameSyncRow(**dict(r))


async def queue_sync(conn: Conn, tenant_id: str, tag_id: uuid.UUID, *, old_name: str, new_name: str) -> bool:
    """Queue the sync of a rename inside its transaction (the tag row locked by it). ``False``
    when no contact carries the tag: nothing to sync."""
    sync_id = uuid.uuid4()
    status = await conn.execute(INSERT_SYNC_ITEMS, tenant_id, tag_id, sync_id)
    carried = int(status.split()[-1])
    if carried:
        await conn.execute(INSERT_SYNC, tenant_id, sync_id, tag_id, old_name, new_name, carried)
    return carried > 0


async def claim_sync(conn: Conn) -> NameSyncRow | None:
    """The next due sync of any tenant, locked for the caller's transaction."""
    row = await conn.fetchrow(CLAIM_SYNC)
    return _row(row) if row is not None else None


async def get_syncs(db: Executor, tenant_id: str, tag_id: uuid.UUID) -> list[NameSyncRow]:
    """The syncs of a tag's renames, oldest first."""
    return [_row(r) for r in await db.fetch(SELECT_SYNCS, tenant_id, tag_id)]


async def advance_sync(
    conn: Conn, tenant_id: str, sync_id: uuid.UUID, *, processed: int, status: SyncStatus
) -> None:
    await conn.execute(ADVANCE_SYNC, tenant_id, sync_id, processed, status)


async def record_failure(
    db: Executor, tenant_id: str, sync_id: uuid.UUID, *, wait: timedelta, error: str
) -> int:
    """Count a failed chunk and hold the sync back for ``wait``; returns its failures so far."""
    return int(await db.fetchval(RECORD_FAILURE, tenant_id, sync_id, wait, error) or 0)


async def fail_sync(conn: Conn, tenant_id: str, sync_id: uuid.UUID, error: str) -> None:
    """Give up on a sync: ``failed`` with the reason; its remaining contacts are dropped."""
    await conn.execute(FAIL_SYNC, tenant_id, sync_id, error)
    await conn.execute(DELETE_SYNC_ITEMS, tenant_id, sync_id)


async def lock_profiles(conn: Conn, tenant_id: str, euids: Sequence[str]) -> list[asyncpg.Record]:
    """Lock the profile rows of ``euids`` that exist, in key order."""
    return await conn.fetch(LOCK_PROFILES, tenant_id, sorted(euids))


async def rename_contact_tags(conn: Conn, tenant_id: str, tag_id: uuid.UUID, euids: Sequence[str]) -> None:
    """Give the tag's rows of ``euids`` (profiles locked) the tag's current name."""
    await conn.execute(RENAME_CONTACT_TAGS, tenant_id, tag_id, list(euids))


async def tag_names(conn: Conn, tenant_id: str, euids: Sequence[str]) -> dict[str, frozenset[str]]:
    """The names of the tags each contact carries (contacts without any are absent)."""
    rows = await conn.fetch(SELECT_TAG_NAMES, tenant_id, list(euids))
    return {r["external_userid"]: frozenset(r["tags"]) for r in rows}


async def write_tags(conn: Conn, tenant_id: str, tags: Mapping[str, frozenset[str]]) -> None:
    """Set ``profiles.tags`` of the contacts (rows locked)."""
    if tags:
        keys = sorted(tags)
        await conn.execute(
            UPDATE_PROFILE_TAGS,
            tenant_id,
            keys,
            [json.dumps(sorted(tags[k]), ensure_ascii=False) for k in keys],
        )
