"""asyncpg pool factory: one pool per service, bound to the service's own schema.

Also the few schema-name helpers the migration runner and the outbox share: a schema name is
the one identifier that has to appear in SQL text (DDL and ``search_path`` take no bind
parameters), so it is validated against a strict pattern first and then quoted; and two helpers
for code that takes "a pool or a connection" (:func:`connection_of`) or deletes in short batches
(:func:`delete_in_batches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Lower-case, starts with a letter or underscore, fits PostgreSQL's 63-byte identifier limit.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a valid service schema name, else raise ``ValueError``."""
    if not isinstance(schema, str) or SCHEMA_NAME.fullmatch(schema) is None:
        raise ValueError(f"invalid schema name {schema!r}: expected {SCHEMA_NAME.pattern}")
    return schema


def quote_schema(schema: str) -> str:
    """The schema name as a quoted SQL identifier (validated first, so quoting is exact)."""
    return '"' + check_schema_name(schema) + '"'


def advisory_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` within ``schema``.

    Derived from sha256 so every process (and every Python version) computes the same key.
    """
    digest = hashlib.sha256(f"scrm:{purpose}:{check_schema_name(schema)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def create_schema_if_missing(conn: asyncpg.Connection, schema: str) -> None:
    """Create ``schema`` unless it exists (no CREATE privilege is needed when it does)."""
    if await conn.fetchval(_SCHEMA_EXISTS, check_schema_name(schema)):
        return
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(schema)}")
    except asyncpg.UniqueViolationError:
        # Two processes racing on CREATE SCHEMA IF NOT EXISTS: the loser gets a unique violation
        # on pg_namespace, but the schema it wanted now exists.
        pass


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def ensure_schema(dsn: str, schema: str) -> None:
    """Connect once to ``dsn`` and create ``schema`` if it is missing."""
    check_schema_name(schema)
    conn = await asyncpg.connect(dsn)
    try:
        await create_schema_if_missing(conn, schema)
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
    check_schema_name(schema)
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


@contextlib.asynccontextmanager
async def connection_of(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
) -> AsyncIterator[asyncpg.Connection | PoolConnectionProxy]:
    """A connection of ``db``: ``db`` itself, or one acquired from the pool for the block."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def delete_in_batches(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    statement: str,
    *args: Any,
    batch_size: int,
) -> int:
    """Run a ``DELETE ... LIMIT``-style ``statement`` (its last parameter the batch size, after
    ``args``) until a run deletes fewer than ``batch_size`` rows; returns how many went. Short
    batches keep locks and WAL bursts small for retention purges."""
    total = 0
    while True:
        status = await db.execute(statement, *args, batch_size)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch_size:
            return total
