"""SQL of contacts' tags, the follow relations and WeCom tag snapshots tag-svc keeps, and erasure.

Writers of ``contact_tags`` lock the live tag rows they use (``FOR SHARE``) first: a tag being
deleted (``FOR UPDATE``) then either sees their rows in its purge job or makes them fail to find
the tag, never misses a contact. Pairs are written in (external_userid, tag_id) order so that
concurrent writers of overlapping contacts take row locks in one order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tag_svc.tags.domain import By, TagRef
from tag_svc.tags.store import Conn, Executor

__all__ = [
    "ContactTagRow",
    "JobTag",
    "Snapshot",
    "apply_pushed",
    "contact_tag_ids",
    "delete_contact_tags",
    "erase_contacts",
    "follows_added",
    "follows_deleted",
    "held_elsewhere",
    "insert_contact_tags",
    "is_erased",
    "is_following",
    "latest_follower",
    "list_contact_tags",
    "lock_snapshot",
    "lock_tag",
    "lock_tags",
    "lock_wecom_tags",
    "save_snapshot",
    "snapshot_holders",
]

LOCK_LIVE_TAGS = """
SELECT t.tag_id, t.name, g.name AS group_name, t.wecom_tag_id
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.tag_id = ANY($2::uuid[]) AND t.deleted_at IS NULL
ORDER BY t.tag_id
FOR SHARE OF t
"""

# A job's tag, deleted or not (a purge job untags the contacts of a deleted tag).
LOCK_ANY_TAG = """
SELECT t.tag_id, t.name, g.name AS group_name, t.wecom_tag_id, t.group_id, t.deleted_at
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.tag_id = $2
FOR SHARE OF t
"""

LOCK_WECOM_TAGS = """
SELECT t.tag_id, t.name, g.name AS group_name, t.wecom_tag_id
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.wecom_tag_id = ANY($2::text[]) AND t.deleted_at IS NULL
ORDER BY t.tag_id
FOR SHARE OF t
"""

SELECT_CONTACT_TAG_IDS = """
SELECT tag_id FROM contact_tags WHERE tenant_id = $1 AND external_userid = $2
"""

# An erased contact is never tagged again (the tombstone is honoured); a pair the contact has
# already is left as it is, and not returned.
INSERT_CONTACT_TAGS = """
INSERT INTO contact_tags (tenant_id, external_userid, tag_id, tagged_by, actor_id, tagged_at)
SELECT $1, x.e, x.t, $4, $5, $6
FROM unnest($2::text[], $3::uuid[]) AS x(e, t)
WHERE NOT EXISTS (SELECT 1 FROM erased_contacts z WHERE z.tenant_id = $1 AND z.external_userid = x.e)
ORDER BY x.e, x.t
ON CONFLICT (tenant_id, external_userid, tag_id) DO NOTHING
RETURNING external_userid, tag_id
"""

DELETE_CONTACT_TAGS = """
DELETE FROM contact_tags c
USING unnest($2::text[], $3::uuid[]) AS x(e, t)
WHERE c.tenant_id = $1 AND c.external_userid = x.e AND c.tag_id = x.t
RETURNING c.external_userid, c.tag_id
"""

# A tag being purged is already gone for readers.
SELECT_CONTACT_TAGS = """
SELECT c.tag_id, t.name, t.group_id, g.name AS group_name, t.wecom_tag_id,
       c.tagged_by, c.actor_id, c.tagged_at
