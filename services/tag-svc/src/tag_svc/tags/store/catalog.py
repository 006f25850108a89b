"""SQL of the tag catalogue: tag groups and tags.

Deleting a group or tag marks it deleted (it vanishes from every read at once) and hands the
contacts that carry it to a purge job (:mod:`tag_svc.tags.store.jobs`), which untags them with
events and then drops the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tag_svc.tags.domain import Conflict
from tag_svc.tags.store import Conn, Executor

__all__ = [
    "GroupRow",
    "TagRow",
    "create_group",
    "create_tag",
    "delete_group",
    "delete_tag",
    "drop_deleted_tag",
    "get_group",
    "get_tag",
    "list_groups",
    "list_tags",
    "lock_group_row",
    "lock_tag_row",
    "update_group",
    "update_tag",
]

# An omitted order puts the new entry last.
INSERT_GROUP = """
INSERT INTO tag_groups (tenant_id, group_id, name, sort_order, wecom_group_id)
VALUES ($1, $2, $3,
        COALESCE($4, (SELECT COALESCE(max(sort_order), 0) + 1 FROM tag_groups
                      WHERE tenant_id = $1 AND deleted_at IS NULL)),
        $5)
RETURNING group_id, name, sort_order, wecom_group_id, created_at, updated_at
"""

SELECT_GROUPS = """
SELECT group_id, name, sort_order, wecom_group_id, created_at, updated_at
FROM tag_groups
WHERE tenant_id = $1 AND deleted_at IS NULL
ORDER BY sort_order, name, group_id
"""

SELECT_GROUP = """
SELECT group_id, name, sort_order, wecom_group_id, created_at, updated_at
FROM tag_groups
WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
"""

# $3/$4 keep the stored value when NULL (the API refuses null for them); $6 says whether
# wecom_group_id was sent (null then clears it).
UPDATE_GROUP = """
UPDATE tag_groups SET
    name = COALESCE($3, name),
    sort_order = COALESCE($4, sort_order),
    wecom_group_id = CASE WHEN $6::boolean THEN $5 ELSE wecom_group_id END,
    updated_at = now()
WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
RETURNING group_id, name, sort_order, wecom_group_id, created_at, updated_at
"""

LOCK_GROUP_ROW = """
SELECT group_id, name, sort_order, wecom_group_id, created_at, updated_at
FROM tag_groups
WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
FOR UPDATE
"""

LOCK_GROUP = """
SELECT group_id FROM tag_groups
WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
FOR UPDATE
"""

MARK_GROUP_DELETED = """
UPDATE tag_groups SET deleted_at = now(), updated_at = now()
WHERE tenant_id = $1 AND group_id = $2
"""

# A deleted group goes once its last (deleted) tag is gone.
DELETE_EMPTY_GROUP = """
DELETE FROM tag_groups g
WHERE g.tenant_id = $1 AND g.group_id = $2 AND g.deleted_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.tenant_id = $1 AND t.group_id = $2)
"""

SELECT_GROUP_TAG_IDS = """
SELECT tag_id FROM tags
WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
ORDER BY tag_id
"""

# The group must be live: no row inserted (None returned) otherwise.
INSERT_TAG = """
WITH g AS (
    SELECT group_id, name FROM tag_groups
    WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL
    FOR SHARE
), t AS (
    INSERT INTO tags (tenant_id, tag_id, group_id, name, sort_order, wecom_tag_id)
    SELECT $1, $3, g.group_id, $4,
           COALESCE($5, (SELECT COALESCE(max(sort_order), 0) + 1 FROM tags
                         WHERE tenant_id = $1 AND group_id = $2 AND deleted_at IS NULL)),
           $6
    FROM g
    RETURNING *
)
SELECT t.tag_id, t.group_id, g.name AS group_name, t.name, t.sort_order, t.wecom_tag_id,
       t.created_at, t.updated_at
FROM t JOIN g ON g.group_id = t.group_id
"""

# Ordered as a front-end shows them: groups by their order, tags by theirs within the group.
SELECT_TAGS = """
SELECT t.tag_id, t.group_id, g.name AS group_name, t.name, t.sort_order, t.wecom_tag_id,
       t.created_at, t.updated_at
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.deleted_at IS NULL AND g.deleted_at IS NULL
  AND ($2::uuid IS NULL OR t.group_id = $2)
  AND ($3::text IS NULL OR t.wecom_tag_id = $3)
