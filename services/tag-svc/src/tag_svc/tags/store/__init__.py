"""Every SQL statement of tags, one module per table family.

Statements are named constants with ``$n`` parameters, scoped by ``tenant_id`` (the queue scans
of the worker's background tasks are the only statements that look across tenants, and say so).
Functions take a connection (inside the caller's transaction) or the pool.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, normally inside the caller's transaction."""
Executor = Conn | asyncpg.Pool
"""A connection, or the pool for a statement on its own."""