FROM contact_tags c
JOIN tags t ON t.tenant_id = c.tenant_id AND t.tag_id = c.tag_id
JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE c.tenant_id = $1 AND c.external_userid = $2 AND t.deleted_at IS NULL
ORDER BY g.sort_order, g.name, g.group_id, t.sort_order, t.name, t.tag_id
"""

# Follow relations from friend-added / friend-deleted of a batch (many tenants, each row scoped
# by its own tenant_id). Out-of-order events: the latest add and the latest deletion win.
UPSERT_FOLLOWS_ADDED = """
INSERT INTO follows AS f (tenant_id, external_userid, staff_id, added_at)
SELECT x.t, x.e, x.s, x.a
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x(t, e, s, a)
WHERE NOT EXISTS (SELECT 1 FROM erased_contacts z WHERE z.tenant_id = x.t AND z.external_userid = x.e)
ORDER BY x.t, x.e, x.s
ON CONFLICT (tenant_id, external_userid, staff_id)
DO UPDATE SET added_at = GREATEST(f.added_at, EXCLUDED.added_at)
"""

UPSERT_FOLLOWS_DELETED = """
INSERT INTO follows AS f (tenant_id, external_userid, staff_id, deleted_at)
SELECT x.t, x.e, x.s, x.d
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x(t, e, s, d)
WHERE NOT EXISTS (SELECT 1 FROM erased_contacts z WHERE z.tenant_id = x.t AND z.external_userid = x.e)
ORDER BY x.t, x.e, x.s
ON CONFLICT (tenant_id, external_userid, staff_id)
DO UPDATE SET deleted_at = GREATEST(f.deleted_at, EXCLUDED.deleted_at)
"""

# A follow is active when added after its last deletion (out-of-order events settle the same).
IS_FOLLOWING = """
SELECT EXISTS (
    SELECT 1 FROM follows
    WHERE tenant_id = $1 AND external_userid = $2 AND staff_id = $3
      AND added_at IS NOT NULL AND (deleted_at IS NULL OR deleted_at < added_at)
)
"""

# The staff member a change made by an operator is pushed as: whoever added the contact last.
LATEST_FOLLOWER = """
SELECT staff_id FROM follows
WHERE tenant_id = $1 AND external_userid = $2
  AND added_at IS NOT NULL AND (deleted_at IS NULL OR deleted_at < added_at)
ORDER BY added_at DESC, staff_id
LIMIT 1
"""

LOCK_SNAPSHOT = """
SELECT wecom_tag_ids, wecom_updated_at FROM wecom_tag_snapshots
WHERE tenant_id = $1 AND external_userid = $2 AND staff_id = $3
FOR UPDATE
"""

SAVE_SNAPSHOT = """
INSERT INTO wecom_tag_snapshots (tenant_id, external_userid, staff_id, wecom_tag_ids, wecom_updated_at)
VALUES ($1, $2, $3, $4::text[], $5)
ON CONFLICT (tenant_id, external_userid, staff_id)
DO UPDATE SET wecom_tag_ids = EXCLUDED.wecom_tag_ids, wecom_updated_at = EXCLUDED.wecom_updated_at
"""

HELD_ELSEWHERE = """
SELECT DISTINCT w
FROM wecom_tag_snapshots s, unnest(s.wecom_tag_ids) AS w
WHERE s.tenant_id = $1 AND s.external_userid = $2 AND s.staff_id <> $3
"""

SNAPSHOT_HOLDERS = """
SELECT staff_id FROM wecom_tag_snapshots
WHERE tenant_id = $1 AND external_userid = $2 AND wecom_tag_ids && $3::text[]
ORDER BY staff_id
"""

# What a successful mark_tag did to that staff member's WeCom tags. WeCom's time of the snapshot
# stays: our clock is not WeCom's, and the next WeCom snapshot is newer in any case.
APPLY_PUSHED = """
INSERT INTO wecom_tag_snapshots AS s (tenant_id, external_userid, staff_id, wecom_tag_ids)
VALUES ($1, $2, $3,
        ARRAY(SELECT DISTINCT w FROM unnest($4::text[]) AS w WHERE w <> ALL($5::text[]) ORDER BY w))
ON CONFLICT (tenant_id, external_userid, staff_id) DO UPDATE SET wecom_tag_ids = ARRAY(
    SELECT DISTINCT w FROM unnest(s.wecom_tag_ids || $4::text[]) AS w WHERE w <> ALL($5::text[]) ORDER BY w)