ORDER BY g.sort_order, g.name, g.group_id, t.sort_order, t.name, t.tag_id
"""

SELECT_TAG = """
SELECT t.tag_id, t.group_id, g.name AS group_name, t.name, t.sort_order, t.wecom_tag_id,
       t.created_at, t.updated_at
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.tag_id = $2 AND t.deleted_at IS NULL
"""

# $3..$5 keep the stored value when NULL; $7 says whether wecom_tag_id was sent. A move ($5) is
# only into a live group of the tenant.
UPDATE_TAG = """
WITH t AS (
    UPDATE tags SET
        name = COALESCE($3, name),
        sort_order = COALESCE($4, sort_order),
        group_id = COALESCE($5, group_id),
        wecom_tag_id = CASE WHEN $7::boolean THEN $6 ELSE wecom_tag_id END,
        updated_at = now()
    WHERE tenant_id = $1 AND tag_id = $2 AND deleted_at IS NULL
      AND ($5::uuid IS NULL OR EXISTS (
          SELECT 1 FROM tag_groups WHERE tenant_id = $1 AND group_id = $5 AND deleted_at IS NULL))
    RETURNING *
)
SELECT t.tag_id, t.group_id, g.name AS group_name, t.name, t.sort_order, t.wecom_tag_id,
       t.created_at, t.updated_at
FROM t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
"""

LOCK_TAG_ROW = """
SELECT t.tag_id, t.group_id, g.name AS group_name, t.name, t.sort_order, t.wecom_tag_id,
       t.created_at, t.updated_at
FROM tags t JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE t.tenant_id = $1 AND t.tag_id = $2 AND t.deleted_at IS NULL
FOR UPDATE OF t
"""

LOCK_TAG = """
SELECT tag_id, group_id FROM tags
WHERE tenant_id = $1 AND tag_id = $2 AND deleted_at IS NULL
FOR UPDATE
"""

MARK_TAG_DELETED = """
UPDATE tags SET deleted_at = now(), updated_at = now()
WHERE tenant_id = $1 AND tag_id = $2
"""

# The purge job's contacts: everyone carrying the tag now (adders lock the live tag row first,
# so none can add it after the deletion above).
INSERT_PURGE_ITEMS = """
INSERT INTO tag_job_items (tenant_id, job_id, seq, external_userid)
SELECT $1, $3, (row_number() OVER (ORDER BY external_userid))::integer, external_userid
FROM contact_tags
WHERE tenant_id = $1 AND tag_id = $2
"""

INSERT_PURGE_JOB = """
INSERT INTO tag_jobs (tenant_id, job_id, tag_id, action, purge, actor_id, total)
VALUES ($1, $2, $3, 'remove', true, $4, $5)
"""

DELETE_DELETED_TAG = """
DELETE FROM tags WHERE tenant_id = $1 AND tag_id = $2 AND deleted_at IS NOT NULL
"""

_CONFLICTS = {
    "tag_groups_name_key": "group-name",
    "tags_name_key": "tag-name",
    "tags_wecom_key": "wecom-tag-id",
}


@dataclass(frozen=True, slots=True)
class GroupRow:
    group_id: uuid.UUID
    name: str
    sort_order: int
    wecom_group_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TagRow:
    tag_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    name: str
    sort_order: int
    wecom_tag_id: str | None
    created_at: datetime
    updated_at: datetime


@contextmanager
def _conflicts() -> Iterator[None]:
    """Turn a unique violation of a catalogue rule into :class:`Conflict`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        what = _CONFLICTS.get(getattr(exc, "constraint_name", "") or "")
        if what is None:
            raise
        raise Conflict(what) from None  # type: ignore[arg-type]


async def create_group(
    conn: Executor, tenant_id: str, *, name: str, sort_order: int | None, wecom_group_id: str | None
) -> GroupRow:
    """Create a group (last in order unless ``sort_order`` is given). Raises :class:`Conflict`."""
    with _conflicts():
        row = await conn.fetchrow(INSERT_GROUP, tenant_id, uuid.uuid4(), name, sort_order, wecom_group_id)
    assert row is not None
    return GroupRow(**dict(row))


async def list_groups(conn: Executor, tenant_id: str) -> list[GroupRow]:
    """The tenant's live groups in display order."""
    return [GroupRow(**dict(r)) for r in await conn.fetch(SELECT_GROUPS, tenant_id)]


async def get_group(conn: Executor, tenant_id: str, group_id: uuid.UUID) -> GroupRow | None:
    row = await conn.fetchrow(SELECT_GROUP, tenant_id, group_id)
    return GroupRow(**dict(row)) if row is not None else None


async def lock_group_row(conn: Conn, tenant_id: str, group_id: uuid.UUID) -> GroupRow | None:
    """The live group, locked for an edit until the transaction ends (``None``: no such group)."""
    row = await conn.fetchrow(LOCK_GROUP_ROW, tenant_id, group_id)
    return GroupRow(**dict(row)) if row is not None else None


async def update_group(
    conn: Executor,
    tenant_id: str,
    group_id: uuid.UUID,
    *,
    name: str | None,
    sort_order: int | None,
    wecom_group_id: str | None,
    set_wecom_group_id: bool,
) -> GroupRow | None:
    """Change the given fields; ``None`` when the group does not exist. Raises :class:`Conflict`."""
    with _conflicts():
        row = await conn.fetchrow(
            UPDATE_GROUP, tenant_id, group_id, name, sort_order, wecom_group_id, set_wecom_group_id
        )
    return GroupRow(**dict(row)) if row is not None else None


