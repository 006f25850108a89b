"""Time-driven transitions: a window passing, "no order for 30 days" becoming true, a contact's
second week starting, an RFM level turning, all without any new event.

Every evaluation stores the contact's next possible change (``segment_schedule.due_day``, from
:func:`tag_svc.segments.next_change`, exact). This task wakes every ``interval`` seconds (15 by
default, so a change at tenant midnight is applied within the minute), takes the contacts whose
day has come in their tenant's timezone, re-evaluates every segment for them (cause ``time``,
``at`` = that midnight) and stores their next day. It never scans contacts that are not due.

The same timer keeps the identity queue bounded: once an hour it drops pending orders and
refunds whose identity has not linked to any contact within ``pending_ttl`` (180 days by
default, ``SCRM_TAG_PENDING_ORDER_TTL_DAYS``).

Several workers may run it: each locks the due contacts' profile rows with ``SKIP LOCKED`` and
re-checks that they are still due once locked, so a contact is re-evaluated by one of them (or
by the processor, which reschedules it) and its transition is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import Counter

from scrm_shared.service.worker import BackgroundTask, WorkerDeps
from tag_svc.processor.evaluate import Touch, observe_time_delays, reevaluate
from tag_svc.processor.model import Cause, Clock, start_of_day, utc_now
from tag_svc.processor.store import catalog
from tag_svc.processor.store import identity as identity_store
from tag_svc.processor.store import members as member_store
from tag_svc.processor.store import profiles as profile_store
from tag_svc.processor.tenants import SegmentCache, load_view, timezones
from tag_svc.segments import day_in

__all__ = ["SegmentScheduler", "run_segment_schedule", "segment_schedule_task"]

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 15.0
BATCH_SIZE = 500
PENDING_TTL = timedelta(days=180)
PURGE_EVERY_SECONDS = 3600.0

PENDING_PURGED = Counter(
    "scrm_segment_pending_purged",
    "Pending orders and refunds dropped because their identity never linked within the TTL.",
    ["kind"],
)


class SegmentScheduler:
    """Applies the time-driven transitions that are due (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        interval: float = INTERVAL_SECONDS,
        batch_size: int = BATCH_SIZE,
        pending_ttl: timedelta = PENDING_TTL,
        purge_every: float = PURGE_EVERY_SECONDS,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.interval = interval
        self.batch_size = batch_size
        self.pending_ttl = pending_ttl
        self.purge_every = purge_every
        self.cache = SegmentCache()
        self._purged_at: float | None = None

    async def run_once(self) -> int:
        """Re-evaluate every contact due now (and purge expired pending orders when their hour
        has come); returns how many contacts were re-evaluated."""
        await self.purge_if_due()
        tenants = await catalog.tenants_with_segments(self.pool)
        zones = await timezones(self.pool, tenants)
        done = 0
        for tenant_id in tenants:
            done += await self._tenant(tenant_id, zones[tenant_id])
        return done

    async def purge_if_due(self) -> tuple[int, int] | None:
        """Drop expired pending orders and refunds, at most once per ``purge_every`` seconds;
        returns (orders, refunds) dropped, or ``None`` when it was not time yet."""
        started = time.monotonic()
        if self._purged_at is not None and started - self._purged_at < self.purge_every:
            return None
        self._purged_at = started
        orders, refunds = await identity_store.purge_pending(self.pool, self.pending_ttl)
        PENDING_PURGED.labels("order").inc(orders)
        PENDING_PURGED.labels("refund").inc(refunds)
        if orders or refunds:
            log.info("expired pending orders dropped", extra={"orders": orders, "refunds": refunds})
        return orders, refunds

    async def _tenant(self, tenant_id: str, tz: ZoneInfo) -> int:
        done = 0
        while True:
            now = self.clock()
            today = day_in(now, tz)
            due = await member_store.due_contacts(self.pool, tenant_id, today, self.batch_size)
            if not due:
                return done
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await profile_store.lock_skip_locked(conn, tenant_id, due)
                locked = {r["external_userid"]: r for r in rows}
                still = await member_store.still_due(conn, tenant_id, locked, today) if locked else {}
                if still:
                    view = await load_view(conn, self.cache, tenant_id, tz, now)
                    cause = Cause("time", start_of_day(today, tz))
                    await reevaluate(
                        conn,
                        view,
                        {e: profile_store.profile_of(tenant_id, locked[e]) for e in still},
                        {e: Touch(None, cause) for e in still},
                    )
                    # Erased contacts are in no segment and due for nothing.
                    await member_store.unschedule(
                        conn, tenant_id, [e for e in still if locked[e]["status"] == "erased"]
                    )
            if not still:
                # What is left is being re-evaluated by someone else right now.
                return done
            observe_time_delays(still.values(), tz, self.clock())
            done += len(still)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply due transitions every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                done = await self.run_once()
                if done:
                    log.info("time-driven re-evaluations", extra={"contacts": done})
            except Exception as exc:  # an outage: try again next round
                log.warning(
                    "segment schedule failed", extra={"error_type": type(exc).__name__}, exc_info=True
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


def segment_schedule_task(
    *, clock: Clock = utc_now, interval: float = INTERVAL_SECONDS, batch_size: int = BATCH_SIZE
) -> BackgroundTask:
    """The schedule as a worker background task (tests pass their clock and a short interval)."""

    async def run(deps: WorkerDeps, stop: asyncio.Event) -> None:
        await SegmentScheduler(deps.pool, clock=clock, interval=interval, batch_size=batch_size).run(stop)

    return run


run_segment_schedule: BackgroundTask = segment_schedule_task()
"""The schedule with the wall clock, every 15 s."""
