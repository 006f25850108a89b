"""A renamed tag reaching the segments: the name sync runner (run by the tag job runner's task).

Segment rules read tags by name, and the processor keeps each contact's tag names
(``segment_contact_tags.tag_name``, ``profiles.tags``) as ``contact-tagged`` told them. A rename
(``PATCH /v1/tags/{id}``, or a WeCom rename pulled by the corp tag sync) queues a sync in its own
transaction, with the contacts carrying the tag then (:mod:`tag_svc.tags.edits`). The runner
works through it one chunk per transaction, the way the processor and the backfill work:

1. lock the chunk's profile rows in ``external_userid`` order (every writer of memberships locks
   profiles first and in that order, then segment rows, then members: so it never deadlocks with
   the processor, the schedule or the backfill);
2. give the tag's ``segment_contact_tags`` rows of those contacts the tag's current name, and
   recompute their ``profiles.tags`` from all their rows (a tag of the same name in another group
   keeps the name);
3. re-evaluate, for those contacts, the segments whose rule reads the old or the new name, and
   write the transitions and their ``segment-changed`` events (cause ``rule-edited``: the contacts
   did nothing, what the rules' names match changed);
4. advance the sync's progress (a crash repeats at most the chunk in flight, which rolled back).

Why a job and not the rename's transaction: a tag on 100,000 contacts would hold 100,000 profile
locks (stalling the processor for those contacts) and evaluate them all inside one HTTP request.

``contact-tagged`` events already on their way when the tag was renamed carry the old name: the
trigger of migration 0009 gives their ``segment_contact_tags`` rows the tag's current name.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import ClassVar, Unpack

import asyncpg
from prometheus_client import Counter

from tag_svc.processor.evaluate import Touch, reevaluate
from tag_svc.processor.model import Cause, Clock, TenantView, utc_now
from tag_svc.processor.store import catalog as segment_catalog
from tag_svc.processor.store.profiles import profile_of
from tag_svc.processor.tenants import SegmentCache, ensure_rfm, timezones
from tag_svc.segments import Profile, day_in
from tag_svc.tags.chunked import ChunkedRunner, ChunkOptions
from tag_svc.tags.domain import job_status, next_chunk
from tag_svc.tags.rules.model import tag_reads
from tag_svc.tags.store import Conn
from tag_svc.tags.store import jobs as items
from tag_svc.tags.store import name_syncs as store

__all__ = ["NameSyncRunner"]

log = logging.getLogger(__name__)

TAGS_CHANGED = frozenset({"tags"})

SYNC_CHUNKS = Counter(
    "scrm_tag_name_sync_chunks",
    "Chunks of renamed tags' contacts re-evaluated for segments, by outcome (applied, failed, sync-failed).",
    ["outcome"],
)


class NameSyncRunner(ChunkedRunner[store.NameSyncRow]):
    """Works through pending name syncs of every tenant, one chunk per call."""

    chunks: ClassVar[Counter] = SYNC_CHUNKS
    given_up: ClassVar[str] = "sync-failed"
    logger: ClassVar[logging.Logger] = log
    failure_message: ClassVar[str] = "tag name sync chunk failed"

    def __init__(
        self, pool: asyncpg.Pool, *, clock: Clock = utc_now, **options: Unpack[ChunkOptions]
    ) -> None:
        super().__init__(pool, **options)
        self.clock = clock
        self.cache = SegmentCache()

    async def _claim(self, conn: Conn) -> store.NameSyncRow | None:
        return await store.claim_sync(conn)

    async def _chunk(self, conn: Conn, sync: store.NameSyncRow) -> str:
        limit = next_chunk(sync.total, sync.processed, self.chunk_size)
        euids = (
            await items.take_items(conn, sync.tenant_id, sync.sync_id, processed=sync.processed, limit=limit)
            if limit
            else []
        )
        if euids:
            await self._apply(conn, sync, euids)
        processed = sync.processed + len(euids)
        # Fewer items than the counters promise can only mean they are gone: the sync is over.
        status = job_status(sync.total, processed) if euids else "done"
        await store.advance_sync(conn, sync.tenant_id, sync.sync_id, processed=len(euids), status=status)
        return "applied"

    async def _apply(self, conn: Conn, sync: store.NameSyncRow, euids: list[str]) -> None:
        tenant_id = sync.tenant_id
        rows = await store.lock_profiles(conn, tenant_id, euids)
        if not rows:
            return
        locked = [r["external_userid"] for r in rows]
        await store.rename_contact_tags(conn, tenant_id, sync.tag_id, locked)
        names = await store.tag_names(conn, tenant_id, locked)
        profiles: dict[str, Profile] = {}
        changed: dict[str, frozenset[str]] = {}
        for row in rows:
            profile = profile_of(tenant_id, row)
            tags = names.get(profile.external_userid, frozenset())
            if tags != profile.tags:
                changed[profile.external_userid] = tags
                profile = replace(profile, tags=tags)
            profiles[profile.external_userid] = profile
        await store.write_tags(conn, tenant_id, changed)
        now = self.clock()
        view = await self._view(conn, tenant_id, now, frozenset((sync.old_name, sync.new_name)))
        if not view.segments:
            return
        # Every locked contact, not only those whose names changed here: one the processor
        # already gave the new name was evaluated then, and evaluating it again changes nothing.
        cause = Cause("rule-edited", now)
        await reevaluate(
            conn, view, profiles, {e: Touch(TAGS_CHANGED, cause) for e in profiles}, segments=view.segments
        )

    async def _view(self, conn: Conn, tenant_id: str, now: datetime, names: frozenset[str]) -> TenantView:
        """The tenant as the processor sees it, with only the segments reading one of ``names``
        (read after the profiles are locked, so an edit committed before is seen)."""
        tz = (await timezones(conn, [tenant_id]))[tenant_id]
        rows = sorted(await segment_catalog.live_segments(conn, tenant_id), key=lambda r: r["segment_id"])
        parsed = (self.cache.get(tenant_id, r["segment_id"], r["rule_version"], r["rule"]) for r in rows)
        segments = tuple(s for s in parsed if not tag_reads(s.rule).isdisjoint(names))
        today = day_in(now, tz)
        rfm = await ensure_rfm(conn, tenant_id, today) if any(s.uses_rfm for s in segments) else None
        return TenantView(tenant_id, tz, today, segments, rfm)

    async def _record_failure(self, sync: store.NameSyncRow, error: str) -> int:
        return await store.record_failure(
            self.pool, sync.tenant_id, sync.sync_id, wait=self.retry_wait, error=error
        )

    async def _give_up(self, conn: Conn, sync: store.NameSyncRow, error: str) -> None:
        await store.fail_sync(conn, sync.tenant_id, sync.sync_id, error)
