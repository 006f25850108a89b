"""Re-evaluate locked contacts and write what changed: memberships, sizes, the schedule, and a
``segment-changed`` event for every transition (through the outbox, in the caller's transaction).

Shared by the three writers of memberships: the batch handler (cause ``event``), the schedule
(``time``) and the backfill (``backfill`` / ``rule-edited``). Each has locked the contacts'
profile rows first, so the stored memberships read here are the ones the transitions are
computed against, and a transition is written exactly once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Histogram

from scrm_shared.db.outbox import enqueue_events
from scrm_shared.kafka.consumer import Consumed
from tag_svc.processor.encode import segment_changed_events
from tag_svc.processor.fact_cache import BatchFacts
from tag_svc.processor.model import (
    Cause,
    Input,
    LiveSegment,
    TenantView,
    Transition,
    assess,
    diff,
    size_deltas,
    start_of_day,
)
from tag_svc.processor.store import Conn
from tag_svc.processor.store import members as store
from tag_svc.processor.store import profiles as profile_store
from tag_svc.segments import Profile

__all__ = [
    "APPLY_DELAY",
    "SOURCE",
    "TOPIC",
    "Touch",
    "observe_event_delays",
    "observe_time_delays",
    "publish",
    "reevaluate",
]

TOPIC = "segment-changed"
SOURCE = "tag-svc"

TRANSITIONS = Counter(
    "scrm_segment_transitions", "Segment memberships entered or exited, by cause.", ["change", "cause"]
)
EVALUATIONS = Counter("scrm_segment_evaluations", "Rule evaluations of one contact for one segment.")
EVALUATE_SECONDS = Histogram(
    "scrm_segment_evaluate_seconds",
    "Time to evaluate one batch of contacts in Python (rules only, no I/O).",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
APPLY_DELAY = Histogram(
    "scrm_segment_apply_delay_seconds",
    "Seconds from the moment a contact's memberships had to be re-evaluated until the "
    "re-evaluation committed: by cause, event (from the event's Kafka timestamp; the promise: "
    "within a second) or time (from the tenant-local midnight its next change was due; the "
    "promise: within a minute).",
    ["cause"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 86400.0),
)


def observe_event_delays(items: Sequence[Consumed], committed_at: float) -> None:
    """How long after reaching Kafka each event's effects committed (wall clock, as the
    records' timestamps; a redelivered event counts until the commit that confirmed it)."""
    delays = APPLY_DELAY.labels("event")
    for item in items:
        if item.timestamp_ms is not None:
            delays.observe(max(committed_at - item.timestamp_ms / 1000, 0.0))


def observe_time_delays(due_days: Iterable[date], tz: ZoneInfo, committed_at: datetime) -> None:
    """How long after the midnight (in ``tz``) each contact's next change was due its
    re-evaluation committed: within the schedule's interval, unless it fell behind."""
    delays = APPLY_DELAY.labels("time")
    for day in due_days:
        delays.observe(max((committed_at - start_of_day(day, tz)).total_seconds(), 0.0))


@dataclass(frozen=True, slots=True)
class Touch:
    """A contact to re-evaluate: what changed (``None``: anything may have) and why."""

    changed: frozenset[Input] | None
    cause: Cause


async def reevaluate(
    conn: Conn,
    view: TenantView,
    profiles: Mapping[str, Profile],
    touches: Mapping[str, Touch],
    *,
    segments: Sequence[LiveSegment] | None = None,
    facts: BatchFacts | None = None,
) -> list[Transition]:
    """Evaluate, for each touched contact, the segments its change can affect, and write the
    transitions; reschedule the contact's next time-driven change.

    ``profiles`` hold the contacts' current attributes (locked rows, with this batch's changes)
    without facts: the facts the rules need are loaded here. ``segments`` narrows the segments
    considered (the backfill evaluates one); by default all of the view's. ``facts``: where the
    batch reads its contacts' facts (the processor's cache); by default from the database.
    """
    considered = tuple(view.segments if segments is None else segments)
    complete = segments is None
    plan: dict[str, tuple[LiveSegment, ...]] = {}
    exact: dict[str, date | None] = {}
    earlier: dict[str, date] = {}
    for euid, touch in touches.items():
        profile = profiles.get(euid)
        if profile is None or profile.status == "erased":
            continue
        chosen = (
            considered
            if touch.changed is None
            else tuple(s for s in considered if not s.inputs.reads.isdisjoint(touch.changed))
        )
        if chosen:
            plan[euid] = chosen
        elif complete and touch.changed is None:
            exact[euid] = None  # no segment at all: nothing is due
    if not plan:
        await store.schedule_exact(conn, view.tenant_id, exact)
        return []
    planned = {s.segment_id: s for chosen in plan.values() for s in chosen}.values()
    fact_types = {t for s in planned for t in s.inputs.fact_types}
    with_facts = [e for e, chosen in plan.items() if any(s.inputs.fact_types for s in chosen)]
    lines = any(s.inputs.lines for s in planned)
    loaded = (
        await profile_store.load_facts(conn, view.tenant_id, with_facts, fact_types, lines=lines)
        if facts is None
        else await facts.load(conn, with_facts, fact_types, lines=lines)
    )
    stored = await store.memberships(conn, view.tenant_id, plan)

    started = time.perf_counter()
    transitions: list[Transition] = []
    for euid, chosen in plan.items():
        profile = replace(profiles[euid], facts=tuple(loaded.get(euid, ())))
        result = assess(profile, chosen, view.today, view.rfm)
        transitions += diff(
            euid, (s.segment_id for s in chosen), result.members, stored.get(euid, set()), touches[euid].cause
        )
        if complete and len(chosen) == len(view.segments):
            exact[euid] = result.due
        elif result.due is not None:
            earlier[euid] = result.due
    EVALUATE_SECONDS.observe(time.perf_counter() - started)
    EVALUATIONS.inc(sum(len(chosen) for chosen in plan.values()))

    await store.schedule_exact(conn, view.tenant_id, exact)
    await store.schedule_earlier(conn, view.tenant_id, earlier)
    await store.lock_segments(conn, view.tenant_id, {t.segment_id for t in transitions})
    await store.add_members(
        conn,
        view.tenant_id,
        [(t.segment_id, t.external_userid, t.cause.at) for t in transitions if t.change == "entered"],
    )
    await store.remove_members(
        conn, view.tenant_id, [(t.segment_id, t.external_userid) for t in transitions if t.change == "exited"]
    )
    await publish(conn, view, transitions)
    return transitions


async def publish(conn: Conn, view: TenantView, transitions: Sequence[Transition]) -> None:
    """Enqueue the events of ``transitions`` and count them into the segments' sizes and history
    (memberships already written). The sizes come last: from their update to the commit, other
    writers of these segments wait (see :mod:`.store.members`)."""
    if not transitions:
        return
    events = segment_changed_events(view.tenant_id, SOURCE, transitions)
    await enqueue_events(conn, TOPIC, events)
    await store.apply_sizes(conn, view.tenant_id, view.today, size_deltas(transitions))
    for (change, kind), count in collections.Counter((t.change, t.cause.kind) for t in transitions).items():
        TRANSITIONS.labels(change, kind).inc(count)
