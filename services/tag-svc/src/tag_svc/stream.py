"""tag-svc's worker: what it does with each batch of its topics, and its background tasks.

Every batch is one transaction: claim the event_ids (a redelivered event changes nothing), keep
the ingest tally, then apply what tags care about (:func:`tag_svc.tags.inbound.apply_events`):
erasure tombstones, follow relations, WeCom-side tag edits and tag rules (``segment-changed``)
with their ``contact-tagged`` events.
Offsets are committed by the shared consume loop only after that transaction.

Background tasks: the bulk tag job runner, the WeCom mark_tag pusher, and live segments (the
processor's own consume loop and backfills: see :mod:`tag_svc.processor`). faust hosts the timer
of time-driven segment transitions (:func:`build_faust`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import faust

from scrm_shared.db.inbox import claim_batch
from scrm_shared.kafka.consumer import Consumed, Handler
from scrm_shared.service import WorkerDeps
from scrm_shared.service.faust_host import add_timer, create_faust_app
from scrm_shared.service.tally import count_tally
from tag_svc.config import TagSettings
from tag_svc.processor import SegmentScheduler, run_segment_backfills, run_segment_processor
from tag_svc.processor.schedule import INTERVAL_SECONDS as SCHEDULE_INTERVAL_SECONDS
from tag_svc.tags.inbound import apply_events
from tag_svc.tags.jobs import run_tag_jobs
from tag_svc.tags.pushes import run_wecom_pushes

# friend-deleted keeps the follow relations exact: a guide's scope, and whom to push tags as
# (mark_tag needs a staff member the customer is still a friend of). segment-changed drives the tag
# rules (keyed by contact like contact-erased, so a contact's entries, exits and erasure arrive in
# order).
TOPICS = (
    "friend-added",
    "friend-deleted",
    "message-sent",
    "order-placed",
    "contact-updated",
    "contact-erased",
    "segment-changed",
)
# The live segment processor runs its own consume loop (group tag-svc-segments) as a background
# task, beside the backfill runner; the schedule of time-driven changes is a faust timer.
BACKGROUND = (run_tag_jobs, run_wecom_pushes, run_segment_processor, run_segment_backfills)


def build_faust(deps: WorkerDeps) -> faust.App:
    """The worker's faust app: hosts the timer that applies time-driven segment transitions."""
    app = create_faust_app(deps.service, deps.settings)
    settings = deps.settings if isinstance(deps.settings, TagSettings) else TagSettings()
    scheduler = SegmentScheduler(deps.pool, pending_ttl=timedelta(days=settings.tag_pending_order_ttl_days))
    add_timer(app, SCHEDULE_INTERVAL_SECONDS, scheduler.run_once, name="segment_schedule")
    return app


def build_handler(deps: WorkerDeps) -> Handler:
    """Wire the worker's batch handler (tests pass their own deps into the same builder)."""

    async def handle(batch: Sequence[Consumed]) -> None:
        async with deps.pool.acquire() as conn, conn.transaction():
            fresh = await claim_batch(conn, deps.service, batch)
            if not fresh:
                return
            await count_tally(conn, fresh)
            await apply_events(conn, [c.event for c in fresh])

    return handle