async def create_tag(
    conn: Executor,
    tenant_id: str,
    group_id: uuid.UUID,
    *,
    name: str,
    sort_order: int | None,
    wecom_tag_id: str | None,
) -> TagRow | None:
    """Create a tag in a live group (``None`` when there is none). Raises :class:`Conflict`."""
    with _conflicts():
        row = await conn.fetchrow(
            INSERT_TAG, tenant_id, group_id, uuid.uuid4(), name, sort_order, wecom_tag_id
        )
    return TagRow(**dict(row)) if row is not None else None


async def list_tags(
    conn: Executor, tenant_id: str, *, group_id: uuid.UUID | None = None, wecom_tag_id: str | None = None
) -> list[TagRow]:
    """The tenant's live tags in display order, optionally of one group or one WeCom tag id."""
    return [TagRow(**dict(r)) for r in await conn.fetch(SELECT_TAGS, tenant_id, group_id, wecom_tag_id)]


async def get_tag(conn: Executor, tenant_id: str, tag_id: uuid.UUID) -> TagRow | None:
    row = await conn.fetchrow(SELECT_TAG, tenant_id, tag_id)
    return TagRow(**dict(row)) if row is not None else None


async def lock_tag_row(conn: Conn, tenant_id: str, tag_id: uuid.UUID) -> TagRow | None:
    """The live tag as it is, locked for an edit until the transaction ends (``None``: no such
    tag)."""
    row = await conn.fetchrow(LOCK_TAG_ROW, tenant_id, tag_id)
    return TagRow(**dict(row)) if row is not None else None


async def update_tag(
    conn: Executor,
    tenant_id: str,
    tag_id: uuid.UUID,
    *,
    name: str | None,
    sort_order: int | None,
    group_id: uuid.UUID | None,
    wecom_tag_id: str | None,
    set_wecom_tag_id: bool,
) -> TagRow | None:
    """Change the given fields; ``None`` when the tag (or the target group) does not exist.
    Raises :class:`Conflict`."""
    with _conflicts():
        row = await conn.fetchrow(
            UPDATE_TAG, tenant_id, tag_id, name, sort_order, group_id, wecom_tag_id, set_wecom_tag_id
        )
    return TagRow(**dict(row)) if row is not None else None


async def delete_tag(
    conn: Conn, tenant_id: str, tag_id: uuid.UUID, *, actor_id: str | None
) -> list[uuid.UUID] | None:
    """Delete a tag inside the caller's transaction; ``None`` when it does not exist.

    Returns the purge job created to untag its contacts (``[]`` when no contact carried it and
    the tag is gone already).
    """
    if await conn.fetchrow(LOCK_TAG, tenant_id, tag_id) is None:
        return None
    return await _retire_tag(conn, tenant_id, tag_id, actor_id)


async def delete_group(
    conn: Conn, tenant_id: str, group_id: uuid.UUID, *, actor_id: str | None
) -> list[uuid.UUID] | None:
    """Delete a group and its tags inside the caller's transaction; ``None`` when it does not
    exist. Returns the purge jobs of its tags that contacts carried."""
    if await conn.fetchrow(LOCK_GROUP, tenant_id, group_id) is None:
        return None
    await conn.execute(MARK_GROUP_DELETED, tenant_id, group_id)
    jobs: list[uuid.UUID] = []
    for row in await conn.fetch(SELECT_GROUP_TAG_IDS, tenant_id, group_id):
        if await conn.fetchrow(LOCK_TAG, tenant_id, row["tag_id"]) is not None:
            jobs += await _retire_tag(conn, tenant_id, row["tag_id"], actor_id)
    await conn.execute(DELETE_EMPTY_GROUP, tenant_id, group_id)
    return jobs


async def drop_deleted_tag(conn: Conn, tenant_id: str, tag_id: uuid.UUID, group_id: uuid.UUID) -> None:
    """After its purge job: drop a deleted tag's row, and its group's when that was deleted too."""
    await conn.execute(DELETE_DELETED_TAG, tenant_id, tag_id)
    await conn.execute(DELETE_EMPTY_GROUP, tenant_id, group_id)


async def _retire_tag(conn: Conn, tenant_id: str, tag_id: uuid.UUID, actor_id: str | None) -> list[uuid.UUID]:
    await conn.execute(MARK_TAG_DELETED, tenant_id, tag_id)
    job_id = uuid.uuid4()
    status = await conn.execute(INSERT_PURGE_ITEMS, tenant_id, tag_id, job_id)
    carried = int(status.split()[-1])
    if carried == 0:
        await conn.execute(DELETE_DELETED_TAG, tenant_id, tag_id)
        return []
    await conn.execute(INSERT_PURGE_JOB, tenant_id, job_id, tag_id, actor_id, carried)
    return [job_id]
