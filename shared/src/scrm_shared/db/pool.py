"""asyncpg pool factory: one pool per service, bound to the service's own schema."""

from __future__ import annotations

import asyncio
import json

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def ensure_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # Identifier quoting via format('%I') keeps the schema name out of SQL text building.
        await conn.execute(
            "DO $$ BEGIN EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', "
            + "$q$" + schema.replace("$", "") + "$q$"
            + "); END $$"
        )
    finally:
        await conn.close()


async def create_pool(
    dsn: str,
    *,
    schema: str,
    min_size: int = 1,
    max_size: int = 10,
    wait_seconds: float = 0.0,
) -> asyncpg.Pool:
    """Create a pool whose connections use ``schema`` (created if missing) as search_path.

    ``wait_seconds`` > 0 retries while PostgreSQL is still starting (used by the local stack,
    where the database and the services start together).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        try:
            await ensure_schema(dsn, schema)
            break
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": "scrm", "timezone": "UTC"},
    )
    assert pool is not None
    return pool
