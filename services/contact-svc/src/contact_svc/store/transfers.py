"""Transfers (在职/离职继承): checking and moving follow relations in one transaction.

:func:`create_transfer` locks the customers' contact rows (in external_userid order, code-point
collation, like every writer of contacts), so two transfers of one customer cannot both pass the 90-day rule.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from contact_svc.domain.contacts import TRANSFER_DELETE_SOURCE
from contact_svc.domain.transfers import TRANSFER_WINDOW, TransferRequest, check_transfer
from contact_svc.store.readmodel import refresh_contact_status
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.events import ContactsTransferred, ContactsTransferredEvent, new_event

Conn = Connection | PoolConnectionProxy
Executor = Conn | asyncpg.Pool

LOCK_CONTACTS = """
SELECT external_userid FROM contacts
WHERE tenant_id = $1 AND external_userid = ANY($2::text[])
ORDER BY external_userid COLLATE "C"
FOR UPDATE
"""

SELECT_FOLLOWS = """
SELECT external_userid, staff_id, status FROM follows
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND staff_id = ANY($3::text[])
ORDER BY external_userid, staff_id
FOR UPDATE
"""

# Failed transfers did not move anyone, so they do not count against WeCom's limit.
SELECT_RECENT_TRANSFERS = """
SELECT external_userid, transferred_at FROM transfer_items
WHERE tenant_id = $1 AND external_userid = ANY($2::text[]) AND status <> 'failed' AND transferred_at > $3
"""

SELECT_STAFF_STATUS = "SELECT status FROM staff WHERE tenant_id = $1 AND staff_id = $2"

END_FOLLOWS = """
UPDATE follows
SET status = 'deleted', deleted_by = 'staff', delete_source = $4, deleted_at = $5,
    last_event_at = GREATEST(last_event_at, $5)
WHERE tenant_id = $1 AND staff_id = $2 AND external_userid = ANY($3::text[])
RETURNING external_userid, state, store_id, remark, description
"""

# The taker's follow carries the old one's channel and remark; its store is the taker's own.
START_FOLLOWS = """
INSERT INTO follows AS f
    (tenant_id, external_userid, staff_id, state, store_id, remark, description, added_at, status, last_event_at)
SELECT $1, x.external_userid, $2, x.state, COALESCE((SELECT store_id FROM staff WHERE tenant_id = $1 AND staff_id = $2), x.store_id),
       x.remark, x.description, $3, 'active', $3
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
    AS x(external_userid, state, store_id, remark, description)
ORDER BY x.external_userid
ON CONFLICT (tenant_id, external_userid, staff_id) DO UPDATE SET
    state = EXCLUDED.state, store_id = EXCLUDED.store_id, remark = EXCLUDED.remark,
    description = EXCLUDED.description, added_at = EXCLUDED.added_at, status = 'active',
    deleted_by = NULL, delete_source = NULL, deleted_at = NULL,
    last_event_at = GREATEST(f.last_event_at, EXCLUDED.last_event_at)
"""

INSERT_STAFF = "INSERT INTO staff (tenant_id, staff_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"

INSERT_TRANSFER = """
INSERT INTO transfers (tenant_id, transfer_id, from_staff, to_staff, kind, created_by, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

INSERT_TRANSFER_ITEMS = """
INSERT INTO transfer_items (tenant_id, transfer_id, external_userid, transferred_at)
SELECT $1, $2, e, $3 FROM unnest($4::text[]) AS e
"""

SELECT_TRANSFER = """
SELECT transfer_id, from_staff, to_staff, kind, created_by, created_at
FROM transfers WHERE tenant_id = $1 AND transfer_id = $2
"""

SELECT_TRANSFER_ITEMS = """
SELECT external_userid, status, fail_reason, transferred_at
FROM transfer_items WHERE tenant_id = $1 AND transfer_id = $2
ORDER BY external_userid
"""


@dataclass(frozen=True, slots=True)
class TransferView:
    transfer: asyncpg.Record
    items: list[asyncpg.Record]


async def create_transfer(
    conn: Conn, request: TransferRequest, *, created_by: str | None, now: datetime
) -> str:
    """Check and make the transfer inside the caller's transaction; returns its transfer_id.

    Raises a :class:`contact_svc.domain.transfers.TransferRefused` (nothing written) when a rule
    forbids it.
    """
    t, ids = request.tenant_id, sorted(request.external_userids)
    await conn.fetch(LOCK_CONTACTS, t, ids)
    follows = await conn.fetch(SELECT_FOLLOWS, t, ids, [request.from_staff, request.to_staff])
    active: defaultdict[str, set[str]] = defaultdict(set)
    for r in follows:
        if r["status"] == "active":
            active[r["staff_id"]].add(r["external_userid"])
    history: dict[str, list[datetime]] = defaultdict(list)
    for r in await conn.fetch(SELECT_RECENT_TRANSFERS, t, ids, now - TRANSFER_WINDOW):
        history[r["external_userid"]].append(r["transferred_at"])
    check_transfer(
        request,
        followed_by_from=active[request.from_staff],
        followed_by_to=active[request.to_staff],
        history=history,
        to_staff_resigned=await conn.fetchval(SELECT_STAFF_STATUS, t, request.to_staff) == "resigned",
        now=now,
    )

    transfer_id = uuid.uuid4().hex
    ended = await conn.fetch(END_FOLLOWS, t, request.from_staff, ids, TRANSFER_DELETE_SOURCE, now)
    ended = sorted(ended, key=lambda r: r["external_userid"])
    await conn.execute(INSERT_STAFF, t, request.to_staff)
    await conn.execute(
        START_FOLLOWS,
        t,
        request.to_staff,
        now,
        [r["external_userid"] for r in ended],
        [r["state"] for r in ended],
        [r["store_id"] for r in ended],
        [r["remark"] for r in ended],
        [r["description"] for r in ended],
    )
    await conn.execute(
        INSERT_TRANSFER, t, transfer_id, request.from_staff, request.to_staff, request.kind, created_by, now
    )
    await conn.execute(INSERT_TRANSFER_ITEMS, t, transfer_id, now, ids)
    await refresh_contact_status(conn, [(t, e) for e in ids])
    event = new_event(
        ContactsTransferredEvent,
        tenant_id=t,
        source="contact-svc",
        occurred_at=now,
        data=ContactsTransferred(
            transfer_id=transfer_id,
            from_staff=request.from_staff,
            to_staff=request.to_staff,
            kind=request.kind,
            external_userids=ids,
            transferred_at=now,
        ),
    )
    await enqueue_event(conn, "contacts-transferred", event)
    return transfer_id


async def get_transfer(conn: Executor, tenant_id: str, transfer_id: str) -> TransferView | None:
    """A transfer of the tenant with its items, or ``None``."""
    transfer = await conn.fetchrow(SELECT_TRANSFER, tenant_id, transfer_id)
    if transfer is None:
        return None
    items = await conn.fetch(SELECT_TRANSFER_ITEMS, tenant_id, transfer_id)
    return TransferView(transfer=transfer, items=list(items))
