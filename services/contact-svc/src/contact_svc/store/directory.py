"""Staff, stores and channel codes: the tenant's directory, edited by admins and operators.

The worker also inserts staff and stores it sees in events (names unknown until an admin sets
them); these statements never touch another tenant's rows.
"""

from __future__ import annotations

import asyncpg
from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

Conn = Connection | PoolConnectionProxy | asyncpg.Pool

# Followers: active follows. A guide sees only their own row ($2).
LIST_STAFF = """
SELECT s.staff_id, s.name, s.store_id, s.status,
       (SELECT count(*) FROM follows f
        WHERE f.tenant_id = s.tenant_id AND f.staff_id = s.staff_id AND f.status = 'active') AS followers
FROM staff s
WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.staff_id = $2)
ORDER BY s.staff_id
"""

# Only the fields the request carries change ($3/$5/$7 say which); a new row starts 'active'.
UPSERT_STAFF = """
INSERT INTO staff AS s (tenant_id, staff_id, name, store_id, status)
VALUES ($1, $2, $4, $6, COALESCE($8, 'active'))
ON CONFLICT (tenant_id, staff_id) DO UPDATE SET
    name = CASE WHEN $3 THEN $4 ELSE s.name END,
    store_id = CASE WHEN $5 THEN $6 ELSE s.store_id END,
    status = CASE WHEN $7 THEN $8 ELSE s.status END,
    updated_at = now()
RETURNING staff_id, name, store_id, status,
    (SELECT count(*) FROM follows f
     WHERE f.tenant_id = s.tenant_id AND f.staff_id = s.staff_id AND f.status = 'active') AS followers
"""

SELECT_STAFF_STATUS = "SELECT status FROM staff WHERE tenant_id = $1 AND staff_id = $2"

LIST_STORES = "SELECT store_id, name FROM stores WHERE tenant_id = $1 ORDER BY store_id"

UPSERT_STORE = """
INSERT INTO stores (tenant_id, store_id, name) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, store_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
RETURNING store_id, name
"""

STORE_EXISTS = "SELECT EXISTS (SELECT 1 FROM stores WHERE tenant_id = $1 AND store_id = $2)"

LIST_CHANNELS = """
SELECT state, name, store_id, campaign_id FROM channels WHERE tenant_id = $1 ORDER BY state
"""

UPSERT_CHANNEL = """
INSERT INTO channels (tenant_id, state, name, store_id, campaign_id) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, state) DO UPDATE SET
    name = EXCLUDED.name, store_id = EXCLUDED.store_id, campaign_id = EXCLUDED.campaign_id, updated_at = now()
RETURNING state, name, store_id, campaign_id
"""


async def list_staff(conn: Conn, tenant_id: str, *, only: str | None = None) -> list[asyncpg.Record]:
    """The tenant's staff with their active follower counts (``only``: one staff member)."""
    return await conn.fetch(LIST_STAFF, tenant_id, only)


async def upsert_staff(
    conn: Conn,
    tenant_id: str,
    staff_id: str,
    *,
    fields: dict[str, str | None],
) -> asyncpg.Record:
    """Create or update a staff member with the given ``fields`` (name, store_id, status)."""
    row = await conn.fetchrow(
        UPSERT_STAFF,
        tenant_id,
        staff_id,
        "name" in fields,
        fields.get("name"),
        "store_id" in fields,
        fields.get("store_id"),
        "status" in fields,
        fields.get("status"),
    )
    assert row is not None
    return row


async def staff_status(conn: Conn, tenant_id: str, staff_id: str) -> str | None:
    """``active``, ``resigned``, or ``None`` for a staff member never seen."""
    return await conn.fetchval(SELECT_STAFF_STATUS, tenant_id, staff_id)


async def list_stores(conn: Conn, tenant_id: str) -> list[asyncpg.Record]:
    """The tenant's stores (named by an admin, or only seen in events so far)."""
    return await conn.fetch(LIST_STORES, tenant_id)


async def upsert_store(conn: Conn, tenant_id: str, store_id: str, name: str) -> asyncpg.Record:
    """Create or rename a store."""
    row = await conn.fetchrow(UPSERT_STORE, tenant_id, store_id, name)
    assert row is not None
    return row


async def store_exists(conn: Conn, tenant_id: str, store_id: str) -> bool:
    """Whether the tenant has this store."""
    return bool(await conn.fetchval(STORE_EXISTS, tenant_id, store_id))


async def list_channels(conn: Conn, tenant_id: str) -> list[asyncpg.Record]:
    """The tenant's channel codes."""
    return await conn.fetch(LIST_CHANNELS, tenant_id)


async def upsert_channel(
    conn: Conn, tenant_id: str, state: str, *, name: str, store_id: str | None, campaign_id: str | None
) -> asyncpg.Record:
    """Create or replace the channel code ``state``."""
    row = await conn.fetchrow(UPSERT_CHANNEL, tenant_id, state, name, store_id, campaign_id)
    assert row is not None
    return row