"""

IS_ERASED = "SELECT EXISTS (SELECT 1 FROM erased_contacts WHERE tenant_id = $1 AND external_userid = $2)"

INSERT_TOMBSTONES = """
INSERT INTO erased_contacts (tenant_id, external_userid, erased_at)
SELECT x.t, x.e, x.at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(t, e, at)
ON CONFLICT (tenant_id, external_userid) DO NOTHING
"""

# Everything tag-svc knows about erased contacts goes; job counters and the tally stay.
ERASE_CONTACT_TAGS = """
DELETE FROM contact_tags c USING unnest($1::text[], $2::text[]) AS x(t, e)
WHERE c.tenant_id = x.t AND c.external_userid = x.e
"""
ERASE_FOLLOWS = """
DELETE FROM follows f USING unnest($1::text[], $2::text[]) AS x(t, e)
WHERE f.tenant_id = x.t AND f.external_userid = x.e
"""
ERASE_SNAPSHOTS = """
DELETE FROM wecom_tag_snapshots s USING unnest($1::text[], $2::text[]) AS x(t, e)
WHERE s.tenant_id = x.t AND s.external_userid = x.e
"""
ERASE_PUSHES = """
DELETE FROM wecom_pushes p USING unnest($1::text[], $2::text[]) AS x(t, e)
WHERE p.tenant_id = x.t AND p.external_userid = x.e
"""


@dataclass(frozen=True, slots=True)
class ContactTagRow:
    """A tag a contact carries, with who set it."""

    tag_id: uuid.UUID
    name: str
    group_id: uuid.UUID
    group_name: str
    wecom_tag_id: str | None
    tagged_by: By
    actor_id: str | None
    tagged_at: datetime


@dataclass(frozen=True, slots=True)
class JobTag:
    """A job's tag, with whether it was deleted."""

    ref: TagRef
    group_id: uuid.UUID
    deleted: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    wecom_tag_ids: tuple[str, ...]
    wecom_updated_at: datetime | None


def _ref(row: asyncpg.Record) -> TagRef:
    return TagRef(
        tag_id=row["tag_id"], name=row["name"], group_name=row["group_name"], wecom_tag_id=row["wecom_tag_id"]
    )


async def lock_tags(conn: Conn, tenant_id: str, tag_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TagRef]:
    """The live tags among ``tag_ids``, locked against deletion until the transaction ends."""
    rows = await conn.fetch(LOCK_LIVE_TAGS, tenant_id, list(tag_ids))
    return {r["tag_id"]: _ref(r) for r in rows}


async def lock_tag(conn: Conn, tenant_id: str, tag_id: uuid.UUID) -> JobTag | None:
    """A job's tag (live or deleted), locked until the transaction ends; ``None`` once dropped."""
    row = await conn.fetchrow(LOCK_ANY_TAG, tenant_id, tag_id)
    if row is None:
        return None
    return JobTag(ref=_ref(row), group_id=row["group_id"], deleted=row["deleted_at"] is not None)


async def lock_wecom_tags(conn: Conn, tenant_id: str, wecom_tag_ids: Sequence[str]) -> dict[str, TagRef]:
    """Live tags mirroring ``wecom_tag_ids``, by WeCom tag id, locked like :func:`lock_tags`."""
    if not wecom_tag_ids:
        return {}
    rows = await conn.fetch(LOCK_WECOM_TAGS, tenant_id, list(wecom_tag_ids))
    return {r["wecom_tag_id"]: _ref(r) for r in rows}


async def contact_tag_ids(conn: Executor, tenant_id: str, external_userid: str) -> set[uuid.UUID]:
    return {r["tag_id"] for r in await conn.fetch(SELECT_CONTACT_TAG_IDS, tenant_id, external_userid)}


async def list_contact_tags(conn: Executor, tenant_id: str, external_userid: str) -> list[ContactTagRow]:
    """A contact's (live) tags in display order."""
    rows = await conn.fetch(SELECT_CONTACT_TAGS, tenant_id, external_userid)
    return [ContactTagRow(**dict(r)) for r in rows]


async def insert_contact_tags(
    conn: Conn,
    tenant_id: str,
    pairs: Sequence[tuple[str, uuid.UUID]],
    *,
    by: By,
    actor_id: str | None,
    at: datetime,
) -> list[tuple[str, uuid.UUID]]:
    """Tag contacts; returns the (external_userid, tag_id) pairs that were new."""
    if not pairs:
        return []
    euids, tags = zip(*sorted(pairs), strict=True)
    rows = await conn.fetch(INSERT_CONTACT_TAGS, tenant_id, list(euids), list(tags), by, actor_id, at)
    return [(r["external_userid"], r["tag_id"]) for r in rows]


