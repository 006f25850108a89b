"""SQL of identity links (contact-identified) and of the orders and refunds waiting for them."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from scrm_shared.db.pool import delete_in_batches
from tag_svc.processor.store import Conn, Executor

__all__ = [
    "Link",
    "PendingOrder",
    "PendingRefund",
    "insert_pending_orders",
    "insert_pending_refunds",
    "links_for",
    "order_facts",
    "purge_pending",
    "take_pending_orders",
    "take_pending_refunds",
    "upsert_links",
]

# A later link of one identity to another contact wins (a phone number changing hands); an
# erased contact gets no identities again.
UPSERT_LINKS = """
INSERT INTO identity_links AS l (tenant_id, kind, value, external_userid, linked_at)
SELECT $1, x.k, x.v, x.u, x.a FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS x(k, v, u, a)
WHERE NOT EXISTS (
    SELECT 1 FROM profiles p WHERE p.tenant_id = $1 AND p.external_userid = x.u AND p.status = 'erased'
)
ORDER BY x.k, x.v
ON CONFLICT (tenant_id, kind, value) DO UPDATE SET
    external_userid = EXCLUDED.external_userid, linked_at = EXCLUDED.linked_at
WHERE l.linked_at <= EXCLUDED.linked_at
"""

SELECT_LINKS = """
SELECT l.kind, l.value, l.external_userid
FROM identity_links l JOIN unnest($2::text[], $3::text[]) AS x(k, v) ON l.kind = x.k AND l.value = x.v
WHERE l.tenant_id = $1
"""

INSERT_PENDING_ORDERS = """
INSERT INTO pending_orders (tenant_id, order_id, unionid, member_id, phone_hash, event_id, order_data)
SELECT $1, x.o, x.u, x.m, x.p, x.e, x.d::jsonb
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[]) AS x(o, u, m, p, e, d)
ON CONFLICT (tenant_id, order_id) DO NOTHING
"""

# The pending orders one of the new links resolves, taken out of the queue in the transaction
# that applies them.
TAKE_PENDING_ORDERS = """
DELETE FROM pending_orders
WHERE tenant_id = $1 AND (unionid = ANY($2::text[]) OR member_id = ANY($3::text[]) OR phone_hash = ANY($4::text[]))
RETURNING order_id, event_id, order_data
"""

INSERT_PENDING_REFUNDS = """
INSERT INTO pending_refunds (tenant_id, refund_id, order_id, event_id, refund_data)
SELECT $1, x.r, x.o, x.e, x.d::jsonb FROM unnest($2::text[], $3::text[], $4::uuid[], $5::text[]) AS x(r, o, e, d)
ON CONFLICT (tenant_id, refund_id) DO NOTHING
"""

TAKE_PENDING_REFUNDS = """
DELETE FROM pending_refunds WHERE tenant_id = $1 AND order_id = ANY($2::text[])
RETURNING refund_id, order_id, event_id, refund_data
"""

# Retention: orders and refunds of identities that never linked to a contact within the TTL are
# dropped (every tenant, in short batches; the pending tables are the only ones that hold them).
PURGE_PENDING_ORDERS = """
DELETE FROM pending_orders WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM pending_orders WHERE received_at < now() - $1::interval LIMIT $2
))
"""
PURGE_PENDING_REFUNDS = """
DELETE FROM pending_refunds WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM pending_refunds WHERE received_at < now() - $1::interval LIMIT $2
))
"""

# What a refund needs of its order: whose it is, and the day/channel/store it is dated with.
SELECT_ORDER_FACTS = """
SELECT event_key AS order_id, external_userid, day, channel, store_id, amount
FROM profile_facts
WHERE tenant_id = $1 AND event_type = 'order-placed' AND event_key = ANY($2::text[])
"""


@dataclass(frozen=True, slots=True)
class Link:
    kind: str
    value: str
    external_userid: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class PendingOrder:
    order_id: str
    unionid: str | None
    member_id: str | None
    phone_hash: str | None
    event_id: UUID
    order_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingRefund:
    refund_id: str
    order_id: str
    event_id: UUID
    refund_data: dict[str, Any]


async def upsert_links(conn: Conn, tenant_id: str, links: Sequence[Link]) -> None:
    """Record ``links`` (one per (kind, value): the caller keeps the latest of a batch)."""
    if links:
        await conn.execute(
            UPSERT_LINKS,
            tenant_id,
            [x.kind for x in links],
            [x.value for x in links],
            [x.external_userid for x in links],
            [x.linked_at for x in links],
        )


async def links_for(
    conn: Conn, tenant_id: str, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The contact each known (kind, value) identity belongs to."""
    if not keys:
        return {}
    pairs = sorted(keys)
    rows = await conn.fetch(SELECT_LINKS, tenant_id, [k for k, _ in pairs], [v for _, v in pairs])
    return {(r["kind"], r["value"]): r["external_userid"] for r in rows}


async def insert_pending_orders(conn: Conn, tenant_id: str, orders: Sequence[PendingOrder]) -> None:
    if orders:
        await conn.execute(
            INSERT_PENDING_ORDERS,
            tenant_id,
            [o.order_id for o in orders],
            [o.unionid for o in orders],
            [o.member_id for o in orders],
            [o.phone_hash for o in orders],
            [o.event_id for o in orders],
            [json.dumps(o.order_data) for o in orders],
        )


async def take_pending_orders(
    conn: Conn, tenant_id: str, values: dict[str, list[str]]
) -> list[tuple[str, UUID, dict[str, Any]]]:
    """Remove and return the pending orders that carry one of ``values`` (per identity kind)."""
    if not any(values.values()):
        return []
    rows = await conn.fetch(
        TAKE_PENDING_ORDERS,
        tenant_id,
        values.get("unionid", []),
        values.get("member_id", []),
        values.get("phone_hash", []),
    )
    return [(r["order_id"], r["event_id"], r["order_data"]) for r in rows]


async def insert_pending_refunds(conn: Conn, tenant_id: str, refunds: Sequence[PendingRefund]) -> None:
    if refunds:
        await conn.execute(
            INSERT_PENDING_REFUNDS,
            tenant_id,
            [r.refund_id for r in refunds],
            [r.order_id for r in refunds],
            [r.event_id for r in refunds],
            [json.dumps(r.refund_data) for r in refunds],
        )


async def take_pending_refunds(conn: Conn, tenant_id: str, order_ids: Collection[str]) -> list[PendingRefund]:
    """Remove and return the refunds waiting for one of ``order_ids``."""
    if not order_ids:
        return []
    rows = await conn.fetch(TAKE_PENDING_REFUNDS, tenant_id, sorted(order_ids))
    return [PendingRefund(r["refund_id"], r["order_id"], r["event_id"], r["refund_data"]) for r in rows]


async def order_facts(conn: Conn, tenant_id: str, order_ids: Collection[str]) -> dict[str, asyncpg.Record]:
    """The stored facts of the orders among ``order_ids`` that have one."""
    if not order_ids:
        return {}
    rows = await conn.fetch(SELECT_ORDER_FACTS, tenant_id, sorted(order_ids))
    return {r["order_id"]: r for r in rows}


async def purge_pending(db: Executor, older_than: timedelta, *, batch_size: int = 5000) -> tuple[int, int]:
    """Drop pending orders and refunds received more than ``older_than`` ago; returns how many
    of each went."""
    orders = await delete_in_batches(db, PURGE_PENDING_ORDERS, older_than, batch_size=batch_size)
    refunds = await delete_in_batches(db, PURGE_PENDING_REFUNDS, older_than, batch_size=batch_size)
    return orders, refunds
