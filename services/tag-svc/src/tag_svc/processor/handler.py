"""The live membership processor: one batch of events, one transaction.

For each batch the shared consume loop hands over (:class:`scrm_shared.kafka.consumer.BatchConsumer`,
its own consumer group, offsets committed after this returns):

1. claim the event_ids (a redelivered event is dropped here, so nothing below runs twice for it);
2. per tenant: record identity links, map orders and refunds to contacts (pending ones kept,
   retroactively applied ones taken: :mod:`.identity`);
3. create and lock the touched contacts' profile rows (key order);
4. erase the contacts a ``contact-erased`` names: personal data gone, every membership exits
   with cause ``erased``; events of erased contacts are dropped from then on;
5. write new attributes (follows, first add, gender, tags) and the new facts;
6. re-evaluate, for the touched contacts only, the segments their changes can affect, write the
   transitions and their ``segment-changed`` events, and reschedule their next time-driven change.

Everything happens in the one transaction with the claimed ids: a crash anywhere rolls all of it
back and the batch is redelivered; a redelivery after the commit claims nothing. Hence no double
count and no lost or repeated transition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from scrm_shared.db.inbox import claim_batch
from scrm_shared.events import (
    ContactIdentifiedEvent,
    Event,
    OrderPlacedEvent,
    OrderRefundedEvent,
)
from scrm_shared.kafka.consumer import BatchConsumer, Consumed, Handler
from scrm_shared.service.worker import BackgroundTask, WorkerDeps
from tag_svc.config import TagSettings
from tag_svc.processor import identity
from tag_svc.processor.changes import BatchChanges, apply_attributes, collect
from tag_svc.processor.evaluate import Touch, observe_event_delays, publish, reevaluate
from tag_svc.processor.fact_cache import BatchFacts, FactCache
from tag_svc.processor.model import Cause, Clock, TenantView, exits, utc_now
from tag_svc.processor.store import Conn
from tag_svc.processor.store import members as member_store
from tag_svc.processor.store import profiles as profile_store
from tag_svc.processor.tenants import SegmentCache, load_view, timezones
from tag_svc.segments import Fact, Profile

__all__ = [
    "CONSUMER",
    "GROUP_ID",
    "TOPICS",
    "build_segment_handler",
    "run_segment_processor",
    "segment_processor_task",
]

log = logging.getLogger(__name__)

TOPICS = (
    "friend-added",
    "friend-deleted",
    "order-placed",
    "order-refunded",
    "message-sent",
    "contact-tagged",
    "contact-identified",
    "contact-erased",
)
CONSUMER = "tag-svc:segments"
"""The processed_events consumer name: its claims are independent of the tag handler's."""
GROUP_ID = "tag-svc-segments"
"""Its own consumer group: the segment processor keeps its pace whatever the tag handler does."""

_RETRIES = 3


