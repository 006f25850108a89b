"""Backfill: a new segment (or one whose rule changed) is computed over the existing profiles.

Chunks of ``chunk_size`` profiles in ``external_userid`` order, one transaction each: lock the
chunk's profile rows, evaluate the segment for them, write the transitions (cause ``backfill``
for a new segment, ``rule-edited`` for an edit), fold its next change into their schedule, and
move the segment's cursor and ``processed`` count. The last chunk makes the segment ``live``.

Resumable: the cursor commits with the chunk, so a restart continues where it stopped.
Concurrency: an advisory lock per segment keeps a second worker off it; a chunk commits only
under the rule version it was computed with (an edit meanwhile rolls it back and restarts the
backfill); events touching contacts mid-backfill are evaluated by the processor at once, and
the chunk that later reaches them finds no transition left to make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from scrm_shared.db.pool import advisory_key
from scrm_shared.service.worker import BackgroundTask, WorkerDeps
from tag_svc.processor.evaluate import Touch, reevaluate
from tag_svc.processor.model import Cause, Clock, utc_now
from tag_svc.processor.store import catalog
from tag_svc.processor.store import profiles as profile_store
from tag_svc.processor.tenants import SegmentCache, load_view, timezones

__all__ = ["SegmentBackfiller", "run_segment_backfills", "segment_backfill_task"]

log = logging.getLogger(__name__)

BACKFILLED = Counter(
    "scrm_segment_backfill_contacts",
    "Contacts a backfill (a new segment, or an edited rule) has evaluated, in committed chunks.",
)
SEGMENTS_LIVE = Counter(
    "scrm_segment_backfills_finished", "Backfills that finished: their segment went live."
)

CHUNK_SIZE = 1000
POLL_SECONDS = 1.0
TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
CURRENT_SCHEMA = "SELECT current_schema()"


class _Superseded(Exception):
    """The segment's rule changed (or it was deleted) while a chunk was computed."""


class SegmentBackfiller:
    """Runs the backfills of all tenants' backfilling segments (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        chunk_size: int = CHUNK_SIZE,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.chunk_size = chunk_size
        self.poll = poll
        self.cache = SegmentCache()
        self._schema: str | None = None

    async def run_once(self) -> int:
        """Take every backfilling segment to live (or as far as others let us); returns the
        number of chunks done."""
        chunks = 0
        for tenant_id, segment_id in await catalog.backfilling(self.pool, limit=100):
            while True:
                try:
                    more = await self.chunk(tenant_id, segment_id)
                except _Superseded:
                    log.info("backfill chunk superseded by an edit", extra={"segment_id": str(segment_id)})
                    continue
                if more is None:
                    break
                chunks += 1
                if not more:
                    break
        return chunks

    async def chunk(self, tenant_id: str, segment_id: UUID) -> bool | None:
        """One chunk: ``True`` if more remain, ``False`` if the segment went live, ``None`` if
        there was nothing to do (not backfilling any more, or another worker holds it)."""
        more, contacts = await self._chunk(tenant_id, segment_id)
        # Committed (the transaction is closed): the chunk's contacts count as done.
        BACKFILLED.inc(contacts)
        if more is False:
            SEGMENTS_LIVE.inc()
        return more

    async def _chunk(self, tenant_id: str, segment_id: UUID) -> tuple[bool | None, int]:
        schema = await self._current_schema()
        zones = await timezones(self.pool, [tenant_id])
        async with self.pool.acquire() as conn, conn.transaction():
            key = advisory_key(f"segment-backfill:{tenant_id}:{segment_id}", schema)
            if not await conn.fetchval(TRY_LOCK, key):
                return None, 0
            state = await catalog.backfill_state(conn, tenant_id, segment_id)
            if state is None:
                return None, 0
            version, cursor = state["rule_version"], state["backfill_cursor"] or ""
            rows = await profile_store.lock_chunk(conn, tenant_id, cursor, self.chunk_size)
            now = self.clock()
            view = await load_view(conn, self.cache, tenant_id, zones[tenant_id], now, only=segment_id)
            current = [s for s in view.segments if s.version == version]
            if not current:
                raise _Superseded
            if rows:
                cause = Cause(state["backfill_cause"], now)
                profiles = {r["external_userid"]: profile_store.profile_of(tenant_id, r) for r in rows}
                await reevaluate(
                    conn, view, profiles, {e: Touch(None, cause) for e in profiles}, segments=current
                )
                moved = await catalog.record_backfill_chunk(
                    conn, tenant_id, segment_id, version, rows[-1]["external_userid"], len(rows)
                )
                if not moved:
                    raise _Superseded
            if len(rows) < self.chunk_size:
                if not await catalog.finish_backfill(conn, tenant_id, segment_id, version):
                    raise _Superseded
                return False, len(rows)
            return True, len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Backfill whatever is backfilling, polling every ``poll`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # an outage: try again next round
                log.warning(
                    "segment backfill failed", extra={"error_type": type(exc).__name__}, exc_info=True
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll)

    async def _current_schema(self) -> str:
        if self._schema is None:
            self._schema = str(await self.pool.fetchval(CURRENT_SCHEMA))
        return self._schema


def segment_backfill_task(
    *, clock: Clock = utc_now, chunk_size: int = CHUNK_SIZE, poll: float = POLL_SECONDS
) -> BackgroundTask:
    """The backfill runner as a worker background task."""

    async def run(deps: WorkerDeps, stop: asyncio.Event) -> None:
        await SegmentBackfiller(deps.pool, clock=clock, chunk_size=chunk_size, poll=poll).run(stop)

    return run


run_segment_backfills: BackgroundTask = segment_backfill_task()
"""The backfill runner with the wall clock."""
