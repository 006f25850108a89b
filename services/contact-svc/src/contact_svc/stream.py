"""contact-svc's worker: what it does with each batch of its topics."""

from __future__ import annotations

from contact_svc.enrichment import run_enrichment
from scrm_shared.kafka.consumer import Handler
from scrm_shared.service import WorkerDeps
from scrm_shared.service.tally import tally_handler

TOPICS = ("friend-added", "friend-deleted")
BACKGROUND = (run_enrichment,)


def build_handler(deps: WorkerDeps) -> Handler:
    """Wire the worker's batch handler (tests pass their own deps into the same builder)."""
    return tally_handler(deps)
