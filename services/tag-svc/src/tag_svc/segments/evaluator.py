"""The in-memory engine: evaluate a rule over one contact's profile, and find when it next changes.

``evaluate(rule, profile, today)`` answers "is the contact in the segment today?";
``next_change(rule, profile, today)`` answers "on which future day does that answer first flip if
no new event arrives?" so the processor can schedule one re-evaluation instead of rescanning.

Both run the same machinery: the rule's leaves become *atoms*, each a piecewise-constant function
of the day (``value_at(day)``) that also lists the days on which it may step (``steps()``): a
window sliding over an event's day, a days-since threshold passing, an RFM level turning. The
answer on any day is the boolean tree over the atoms' values on that day. ``next_change`` walks
the atoms' steps in day order and returns the first day the tree's value differs from today's,
so the result is exact: the rule holds the same value on every day before it and a different
value on it (``None``: it never changes without a new event).

Pure: no I/O, no clock. "Today" is always an argument, the tenant-local date of ``day_in(now, tz)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol

from tag_svc.segments.profile import ZERO, DaySeries, Fact, FactLine, Profile
from tag_svc.segments.rfm import MissingRfmThresholds, RfmHistory, RfmThresholds
from tag_svc.segments.rules import (
    AllOf,
    AnyOf,
    AttrCondition,
    EventCondition,
    Filters,
    FirstAddedCondition,
    NoEventCondition,
    Not,
    RfmCondition,
    Rule,
    TagCondition,
)

__all__ = ["evaluate", "next_change", "uses_rfm"]


def evaluate(rule: Rule, profile: Profile, today: date, *, rfm: RfmThresholds | None = None) -> bool:
    """Whether ``profile`` matches ``rule`` on ``today`` (a day in the tenant's timezone).

    ``rfm``: the tenant's RFM thresholds, required when the rule has an ``rfm`` condition.
    """
    tree = _Compiler(profile, rfm).compile(rule)
    return tree.value(today)


def next_change(
    rule: Rule, profile: Profile, today: date, *, rfm: RfmThresholds | None = None
) -> date | None:
    """The first day after ``today`` on which ``evaluate`` gives another answer, absent new events.

    ``None`` when no such day exists (the rule depends on no time window, or every window has
    already passed every fact). Exact, not a hint: on every day strictly between ``today`` and
    the result, the rule's value equals today's.
    """
    tree = _Compiler(profile, rfm).compile(rule)
    values = [atom.value_at(today) for atom in tree.atoms]
    start = tree.combine(values)
    steps: dict[date, list[int]] = defaultdict(list)
    for index, atom in enumerate(tree.atoms):
        for day in atom.steps():
            if day > today:
                steps[day].append(index)
    for day in sorted(steps):
        for index in steps[day]:
            values[index] = tree.atoms[index].value_at(day)
        if tree.combine(values) != start:
            return day
    return None


def uses_rfm(rule: Rule) -> bool:
    """Whether evaluating ``rule`` needs the tenant's RFM thresholds."""
    if isinstance(rule, AllOf | AnyOf):
        return any(uses_rfm(r) for r in rule.rules)
    if isinstance(rule, Not):
        return uses_rfm(rule.rule)
    return isinstance(rule, RfmCondition)


# ---------------------------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------------------------


class _Atom(Protocol):
    def value_at(self, day: date) -> bool: ...

    def steps(self) -> Iterable[date]:
        """Every day on which ``value_at`` may differ from the day before (a superset)."""
        ...


@dataclass(frozen=True, slots=True)
class _Constant:
    """An attribute or tag condition: the same answer every day until an event changes it."""

    answer: bool

    def value_at(self, day: date) -> bool:
        return self.answer

    def steps(self) -> Iterable[date]:
        return ()


@dataclass(frozen=True, slots=True)
class _DaysSince:
    """A comparison on the whole days since the contact was first added."""

    condition: FirstAddedCondition
    first_day: date | None

    def value_at(self, day: date) -> bool:
        if self.first_day is None:
            return False
        return self.condition.days_since.holds((day - self.first_day).days)

    def steps(self) -> Iterable[date]:
        if self.first_day is None:
            return ()
        # days_since grows by one a day, so it can only cross a bound on the bound's day or
        # the day after (gt/lte flip one day later than gte/lt).
        out: list[date] = []
        for _, bound in self.condition.days_since.terms:
            out.append(self.first_day + timedelta(days=int(bound)))
            out.append(self.first_day + timedelta(days=int(bound) + 1))
        return out


class _Windowed:
    """count / amount / distinct_days of filtered facts over a sliding window of days."""

    __slots__ = ("condition", "series")

    def __init__(self, condition: EventCondition, facts: Iterable[Fact]) -> None:
        self.condition = condition
        self.series = _series(condition, facts)

    def value_at(self, day: date) -> bool:
        first, last = self.condition.window.bounds(day)
        return self.condition.comparison.holds(self.series.total(first, last))

    def steps(self) -> Iterable[date]:
        # Day f lies in the window on day d iff f + nearest <= d <= f + farthest: it enters on
        # f + nearest and leaves on f + farthest + 1.
        enter = timedelta(days=self.condition.window.nearest_ago)
        leave = timedelta(days=self.condition.window.farthest_ago + 1)
        for day in self.series.days:
            yield day + enter
            yield day + leave


@dataclass(frozen=True, slots=True)
class _Rfm:
    history: RfmHistory
    condition: RfmCondition
    thresholds: RfmThresholds

    def value_at(self, day: date) -> bool:
        return self.history.class_at(day, self.thresholds) == self.condition.rfm

    def steps(self) -> Iterable[date]:
        return self.history.change_days(self.thresholds)


def _header_matches(fact: Fact, filters: Filters) -> bool:
    return all(getattr(fact, name) in values for name, values in filters.header())


def _line_matches(line: FactLine, filters: Filters) -> bool:
    return all(getattr(line, name) in values for name, values in filters.lines())


def _series(condition: EventCondition, facts: Iterable[Fact]) -> DaySeries:
    """Per-day totals of the condition's measure over the facts that pass its filters.

    The single definition of what each metric counts (the SQL compiler mirrors it):
    count: one per fact of the event type, if any line matches the line filters (or none set);
    distinct_days: one per day having such a fact; amount: order and refund facts' signed
    amounts, or with line filters the signed amounts of their matching lines.
    """
    filters = condition.filters
    by_line = bool(filters.lines())
    if condition.metric == "amount":
        amounts: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for fact in facts:
            if fact.event_type not in ("order-placed", "order-refunded") or not _header_matches(
                fact, filters
            ):
                continue
            if by_line:
                matching = [line.amount for line in fact.lines if _line_matches(line, filters)]
                if not matching:
                    continue
                amounts[fact.day] += sum(matching, ZERO)
            else:
                amounts[fact.day] += fact.amount
        return DaySeries(amounts, ZERO)
    counts: dict[date, int] = defaultdict(int)
    for fact in facts:
        if fact.event_type != condition.event or not _header_matches(fact, filters):
            continue
        if by_line and not any(_line_matches(line, filters) for line in fact.lines):
            continue
        counts[fact.day] += 1
    if condition.metric == "distinct_days":
        return DaySeries(dict.fromkeys(counts, 1))
    return DaySeries(counts)


# ---------------------------------------------------------------------------------------------
# The boolean tree over atoms
# ---------------------------------------------------------------------------------------------

_Combine = Callable[[list[bool]], bool]


class _Tree:
    """The rule with its leaves replaced by atoms (``atoms[i]``) and a combiner over their values."""

    def __init__(self, atoms: list[_Atom], combine: _Combine) -> None:
        self.atoms = atoms
        self.combine = combine

    def value(self, day: date) -> bool:
        return self.combine([atom.value_at(day) for atom in self.atoms])


class _Compiler:
    def __init__(self, profile: Profile, rfm: RfmThresholds | None) -> None:
        self.profile = profile
        self.rfm = rfm
        self.atoms: list[_Atom] = []
        self._rfm_history: RfmHistory | None = None

    def compile(self, rule: Rule) -> _Tree:
        combine = self._node(rule)
        return _Tree(self.atoms, combine)

    def _node(self, rule: Rule) -> _Combine:
        if isinstance(rule, AllOf | AnyOf):
            parts = [self._node(r) for r in rule.rules]
            if isinstance(rule, AllOf):
                return lambda values: all(p(values) for p in parts)
            return lambda values: any(p(values) for p in parts)
        if isinstance(rule, Not):
            inner = self._node(rule.rule)
            return lambda values: not inner(values)
        index = len(self.atoms)
        self.atoms.append(self._atom(rule))
        return lambda values: values[index]

    def _atom(self, rule: Rule) -> _Atom:
        p = self.profile
        if isinstance(rule, TagCondition):
            return _Constant(rule.tag in p.tags)
        if isinstance(rule, AttrCondition):
            return _Constant(_attr_matches(rule, p))
        if isinstance(rule, FirstAddedCondition):
            return _DaysSince(rule, p.first_added_day)
        if isinstance(rule, EventCondition):
            return _Windowed(rule, p.facts)
        if isinstance(rule, NoEventCondition):
            return _Windowed(rule.as_count(), p.facts)
        if isinstance(rule, RfmCondition):
            if self.rfm is None:
                raise MissingRfmThresholds("the rule has an rfm condition: pass the tenant's RFM thresholds")
            if self._rfm_history is None:
                self._rfm_history = RfmHistory(p.facts)
            return _Rfm(self._rfm_history, rule, self.rfm)
        raise TypeError(f"not a rule node: {type(rule).__name__}")


def _attr_matches(rule: AttrCondition, profile: Profile) -> bool:
    if rule.attr == "staff_id":
        follows = any(v in profile.staff_ids for v in rule.values)
        return not follows if rule.op == "neq" else follows
    actual = getattr(profile, rule.attr)
    if rule.op == "neq":
        return actual != rule.values[0]  # a missing attribute differs from every value
    return actual is not None and actual in rule.values