def build_segment_handler(
    deps: WorkerDeps, *, clock: Clock = utc_now, lanes: int = 2, fact_cache_size: int = 200_000
) -> Handler:
    """The batch handler of the segment processor (``clock`` gives "now": tests move it).

    A batch is applied in up to ``lanes`` transactions side by side, each over the events of
    some contacts (:func:`split_lanes`): while one waits for PostgreSQL, the other computes.
    Each lane is a whole unit (claims and effects commit together); the batch's offsets are
    committed after every lane has. When one lane fails, the others still commit, and the
    redelivered batch claims only what did not.

    Contacts' facts stay in memory between batches (up to ``fact_cache_size`` facts, see
    :mod:`.fact_cache`): a contact's next order is evaluated without reading its history back.
    """
    if lanes < 1:
        raise ValueError("lanes must be at least 1")
    cache = SegmentCache()
    facts = FactCache(fact_cache_size)

    async def apply_lane(items: Sequence[Consumed]) -> None:
        for attempt in range(1, _RETRIES + 1):
            try:
                async with deps.pool.acquire() as conn, conn.transaction():
                    reads = await apply_batch(conn, cache, items, clock, facts=facts)
                # Committed: what the batch read and wrote of its contacts' facts is the truth now.
                for read in reads:
                    read.commit()
                observe_event_delays(items, time.time())
                return
            except asyncpg.ForeignKeyViolationError:
                # A segment was deleted while this batch evaluated it; its membership rows cannot
                # be written any more. Evaluating again no longer sees it.
                if attempt == _RETRIES:
                    raise
                log.info("segment deleted during a batch, applying the batch again")
            except asyncpg.DeadlockDetectedError:
                # Two lanes (or two workers) met on one contact's rows in different orders (an
                # identity link and an order of the same customer, say): PostgreSQL aborted one.
                if attempt == _RETRIES:
                    raise
                log.info("deadlock between segment writers, applying the lane again")

    async def handle(batch: Sequence[Consumed]) -> None:
        parts = split_lanes(batch, lanes)
        if len(parts) <= 1:
            await apply_lane(batch)
            return
        results = await asyncio.gather(*(apply_lane(p) for p in parts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    return handle


def split_lanes(batch: Sequence[Consumed], lanes: int) -> list[list[Consumed]]:
    """``batch`` in up to ``lanes`` parts by contact, each in the batch's order.

    Lanes must not share contacts: two lanes touching one contact would lock its profile row in
    both, and the second would wait for the first to commit. Partitions do not separate contacts
    (orders are keyed by order id), so the lane is chosen by the contact the event names: its
    ``external_userid``, or for an order its customer's first identity (an order whose customer
    resolves, through another identity, to a contact of the other lane only costs a wait).
    """
    if lanes == 1:
        return [list(batch)]
    parts: list[list[Consumed]] = [[] for _ in range(lanes)]
    for item in batch:
        parts[zlib.crc32(_lane_key(item.event)) % lanes].append(item)
    return [p for p in parts if p]


def _lane_key(event: Event) -> bytes:
    data = event.data
    if isinstance(event, OrderPlacedEvent):
        c = data.customer
        who = c.external_userid or c.unionid or c.member_id or c.phone_hash
    else:
        who = getattr(data, "external_userid", None)
    return f"{event.tenant_id}:{who}".encode() if who else event.key()


async def apply_batch(
    conn: Conn,
    cache: SegmentCache,
    batch: Sequence[Consumed],
    clock: Clock,
    *,
    facts: FactCache | None = None,
) -> list[BatchFacts]:
    """Apply one batch inside the caller's transaction; returns the fact reads to
    :meth:`~BatchFacts.commit` into ``facts`` once the transaction has committed."""
    fresh = await claim_batch(conn, CONSUMER, batch)
    if not fresh:
        return []
    by_tenant: dict[str, list[Event]] = defaultdict(list)
    for item in fresh:
        by_tenant[item.event.tenant_id].append(item.event)
    zones = await timezones(conn, by_tenant)
    now = clock()
    # Tenants in order, contacts in key order within each: every writer locks in that order.
    reads = []
    for tenant_id in sorted(by_tenant):
        read = await _apply_tenant(
            conn,
            cache,
            tenant_id,
            zones[tenant_id],
            now,
            by_tenant[tenant_id],
            facts if facts is not None else FactCache(0),
        )
        if read is not None:
            reads.append(read)
    return reads


async def _apply_tenant(
    conn: Conn,
    cache: SegmentCache,
    tenant_id: str,
    tz: ZoneInfo,
    now: datetime,
    events: list[Event],
    facts: FactCache,
) -> BatchFacts | None:
    orders = await identity.resolve_orders(
        conn,
        tenant_id,
        tz,
        [e for e in events if isinstance(e, OrderPlacedEvent)],
        [e for e in events if isinstance(e, ContactIdentifiedEvent)],
    )
    refunds = await identity.resolve_refunds(
        conn, tenant_id, [e for e in events if isinstance(e, OrderRefundedEvent)], orders
    )
    changes = collect(events, [*orders, *refunds], tz)
    if not changes.contacts:
        return None
    rows, created = await profile_store.ensure_and_lock(conn, tenant_id, changes.contacts)
    profiles = {r["external_userid"]: profile_store.profile_of(tenant_id, r) for r in rows}
    gone = {euid for euid, p in profiles.items() if p.status == "erased"}
    erasing = {
        euid: c.erased for euid, c in changes.contacts.items() if c.erased is not None and euid not in gone
    }
    # Erasure is forever: whatever else the batch says about these contacts is dropped.
    changes.drop(gone | set(erasing))
    facts.forget((tenant_id, euid) for euid in gone | set(erasing))
    view = await load_view(conn, cache, tenant_id, tz, now)
    if erasing:
        await _erase(conn, view, erasing)
    await _write_attributes(conn, tenant_id, tz, changes, profiles)
    recorded: dict[str, list[Fact]] = defaultdict(list)
    for euid, fact in await profile_store.insert_facts(
        conn, tenant_id, [(euid, f) for euid, c in changes.contacts.items() for f in c.facts]
    ):
        recorded[euid].append(fact)
    await profile_store.bump_facts_seq(conn, tenant_id, recorded)
    read = BatchFacts(
        facts,
        tenant_id,
        seqs={r["external_userid"]: r["facts_seq"] for r in rows},
        created=created,
        recorded=recorded,
        types={t for s in view.segments for t in s.inputs.fact_types},
        lines=any(s.inputs.lines for s in view.segments),
    )
    touches = {
        euid: Touch(frozenset(c.inputs), c.cause)
        for euid, c in changes.contacts.items()
        if c.inputs and c.cause is not None
    }
    await reevaluate(conn, view, profiles, touches, facts=read)
    return read


async def _erase(conn: Conn, view: TenantView, erasing: Mapping[str, Cause]) -> None:
    tenant_id = view.tenant_id
    await profile_store.erase(conn, tenant_id, erasing)
    await member_store.lock_segments(conn, tenant_id, [s.segment_id for s in view.segments])
    ended = await member_store.remove_all(conn, tenant_id, erasing)
    await member_store.unschedule(conn, tenant_id, erasing)
    by_contact: dict[str, set[UUID]] = defaultdict(set)
    for segment_id, euid in ended:
        by_contact[euid].add(segment_id)
    await publish(
        conn, view, [t for euid, s in sorted(by_contact.items()) for t in exits(euid, s, erasing[euid])]
    )


async def _write_attributes(
    conn: Conn, tenant_id: str, tz: ZoneInfo, changes: BatchChanges, profiles: dict[str, Profile]
) -> None:
    """Follows and tags rows first, then the profiles' attributes derived from them."""
    await profile_store.upsert_follows(conn, tenant_id, list(changes.follows.values()))
    await profile_store.upsert_contact_tags(conn, tenant_id, list(changes.tags.values()))
    followed = [euid for euid, c in changes.contacts.items() if c.follows_changed]
    tagged = [euid for euid, c in changes.contacts.items() if c.tags_changed]
    staff = await profile_store.followers(conn, tenant_id, followed) if followed else {}
    names = await profile_store.tag_names(conn, tenant_id, tagged) if tagged else {}
    updated: list[Profile] = []
    for euid, change in changes.contacts.items():
        before = profiles[euid]
        after = apply_attributes(
            before,
            change,
            tz,
            staff_ids=staff.get(euid, frozenset()) if change.follows_changed else None,
            tags=names.get(euid, frozenset()) if change.tags_changed else None,
        )
        if after != before:
            profiles[euid] = after
            updated.append(after)
    await profile_store.write_profiles(conn, updated)


def segment_processor_task(
    *,
    clock: Clock = utc_now,
    group_id: str = GROUP_ID,
    topics: Sequence[str] = TOPICS,
    topic_contracts: dict[str, str] | None = None,
    max_records: int = 2000,
) -> BackgroundTask:
    """A worker background task running the processor's own consume loop (tests name their
    topics and clock here; lanes and the fact cache come from the settings)."""

    async def run(deps: WorkerDeps, stop: asyncio.Event) -> None:
        settings = deps.settings if isinstance(deps.settings, TagSettings) else TagSettings()
        handler = build_segment_handler(
            deps,
            clock=clock,
            lanes=settings.tag_segment_lanes,
            fact_cache_size=settings.tag_segment_fact_cache_facts,
        )
        consumer = BatchConsumer(
            bootstrap=deps.settings.kafka_bootstrap,
            group_id=group_id,
            topics=topics,
            handler=handler,
            producer=deps.producer,
            service=deps.service,
            topic_contracts=topic_contracts,
            max_records=max_records,
        )
        await consumer.start()
        try:
            await consumer.run(stop)
        finally:
            await consumer.stop()

    return run


run_segment_processor: BackgroundTask = segment_processor_task()
"""The processor as a worker background task: its consumer group on :data:`TOPICS`."""
