"""The ingest tally: what a worker consumed, per tenant, topic and event type.

A small operational read model every worker keeps from day one (and keeps beside its business
handlers later): it proves events flow end to end, exactly once, and lets a brand's engineers see
per topic what reached each service through ``GET /v1/ingest/stats``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from scrm_shared.auth import Principal, require_roles
from scrm_shared.db.inbox import claim_batch
from scrm_shared.kafka.consumer import Consumed, Handler
from scrm_shared.service.worker import WorkerDeps

UPSERT_TALLY = """
INSERT INTO ingest_tally (tenant_id, topic, event_type, consumed)
SELECT t, p, e, n FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(t, p, e, n)
ON CONFLICT (tenant_id, topic, event_type)
DO UPDATE SET consumed = ingest_tally.consumed + EXCLUDED.consumed, updated_at = now()
"""

SELECT_TALLY = """
SELECT topic, event_type, consumed, updated_at FROM ingest_tally
WHERE tenant_id = $1 ORDER BY topic, event_type
"""


async def count_tally(conn: asyncpg.Connection, fresh: Sequence[Consumed]) -> None:
    """Add already-claimed (new) events to the tally, inside the caller's transaction."""
    counts = Counter((c.event.tenant_id, c.topic, c.event.type) for c in fresh)
    if counts:
        keys = list(counts)
        await conn.execute(
            UPSERT_TALLY,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [counts[k] for k in keys],
        )


def tally_handler(deps: WorkerDeps) -> Handler:
    """A handler that only keeps the ingest tally (services add their own rules on top)."""

    async def handle(batch: Sequence[Consumed]) -> None:
        async with deps.pool.acquire() as conn, conn.transaction():
            await count_tally(conn, await claim_batch(conn, deps.service, batch))

    return handle


class TopicTally(BaseModel):
    topic: str
    event_type: str
    consumed: int


class IngestStats(BaseModel):
    tenant_id: str
    topics: list[TopicTally]


ingest_router = APIRouter(prefix="/v1/ingest", tags=["ingest"])


@ingest_router.get("/stats", response_model=IngestStats, summary="Events this service consumed")
async def ingest_stats(
    request: Request,
    principal: Annotated[Principal, Depends(require_roles("admin", "operator"))],
) -> IngestStats:
    rows = await request.app.state.pool.fetch(SELECT_TALLY, principal.tenant_id)
    return IngestStats(
        tenant_id=principal.tenant_id,
        topics=[
            TopicTally(topic=r["topic"], event_type=r["event_type"], consumed=r["consumed"]) for r in rows
        ],
    )
