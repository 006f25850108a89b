"""Consumer-side idempotency: claim event_ids inside the transaction that applies them.

A handler calls :func:`claim_new` first in its transaction; only the returned (never seen) ids
are applied. A redelivered batch claims nothing and so changes nothing, which is what makes
"commit offsets after the transaction" exactly-once in effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar
from uuid import UUID

import asyncpg

CLAIM_EVENTS = """
INSERT INTO processed_events (consumer, event_id)
SELECT $1, e FROM unnest($2::uuid[]) AS e
ON CONFLICT DO NOTHING
RETURNING event_id
"""


async def claim_new(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """Record ``event_ids`` as processed by ``consumer``; return those not processed before."""
    if not conn.is_in_transaction():
        raise RuntimeError("claim_new must run inside the transaction that applies the events")
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    rows = await conn.fetch(CLAIM_EVENTS, consumer, ids)
    return {r["event_id"] for r in rows}


class HasEventId(Protocol):
    @property
    def event(self) -> Any: ...


T = TypeVar("T", bound=HasEventId)


async def claim_batch(conn: asyncpg.Connection, consumer: str, batch: Sequence[T]) -> list[T]:
    """The items of ``batch`` whose event was never applied by ``consumer``, each once.

    A batch may carry one event twice (a producer retry): only its first occurrence is kept.
    """
    fresh = await claim_new(conn, consumer, (item.event.event_id for item in batch))
    out: list[T] = []
    for item in batch:
        if item.event.event_id in fresh:
            fresh.discard(item.event.event_id)
            out.append(item)
    return out