async def delete_contact_tags(
    conn: Conn, tenant_id: str, pairs: Sequence[tuple[str, uuid.UUID]]
) -> list[tuple[str, uuid.UUID]]:
    """Untag contacts; returns the pairs that existed."""
    if not pairs:
        return []
    euids, tags = zip(*sorted(pairs), strict=True)
    rows = await conn.fetch(DELETE_CONTACT_TAGS, tenant_id, list(euids), list(tags))
    return [(r["external_userid"], r["tag_id"]) for r in rows]


async def follows_added(conn: Conn, rows: Sequence[tuple[str, str, str, datetime]]) -> None:
    """Record (tenant_id, external_userid, staff_id, added_at) follows; one row per key."""
    if rows:
        await conn.execute(UPSERT_FOLLOWS_ADDED, *(list(c) for c in zip(*rows, strict=True)))


async def follows_deleted(conn: Conn, rows: Sequence[tuple[str, str, str, datetime]]) -> None:
    """Record (tenant_id, external_userid, staff_id, deleted_at) ends of follows; one row per key."""
    if rows:
        await conn.execute(UPSERT_FOLLOWS_DELETED, *(list(c) for c in zip(*rows, strict=True)))


async def is_following(conn: Executor, tenant_id: str, external_userid: str, staff_id: str) -> bool:
    return bool(await conn.fetchval(IS_FOLLOWING, tenant_id, external_userid, staff_id))


async def latest_follower(conn: Executor, tenant_id: str, external_userid: str) -> str | None:
    """The staff member who most recently added the contact and still follows it."""
    value = await conn.fetchval(LATEST_FOLLOWER, tenant_id, external_userid)
    return str(value) if value is not None else None


async def lock_snapshot(conn: Conn, tenant_id: str, external_userid: str, staff_id: str) -> Snapshot | None:
    row = await conn.fetchrow(LOCK_SNAPSHOT, tenant_id, external_userid, staff_id)
    if row is None:
        return None
    return Snapshot(tuple(row["wecom_tag_ids"]), row["wecom_updated_at"])


async def save_snapshot(
    conn: Conn,
    tenant_id: str,
    external_userid: str,
    staff_id: str,
    wecom_tag_ids: Sequence[str],
    at: datetime,
) -> None:
    await conn.execute(SAVE_SNAPSHOT, tenant_id, external_userid, staff_id, sorted(set(wecom_tag_ids)), at)


async def held_elsewhere(conn: Conn, tenant_id: str, external_userid: str, staff_id: str) -> set[str]:
    """WeCom tag ids other staff members than ``staff_id`` have on the contact."""
    return {r["w"] for r in await conn.fetch(HELD_ELSEWHERE, tenant_id, external_userid, staff_id)}


async def snapshot_holders(
    conn: Executor, tenant_id: str, external_userid: str, wecom_tag_ids: Sequence[str]
) -> list[str]:
    """Staff members whose WeCom relation with the contact carries any of ``wecom_tag_ids``."""
    rows = await conn.fetch(SNAPSHOT_HOLDERS, tenant_id, external_userid, list(wecom_tag_ids))
    return [r["staff_id"] for r in rows]


async def apply_pushed(
    conn: Executor,
    tenant_id: str,
    external_userid: str,
    staff_id: str,
    add_tag: Sequence[str],
    remove_tag: Sequence[str],
) -> None:
    """Record what a successful mark_tag changed on that staff member's relation."""
    await conn.execute(APPLY_PUSHED, tenant_id, external_userid, staff_id, list(add_tag), list(remove_tag))


async def is_erased(conn: Executor, tenant_id: str, external_userid: str) -> bool:
    return bool(await conn.fetchval(IS_ERASED, tenant_id, external_userid))


async def erase_contacts(conn: Conn, rows: Sequence[tuple[str, str, datetime]]) -> None:
    """Tombstone (tenant_id, external_userid, erased_at) contacts and drop what tag-svc keeps of
    them: tags, follows, WeCom snapshots and pending pushes."""
    if not rows:
        return
    tenants, euids, ats = (list(c) for c in zip(*rows, strict=True))
    await conn.execute(INSERT_TOMBSTONES, tenants, euids, ats)
    for statement in (ERASE_CONTACT_TAGS, ERASE_FOLLOWS, ERASE_SNAPSHOTS, ERASE_PUSHES):
        await conn.execute(statement, tenants, euids)
