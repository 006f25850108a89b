"""contact-svc's worker: what it does with each batch of its topics.

Every batch is one transaction: claim the event_ids (a redelivered event changes nothing), keep
the ingest tally, apply the new events to the contacts read model, record the identity links they
teach and enqueue ``contact-identified`` for each new one. Offsets are committed by the shared
consume loop only after that transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from contact_svc.domain.contacts import plan_read_model
from contact_svc.domain.identities import link_requests
from contact_svc.enrichment import run_enrichment
from contact_svc.store.identities import link, report_conflicts
from contact_svc.store.readmodel import apply_read_model
from scrm_shared.db.inbox import claim_batch
from scrm_shared.kafka.consumer import Consumed, Handler
from scrm_shared.service import WorkerDeps
from scrm_shared.service.tally import count_tally

TOPICS = ("friend-added", "friend-deleted", "contact-updated", "transfer-failed", "order-placed")
BACKGROUND = (run_enrichment,)


def build_handler(deps: WorkerDeps) -> Handler:
    """Wire the worker's batch handler (tests pass their own deps into the same builder)."""

    async def handle(batch: Sequence[Consumed]) -> None:
        async with deps.pool.acquire() as conn, conn.transaction():
            fresh = await claim_batch(conn, deps.service, batch)
            if not fresh:
                return
            await count_tally(conn, fresh)
            events = [c.event for c in fresh]
            await apply_read_model(conn, plan_read_model(events))
            plan = await link(conn, link_requests(events))
        report_conflicts(plan.conflicts)

    return handle
