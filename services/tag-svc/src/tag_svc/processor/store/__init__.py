"""Every SQL statement of live segments, one module per table family.

- :mod:`.profiles`: profiles, facts and their lines, follows and tags as the processor keeps them,
  erasure;
- :mod:`.identity`: identity links and the orders and refunds waiting for their contact;
- :mod:`.members`: memberships, sizes and their history, the schedule of time-driven changes;
- :mod:`.catalog`: segment definitions, backfill progress, tenants' timezones, RFM thresholds,
  and the reads of the API.

Statements are named constants with ``$n`` parameters, scoped by ``tenant_id`` (the queue scans
of the background tasks are the only ones that look across tenants, and say so). Batches go in
one statement each (``unnest`` of arrays), never one round trip per event. Functions take a
connection (inside the caller's transaction) or the pool.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, normally inside the caller's transaction."""
Executor = Conn | asyncpg.Pool
"""A connection, or the pool for a statement on its own."""
