"""SQL of the WeCom side: the push queue and each tenant's API credentials.

The queue (``wecom_pushes``) holds three kinds of calls: ``mark_tag`` (a contact's tags on one
staff member's relation), and the catalogue's ``edit_corp_tag`` (a linked group or tag renamed
here) and ``del_corp_tag`` (linked groups or tags deleted here), which belong to no contact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from scrm_shared.secrets import SealedColumn, SecretBox
from tag_svc.tags.domain import PushPlan
from tag_svc.tags.store import Conn, Executor

__all__ = [
    "SEALED",
    "Credentials",
    "PushKind",
    "QueuedPush",
    "claim_pushes",
    "count_pushes",
    "delete_push",
    "fail_push",
    "get_credentials",
    "pending_corp_tag_edits",
    "queue_corp_tag_delete",
    "queue_corp_tag_edit",
    "queue_pushes",
    "retry_push",
    "upsert_credentials",
]

# One statement for a job chunk's thousand pushes; each row's tag lists travel as JSON arrays
# (unnest cannot take an array of arrays of different lengths).
INSERT_PUSHES = """
INSERT INTO wecom_pushes (tenant_id, external_userid, staff_id, add_tag, remove_tag)
SELECT $1, x.e, x.s,
       ARRAY(SELECT jsonb_array_elements_text(x.a::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(x.r::jsonb))
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS x(e, s, a, r, n)
ORDER BY x.n
"""

INSERT_CORP_TAG_EDIT = """
INSERT INTO wecom_pushes (tenant_id, kind, wecom_id, wecom_name) VALUES ($1, 'edit_corp_tag', $2, $3)
"""

INSERT_CORP_TAG_DELETE = """
INSERT INTO wecom_pushes (tenant_id, kind, del_tag_ids, del_group_ids)
VALUES ($1, 'del_corp_tag', $2::text[], $3::text[])
"""

# The pusher's queue scan, across tenants. Claiming leases a row (pushes it next_attempt_at out by
# the lease) so that concurrent pushers share the queue and a pusher that dies mid-call only
# delays its rows. A contact's pushes go out in the order they were queued: a row waits while an
# older one of the same contact is pending (leased, or backing off). So do a tenant's catalogue
# pushes (external_userid NULL): a rename waits for an earlier rename or deletion.
CLAIM_PUSHES = """
UPDATE wecom_pushes SET next_attempt_at = now() + $2::interval
WHERE id IN (
    SELECT p.id FROM wecom_pushes p
    WHERE p.status = 'pending' AND p.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM wecom_pushes e
          WHERE e.tenant_id = p.tenant_id AND e.external_userid = p.external_userid
            AND e.status = 'pending' AND e.id < p.id
      )
      AND (p.kind = 'mark_tag' OR NOT EXISTS (
          SELECT 1 FROM wecom_pushes e
          WHERE e.tenant_id = p.tenant_id AND e.kind <> 'mark_tag'
            AND e.status = 'pending' AND e.id < p.id
      ))
    ORDER BY p.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, tenant_id, kind, external_userid, staff_id, add_tag, remove_tag, wecom_id, wecom_name,
          del_tag_ids, del_group_ids, attempts
"""

SELECT_PENDING_CORP_TAG_EDITS = """
SELECT kind, wecom_id, wecom_name, del_tag_ids, del_group_ids FROM wecom_pushes
WHERE tenant_id = $1 AND status = 'pending' AND kind <> 'mark_tag'
ORDER BY id
"""

DELETE_PUSH = "DELETE FROM wecom_pushes WHERE tenant_id = $1 AND id = $2"

RETRY_PUSH = """
UPDATE wecom_pushes
SET attempts = attempts + 1, next_attempt_at = now() + $3::interval, last_error = $4
WHERE tenant_id = $1 AND id = $2
"""

FAIL_PUSH = """
UPDATE wecom_pushes SET status = 'failed', attempts = attempts + 1, last_error = $3
WHERE tenant_id = $1 AND id = $2
"""

COUNT_PUSHES = "SELECT status, count(*) AS n FROM wecom_pushes WHERE tenant_id = $1 GROUP BY status"

# The app secret is stored sealed (scrm_shared.secrets); SEALED is what start-up re-seals.
SECRET = SealedColumn("wecom_credentials", "secret")
SEALED = (SECRET,)

UPSERT_CREDENTIALS = """
INSERT INTO wecom_credentials (tenant_id, corp_id, secret, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (tenant_id) DO UPDATE SET corp_id = EXCLUDED.corp_id, secret = EXCLUDED.secret, updated_at = now()
RETURNING tenant_id, corp_id, secret, updated_at
"""

SELECT_CREDENTIALS = (
    "SELECT tenant_id, corp_id, secret, updated_at FROM wecom_credentials WHERE tenant_id = $1"
)


PushKind = Literal["mark_tag", "edit_corp_tag", "del_corp_tag"]


@dataclass(frozen=True, slots=True)
class QueuedPush:
    """A leased row of the queue. ``mark_tag``: ``external_userid``, ``staff_id`` (``None``: the
    pusher chooses), ``add_tag``/``remove_tag``. ``edit_corp_tag``: ``wecom_id`` (a tag's or a
    group's) and its new ``wecom_name``. ``del_corp_tag``: ``del_tag_ids``, ``del_group_ids``."""

    id: int
    tenant_id: str
    external_userid: str | None
    staff_id: str | None
    add_tag: tuple[str, ...]
    remove_tag: tuple[str, ...]
    attempts: int
    kind: PushKind = "mark_tag"
    wecom_id: str | None = None
    wecom_name: str | None = None
    del_tag_ids: tuple[str, ...] = ()
    del_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A tenant's corp id and app secret (never return the secret from the API)."""

    tenant_id: str
    corp_id: str
    secret: str = field(repr=False)
    updated_at: datetime


async def queue_pushes(conn: Conn, tenant_id: str, plans: Sequence[PushPlan]) -> None:
    """Queue mark_tag calls inside the transaction of the tag change they carry."""
    if plans:
        await conn.execute(
            INSERT_PUSHES,
            tenant_id,
            [p.external_userid for p in plans],
            [p.staff_id for p in plans],
            [json.dumps(p.add_tag) for p in plans],
            [json.dumps(p.remove_tag) for p in plans],
        )


async def queue_corp_tag_edit(conn: Conn, tenant_id: str, wecom_id: str, name: str) -> None:
    """Queue renaming WeCom tag or group ``wecom_id`` to ``name`` (edit_corp_tag), inside the
    transaction of the local rename."""
    await conn.execute(INSERT_CORP_TAG_EDIT, tenant_id, wecom_id, name)


async def queue_corp_tag_delete(
    conn: Conn, tenant_id: str, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
) -> None:
    """Queue deleting WeCom tags and groups (del_corp_tag), inside the transaction of the local
    deletion; nothing when both are empty."""
    if tag_ids or group_ids:
        await conn.execute(INSERT_CORP_TAG_DELETE, tenant_id, list(tag_ids), list(group_ids))


async def pending_corp_tag_edits(conn: Executor, tenant_id: str) -> tuple[dict[str, str], set[str]]:
    """The catalogue pushes still to go (not failed ones): the new names by WeCom id (the latest
    rename of each), and the WeCom tag and group ids to delete."""
    renamed: dict[str, str] = {}
    deleted: set[str] = set()
    for r in await conn.fetch(SELECT_PENDING_CORP_TAG_EDITS, tenant_id):
        if r["kind"] == "edit_corp_tag":
            renamed[r["wecom_id"]] = r["wecom_name"]
        else:
            deleted.update(r["del_tag_ids"], r["del_group_ids"])
    return renamed, deleted


async def claim_pushes(conn: Executor, limit: int, lease: timedelta) -> list[QueuedPush]:
    """Lease up to ``limit`` due pushes of any tenant for ``lease``, oldest first."""
    rows = await conn.fetch(CLAIM_PUSHES, limit, lease)
    rows = sorted(rows, key=lambda r: r["id"])
    return [
        QueuedPush(
            id=r["id"],
            tenant_id=r["tenant_id"],
            external_userid=r["external_userid"],
            staff_id=r["staff_id"],
            add_tag=tuple(r["add_tag"]),
            remove_tag=tuple(r["remove_tag"]),
            attempts=r["attempts"],
            kind=r["kind"],
            wecom_id=r["wecom_id"],
            wecom_name=r["wecom_name"],
            del_tag_ids=tuple(r["del_tag_ids"]),
            del_group_ids=tuple(r["del_group_ids"]),
        )
        for r in rows
    ]


async def delete_push(conn: Executor, tenant_id: str, push_id: int) -> None:
    await conn.execute(DELETE_PUSH, tenant_id, push_id)


async def retry_push(conn: Executor, tenant_id: str, push_id: int, *, wait: timedelta, error: str) -> None:
    await conn.execute(RETRY_PUSH, tenant_id, push_id, wait, error)


async def fail_push(conn: Executor, tenant_id: str, push_id: int, *, error: str) -> None:
    await conn.execute(FAIL_PUSH, tenant_id, push_id, error)


async def count_pushes(conn: Executor, tenant_id: str) -> dict[str, int]:
    """The tenant's queued pushes by status (``pending``, ``failed``)."""
    return {r["status"]: r["n"] for r in await conn.fetch(COUNT_PUSHES, tenant_id)}


async def upsert_credentials(
    conn: Executor, box: SecretBox, tenant_id: str, *, corp_id: str, secret: str
) -> Credentials:
    row = await conn.fetchrow(UPSERT_CREDENTIALS, tenant_id, corp_id, SECRET.seal(box, tenant_id, secret))
    assert row is not None
    return _credentials(box, row)


async def get_credentials(conn: Executor, box: SecretBox, tenant_id: str) -> Credentials | None:
    """The tenant's credentials, the secret opened (:class:`~scrm_shared.secrets.SealedError` when
    no key of the ring opens it)."""
    row = await conn.fetchrow(SELECT_CREDENTIALS, tenant_id)
    return _credentials(box, row) if row is not None else None


def _credentials(box: SecretBox, row: Mapping[str, Any]) -> Credentials:
    return Credentials(
        tenant_id=row["tenant_id"],
        corp_id=row["corp_id"],
        secret=SECRET.open(box, row["tenant_id"], row["secret"]),
        updated_at=row["updated_at"],
    )
