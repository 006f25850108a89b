"""The pure core of the live processor: which segments a change can affect, and transitions.

A contact's membership of a segment only needs recomputing when something the segment's rule
reads has changed (or when time moves a window, which the schedule handles). :func:`rule_inputs`
says what a rule reads, so a batch of orders re-evaluates the order segments of the contacts it
touched and leaves their tag segments alone; :func:`assess` runs the engine
(:func:`tag_svc.segments.evaluate` / :func:`~tag_svc.segments.next_change`) over one profile for
the segments that need it, and :func:`diff` turns the answers into transitions against what is
stored.

No I/O here: the handler, the schedule and the backfill feed it rows and write what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from tag_svc.segments import Fact, Profile, RfmThresholds, Rule
from tag_svc.segments.evaluator import CompiledRule, assess_rules, compile_rule
from tag_svc.segments.rules import (
    AttrCondition,
    EventCondition,
    FirstAddedCondition,
    NoEventCondition,
    RfmCondition,
    TagCondition,
    conditions,
)

__all__ = [
    "Assessment",
    "Cause",
    "CauseKind",
    "Clock",
    "ContactFact",
    "ContactTagChange",
    "FollowChange",
    "Input",
    "LiveSegment",
    "RuleInputs",
    "TenantView",
    "Transition",
    "assess",
    "diff",
    "exits",
    "rule_inputs",
    "size_deltas",
    "start_of_day",
    "utc_now",
]

Clock = Callable[[], datetime]
"""Where "now" comes from: the wall clock in production, a settable one in tests."""

CauseKind = Literal["event", "time", "backfill", "rule-edited", "erased"]

Input = Literal["tags", "profile", "order-placed", "message-sent", "friend-added"]
"""What a rule can read: tags, attributes (state, store, staff, gender, status, first added),
or the facts of one event type (refunds belong to order-placed)."""


def utc_now() -> datetime:
    """The wall clock (aware, UTC)."""
    return datetime.now(UTC)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """Midnight starting ``day`` in ``tz``: the moment a time-driven change happens."""
    return datetime.combine(day, time(0), tzinfo=tz)


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """What evaluating a rule needs.

    - ``reads``: the inputs whose change can change the answer;
    - ``fact_types``: the fact types to hand the engine (others cannot matter);
    - ``lines``: whether item lines matter (a category/sku filter);
    - ``horizon``: facts older than this many days before today cannot change the answer today or
      later (the farthest window edge); ``None`` when every fact may (RFM looks at all);
    - ``timed``: whether the answer can change with no new event (a window, days since, RFM);
    - ``rfm``: whether it has an ``rfm`` condition (the engine then needs the tenant's thresholds).
    """

    reads: frozenset[Input]
    fact_types: frozenset[str]
    lines: bool
    horizon: int | None
    timed: bool
    rfm: bool


def rule_inputs(rule: Rule) -> RuleInputs:
    """Walk ``rule``'s conditions and collect what it reads."""
    reads: set[Input] = set()
    fact_types: set[str] = set()
    lines = False
    horizon: int | None = 0
    rfm = False
    for cond in conditions(rule):
        if isinstance(cond, TagCondition):
            reads.add("tags")
        elif isinstance(cond, AttrCondition | FirstAddedCondition):
            reads.add("profile")
        elif isinstance(cond, EventCondition | NoEventCondition):
            ev = cond if isinstance(cond, EventCondition) else cond.as_count()
            reads.add(ev.event)
            fact_types.add(ev.event)
            if ev.metric == "amount":
                fact_types.add("order-refunded")
            lines = lines or bool(ev.filters.lines())
            if horizon is not None:
                horizon = max(horizon, ev.window.farthest_ago)
        elif isinstance(cond, RfmCondition):
            reads.add("order-placed")
            fact_types.update(("order-placed", "order-refunded"))
            rfm = True
    timed = rfm or bool(fact_types) or any(isinstance(c, FirstAddedCondition) for c in conditions(rule))
    return RuleInputs(frozenset(reads), frozenset(fact_types), lines, None if rfm else horizon, timed, rfm)


@dataclass(frozen=True, slots=True)
class LiveSegment:
    """A segment as the processor evaluates it."""

    segment_id: UUID
    rule: Rule
    version: int
    inputs: RuleInputs
    compiled: CompiledRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", compile_rule(self.rule))

    @property
    def uses_rfm(self) -> bool:
        return self.inputs.rfm


@dataclass(frozen=True, slots=True)
class TenantView:
    """One tenant as a batch sees it: its timezone, today there, its segments and thresholds."""

    tenant_id: str
    tz: ZoneInfo
    today: date
    segments: tuple[LiveSegment, ...]
    rfm: RfmThresholds | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a contact's memberships are being recomputed, and when that counts as happening."""

    kind: CauseKind
    at: datetime
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """A contact entered or left a segment (the only thing that publishes segment-changed)."""

    segment_id: UUID
    external_userid: str
    change: Literal["entered", "exited"]
    cause: Cause


@dataclass(frozen=True, slots=True)
class FollowChange:
    """The latest add and deletion of one follow seen in a batch."""

    external_userid: str
    staff_id: str
    added_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactTagChange:
    """The latest add or removal of one tag of a contact seen in a batch."""

    external_userid: str
    tag_id: str
    tag_name: str
    present: bool
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class ContactFact:
    """A fact that found its contact, and the event that makes it count now."""

    external_userid: str
    fact: Fact
    cause: Cause


@dataclass(slots=True)
class Assessment:
    """The answers for one contact: the evaluated segments it is in, and its next change day."""

    members: set[UUID] = field(default_factory=set)
    due: date | None = None


def assess(
    profile: Profile,
    segments: Iterable[LiveSegment],
    today: date,
    rfm: RfmThresholds | None,
) -> Assessment:
    """Evaluate ``segments`` for ``profile`` on ``today`` and find the earliest next change
    (:func:`tag_svc.segments.assess_rules`: the contact's facts prepared once for all of them).
    An erased contact is in no segment."""
    out = Assessment()
    if profile.status == "erased":
        return out
    chosen = tuple(segments)
    values, out.due = assess_rules(
        profile,
        [s.compiled for s in chosen],
        today,
        rfm=rfm if any(s.uses_rfm for s in chosen) else None,
    )
    out.members = {s.segment_id for s, inside in zip(chosen, values, strict=True) if inside}
    return out


def diff(
    external_userid: str,
    evaluated: Iterable[UUID],
    now_in: Collection[UUID],
    stored: Collection[UUID],
    cause: Cause,
) -> list[Transition]:
    """Transitions of one contact: for each evaluated segment, whether its answer differs from
    the stored membership (``stored``: the segments it is in according to the table)."""
    out: list[Transition] = []
    for segment_id in evaluated:
        inside, was = segment_id in now_in, segment_id in stored
        if inside != was:
            out.append(Transition(segment_id, external_userid, "entered" if inside else "exited", cause))
    return out


def exits(external_userid: str, stored: Iterable[UUID], cause: Cause) -> list[Transition]:
    """Every stored membership of a contact ends (erasure)."""
    return [Transition(s, external_userid, "exited", cause) for s in sorted(stored)]


def size_deltas(transitions: Iterable[Transition]) -> Mapping[UUID, tuple[int, int]]:
    """Per segment: (entered, exited) counts of ``transitions``."""
    out: dict[UUID, tuple[int, int]] = {}
    for t in transitions:
        entered, exited = out.get(t.segment_id, (0, 0))
        out[t.segment_id] = (entered + 1, exited) if t.change == "entered" else (entered, exited + 1)
    return out
