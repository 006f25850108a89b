"""Contacts for the API: filtered keyset listing, one contact, erasure.

Every statement is scoped by tenant_id ($1). A guide's requests pass the guide's staff_id as
``guide``: only contacts that staff member actively follows are found (anything else reads as
"not found", never "forbidden").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from contact_svc.domain.listing import Position, SortOrder
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.events import ContactErased, ContactErasedEvent, new_event

Conn = Connection | PoolConnectionProxy

# A contact never seen added sorts as the oldest; asyncpg sends datetime.min as '-infinity'.
_NEVER = datetime.min.replace(tzinfo=UTC)

# $2 external_userid, $3 staff_id, $4 store_id, $5 state (one follow matching all three),
# $6 status, $7/$8 first_added_at range [from, to), $9 ILIKE pattern, $10 guide's staff_id,
# $11/$12 cursor (sort key, contact_id), $13 limit. A NULL parameter is no filter.
LIST_CONTACTS_DESC = """
SELECT c.contact_id, c.external_userid, c.name, c.avatar, c.gender, c.unionid, c.status, c.first_added_at
FROM contacts c
WHERE c.tenant_id = $1
  AND ($2::text IS NULL OR c.external_userid = $2)
  AND (($3::text IS NULL AND $4::text IS NULL AND $5::text IS NULL) OR EXISTS (
        SELECT 1 FROM follows f
        WHERE f.tenant_id = c.tenant_id AND f.external_userid = c.external_userid
          AND ($3::text IS NULL OR f.staff_id = $3)
          AND ($4::text IS NULL OR f.store_id = $4)
          AND ($5::text IS NULL OR f.state = $5)))
  AND ($6::text IS NULL OR c.status = $6)
  AND ($7::timestamptz IS NULL OR c.first_added_at >= $7)
  AND ($8::timestamptz IS NULL OR c.first_added_at < $8)
  AND ($9::text IS NULL OR c.name ILIKE $9 ESCAPE '\\')
  AND ($10::text IS NULL OR EXISTS (
        SELECT 1 FROM follows g
        WHERE g.tenant_id = c.tenant_id AND g.external_userid = c.external_userid
          AND g.staff_id = $10 AND g.status = 'active'))
  AND ($11::timestamptz IS NULL
       OR (COALESCE(c.first_added_at, '-infinity'::timestamptz), c.contact_id) < ($11, $12::uuid))
ORDER BY COALESCE(c.first_added_at, '-infinity'::timestamptz) DESC, c.contact_id DESC
LIMIT $13
"""

# The same as LIST_CONTACTS_DESC, oldest first. Two whole statements rather than one: SQL is never
# built from strings, and a sort direction chosen by a parameter would keep the planner from
# walking contacts_tenant_sort_idx for the keyset.
LIST_CONTACTS_ASC = """
SELECT c.contact_id, c.external_userid, c.name, c.avatar, c.gender, c.unionid, c.status, c.first_added_at
FROM contacts c
WHERE c.tenant_id = $1
  AND ($2::text IS NULL OR c.external_userid = $2)
  AND (($3::text IS NULL AND $4::text IS NULL AND $5::text IS NULL) OR EXISTS (
        SELECT 1 FROM follows f
        WHERE f.tenant_id = c.tenant_id AND f.external_userid = c.external_userid
          AND ($3::text IS NULL OR f.staff_id = $3)
          AND ($4::text IS NULL OR f.store_id = $4)
          AND ($5::text IS NULL OR f.state = $5)))
  AND ($6::text IS NULL OR c.status = $6)
  AND ($7::timestamptz IS NULL OR c.first_added_at >= $7)
  AND ($8::timestamptz IS NULL OR c.first_added_at < $8)
  AND ($9::text IS NULL OR c.name ILIKE $9 ESCAPE '\\')
  AND ($10::text IS NULL OR EXISTS (
        SELECT 1 FROM follows g
        WHERE g.tenant_id = c.tenant_id AND g.external_userid = c.external_userid
          AND g.staff_id = $10 AND g.status = 'active'))
  AND ($11::timestamptz IS NULL
       OR (COALESCE(c.first_added_at, '-infinity'::timestamptz), c.contact_id) > ($11, $12::uuid))
ORDER BY COALESCE(c.first_added_at, '-infinity'::timestamptz) ASC, c.contact_id ASC
LIMIT $13
"""

SELECT_FOLLOWS_OF = """
SELECT external_userid, staff_id, state, store_id, added_at, status, deleted_by, remark
FROM follows
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
ORDER BY external_userid, added_at NULLS LAST, staff_id
"""

SELECT_CONTACT = """
SELECT c.contact_id, c.external_userid, c.name, c.avatar, c.gender, c.unionid, c.status, c.first_added_at
FROM contacts c
WHERE c.tenant_id = $1 AND c.contact_id = $2
  AND ($3::text IS NULL OR EXISTS (
        SELECT 1 FROM follows g
        WHERE g.tenant_id = c.tenant_id AND g.external_userid = c.external_userid
          AND g.staff_id = $3 AND g.status = 'active'))
"""

# Erasure locks the contact row first, like every other writer of a contact.
LOCK_CONTACT = """
SELECT contact_id, external_userid, status
FROM contacts c
WHERE c.tenant_id = $1 AND c.contact_id = $2
  AND ($3::text IS NULL OR EXISTS (
        SELECT 1 FROM follows g
        WHERE g.tenant_id = c.tenant_id AND g.external_userid = c.external_userid
          AND g.staff_id = $3 AND g.status = 'active'))
FOR UPDATE
"""
ERASE_CONTACT = """
UPDATE contacts
SET name = NULL, avatar = NULL, unionid = NULL, status = 'erased', erased_at = $3, updated_at = now()
WHERE tenant_id = $1 AND contact_id = $2
"""
ERASE_FOLLOWS = """
UPDATE follows SET remark = NULL, description = NULL
WHERE tenant_id = $1 AND external_userid = $2
"""
DELETE_IDENTITIES = "DELETE FROM identities WHERE tenant_id = $1 AND external_userid = $2"
SCRUB_CALLBACK_ARCHIVE = """
UPDATE callback_archive SET payload = ''
WHERE tenant_id = $1 AND external_userid = $2
"""


@dataclass(frozen=True, slots=True)
class ContactFilter:
    """Filters of GET /v1/contacts (``None``: not filtered)."""

    external_userid: str | None = None
    staff_id: str | None = None
    store_id: str | None = None
    state: str | None = None
    status: str | None = None
    added_from: datetime | None = None
    added_to: datetime | None = None
    name_pattern: str | None = None

    def scope(self) -> str:
        """A stable text of the filters, which a cursor is bound to."""
        return repr(
            (
                self.external_userid,
                self.staff_id,
                self.store_id,
                self.state,
                self.status,
                self.added_from.isoformat() if self.added_from else None,
                self.added_to.isoformat() if self.added_to else None,
                self.name_pattern,
            )
        )


@dataclass(frozen=True, slots=True)
class LockedContact:
    contact_id: uuid.UUID
    external_userid: str
    status: str


async def list_contacts(
    conn: Conn,
    tenant_id: str,
    filters: ContactFilter,
    *,
    guide: str | None,
    sort: SortOrder,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` contacts after ``after`` in ``sort`` order."""
    query = LIST_CONTACTS_ASC if sort == "first_added_at" else LIST_CONTACTS_DESC
    return await conn.fetch(
        query,
        tenant_id,
        filters.external_userid,
        filters.staff_id,
        filters.store_id,
        filters.state,
        filters.status,
        filters.added_from,
        filters.added_to,
        filters.name_pattern,
        guide,
        None if after is None else (after.first_added_at or _NEVER),
        None if after is None else after.contact_id,
        limit,
    )


async def follows_of(
    conn: Conn, tenant_id: str, external_userids: list[str]
) -> dict[str, list[asyncpg.Record]]:
    """The follow rows of these contacts, grouped by external_userid."""
    out: dict[str, list[asyncpg.Record]] = {e: [] for e in external_userids}
    if external_userids:
        for r in await conn.fetch(SELECT_FOLLOWS_OF, tenant_id, external_userids):
            out[r["external_userid"]].append(r)
    return out


async def get_contact(
    conn: Conn, tenant_id: str, contact_id: uuid.UUID, *, guide: str | None
) -> asyncpg.Record | None:
    """One contact of the tenant (and, for a guide, one the guide follows), else ``None``."""
    return await conn.fetchrow(SELECT_CONTACT, tenant_id, contact_id, guide)


async def lock_contact(
    conn: Conn, tenant_id: str, contact_id: uuid.UUID, *, guide: str | None = None
) -> LockedContact | None:
    """Lock the contact row for the rest of the transaction; ``None`` if not visible."""
    r = await conn.fetchrow(LOCK_CONTACT, tenant_id, contact_id, guide)
    return None if r is None else LockedContact(r["contact_id"], r["external_userid"], r["status"])


async def erase_contact(conn: Conn, tenant_id: str, contact: LockedContact, now: datetime) -> None:
    """PIPL erasure inside the caller's transaction: personal fields go, counts stay, and
    ``contact-erased`` tells every other service to do the same."""
    await conn.execute(ERASE_CONTACT, tenant_id, contact.contact_id, now)
    await conn.execute(ERASE_FOLLOWS, tenant_id, contact.external_userid)
    await conn.execute(DELETE_IDENTITIES, tenant_id, contact.external_userid)
    await conn.execute(SCRUB_CALLBACK_ARCHIVE, tenant_id, contact.external_userid)
    event = new_event(
        ContactErasedEvent,
        tenant_id=tenant_id,
        source="contact-svc",
        occurred_at=now,
        data=ContactErased(
            external_userid=contact.external_userid, contact_id=str(contact.contact_id), erased_at=now
        ),
    )
    await enqueue_event(conn, "contact-erased", event)
