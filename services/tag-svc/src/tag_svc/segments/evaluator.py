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

import heapq
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Protocol, cast

from tag_svc.segments.profile import ZERO, DaySeries, Fact, FactLine, Profile
from tag_svc.segments.rfm import MissingRfmThresholds, RfmHistory, RfmThresholds
from tag_svc.segments.rules import (
    AllOf,
    AnyOf,
    AttrCondition,
    Condition,
    EventCondition,
    Filters,
    FirstAddedCondition,
    NoEventCondition,
    Not,
    RfmCondition,
    Rule,
    TagCondition,
)

__all__ = [
    "CompiledRule",
    "ContactFacts",
    "assess_rules",
    "compile_rule",
    "evaluate",
    "next_change",
    "uses_rfm",
]


def evaluate(rule: Rule, profile: Profile, today: date, *, rfm: RfmThresholds | None = None) -> bool:
    """Whether ``profile`` matches ``rule`` on ``today`` (a day in the tenant's timezone).

    ``rfm``: the tenant's RFM thresholds, required when the rule has an ``rfm`` condition.
    """
    compiled = compile_rule(rule)
    return ContactFacts(profile, rfm).value(compiled, today)


def next_change(
    rule: Rule, profile: Profile, today: date, *, rfm: RfmThresholds | None = None
) -> date | None:
    """The first day after ``today`` on which ``evaluate`` gives another answer, absent new events.

    ``None`` when no such day exists (the rule depends on no time window, or every window has
    already passed every fact). Exact, not a hint: on every day strictly between ``today`` and
    the result, the rule's value equals today's.
    """
    _, due = assess_rules(profile, (compile_rule(rule),), today, rfm=rfm)
    return due


def assess_rules(
    profile: Profile,
    rules: Sequence[CompiledRule],
    today: date,
    *,
    rfm: RfmThresholds | None = None,
) -> tuple[list[bool], date | None]:
    """Every rule's answer today for one contact, and the first day after today on which *any*
    of them gives another answer (absent new events): ``min(next_change(r) for r in rules)``.

    The processor's hot path. The contact's facts are prepared once for all the rules (one day
    series per distinct measure and filter set, one atom per distinct condition), and the search
    for the next change stops at the first day on which any rule flips, instead of walking every
    rule's own steps to its end.
    """
    rule_set = _rule_set(rules)
    contact = ContactFacts(profile, rfm)
    atoms = [contact.atom(leaf) for leaf in rule_set.leaves]
    combines = rule_set.combines
    values = [combine(atoms, today) for combine in combines]
    # A rule's value can only change on a step day of one of its atoms. The walk visits those
    # days in order, each atom asked only for its next one (a heap of one entry per atom), and
    # evaluates on a day only the rules having an atom that steps then: it stops at the first
    # day any rule flips, usually a few days in, without listing the later steps (those of a
    # 3650-day window or of the RFM horizon).
    users = rule_set.users
    heap = [(day, n) for n in rule_set.stepping if (day := atoms[n].next_step(today)) is not None]
    heapq.heapify(heap)
    while heap:
        day = heap[0][0]
        due: set[int] = set()
        while heap and heap[0][0] == day:
            n = heap[0][1]
            due.update(users[n])
            following = atoms[n].next_step(day)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following, n))
        for index in due:
            if combines[index](atoms, day) != values[index]:
                return values, day
    return values, None


def uses_rfm(rule: Rule) -> bool:
    """Whether evaluating ``rule`` needs the tenant's RFM thresholds."""
    if isinstance(rule, AllOf | AnyOf):
        return any(uses_rfm(r) for r in rule.rules)
    if isinstance(rule, Not):
        return uses_rfm(rule.rule)
    return isinstance(rule, RfmCondition)


# ---------------------------------------------------------------------------------------------
# Compiled rules: the boolean tree over leaf conditions, built once per rule
# ---------------------------------------------------------------------------------------------

_Combine = Callable[[Sequence["_Atom"], date], bool]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule compiled once (the processor keeps one per segment version): its distinct leaf
    conditions and a function of their atoms' values on a day.

    ``timed``: whether its answer can change with no new event (some leaf is windowed, counts
    days since the first add, or is an RFM class).
    """

    rule: Rule
    leaves: tuple[_Leaf, ...]
    combine: _Combine
    timed: bool
    template: str
    """The combiner's expression with ``{k}`` where it reads its k-th leaf's atom: a rule set
    (:func:`_rule_set`) re-numbers it over the set's atoms."""


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A distinct leaf condition, interned: every rule with an equal condition holds this very
    object, so a contact's atoms are cached by a small integer instead of hashing conditions."""

    id: int
    condition: Condition
    series: int | None
    """For event conditions: the id of the day series they read (event, measure, filters)."""
    window: _WindowShape | None
    """For event conditions: the window's offsets, computed once."""


@dataclass(frozen=True, slots=True)
class _WindowShape:
    """An event condition's window as offsets from a day: facts of days ``day - farthest`` through
    ``day - nearest`` count; a fact's day enters ``nearest`` days later and leaves ``leave``
    days later."""

    holds: Callable[[int | Decimal], bool]
    farthest: timedelta
    nearest: timedelta
    leave: timedelta


_LEAVES: dict[Condition, _Leaf] = {}
_SERIES: dict[tuple[str, str, Filters], int] = {}


def _leaf(condition: Condition) -> _Leaf:
    leaf = _LEAVES.get(condition)
    if leaf is None:
        series, window = None, None
        if isinstance(condition, EventCondition):
            # Amounts read orders and refunds whatever the event.
            event = "order-placed" if condition.metric == "amount" else condition.event
            series = _SERIES.setdefault((event, condition.metric, condition.filters), len(_SERIES))
            w = condition.window
            window = _WindowShape(
                condition.comparison.holds,
                timedelta(days=w.farthest_ago),
                timedelta(days=w.nearest_ago),
                timedelta(days=w.farthest_ago + 1),
            )
        leaf = _LEAVES[condition] = _Leaf(len(_LEAVES), condition, series, window)
    return leaf


@lru_cache(maxsize=1024)
def compile_rule(rule: Rule) -> CompiledRule:
    """Compile ``rule`` (cached: rules are frozen and hashable); equal leaves (the same condition
    twice) share one atom."""
    leaves: dict[int, int] = {}
    order: list[_Leaf] = []

    def node(r: Rule) -> str:
        # The rule as a Python expression over the atoms ``a`` on the day ``d``: only indexes
        # and operators, never a value from the rule (those live in the atoms).
        if isinstance(r, AllOf | AnyOf):
            if not r.rules:  # the empty conjunction holds, the empty disjunction does not
                return "True" if isinstance(r, AllOf) else "False"
            op = " and " if isinstance(r, AllOf) else " or "
            return "(" + op.join(node(child) for child in r.rules) + ")"
        if isinstance(r, Not):
            return f"(not {node(r.rule)})"
        leaf = _leaf(r.as_count() if isinstance(r, NoEventCondition) else r)
        if leaf.id not in leaves:
            leaves[leaf.id] = len(order)
            order.append(leaf)
        return f"a[{{{leaves[leaf.id]}}}].value_at(d)"

    # One function per rule instead of a tree of closures: the processor evaluates every rule of
    # a touched contact, and again on each day its next change is searched on.
    template = node(rule)
    combine = _combiner(template.format(*range(len(order))))
    timed = any(
        isinstance(leaf.condition, EventCondition | FirstAddedCondition | RfmCondition) for leaf in order
    )
    return CompiledRule(rule, tuple(order), combine, timed, template)


def _combiner(expression: str) -> _Combine:
    """``lambda a, d: bool(<expression>)``: only indexes and operators, never a value from a rule."""
    return eval(f"lambda a, d: bool({expression})", {"__builtins__": {"bool": bool}})  # type: ignore[no-any-return]  # noqa: S307


@dataclass(frozen=True, slots=True)
class _RuleSet:
    """Rules evaluated together (one contact's segments), prepared once: the distinct leaves of
    all of them, each rule's combiner over the set's atoms (no per-contact binding), and for
    the next-change walk the atoms that can step with the timed rules reading each."""

    leaves: tuple[_Leaf, ...]
    combines: tuple[_Combine, ...]
    users: tuple[tuple[int, ...], ...]
    """Per atom: the indexes of the timed rules reading it."""
    stepping: tuple[int, ...]
    """The atoms some timed rule reads."""


_RULE_SETS: dict[tuple[int, ...], tuple[tuple[CompiledRule, ...], _RuleSet]] = {}
_RULE_SETS_MAX = 1024


def _rule_set(rules: Sequence[CompiledRule]) -> _RuleSet:
    """The rule set of ``rules`` (cached by the rules' identities: a processor asks for the same
    few sets, built from the compiled rules it keeps, for every contact)."""
    key = tuple(map(id, rules))
    hit = _RULE_SETS.get(key)
    if hit is not None:
        return hit[1]  # the entry holds the rules: their ids cannot have been reused
    position: dict[int, int] = {}
    leaves: list[_Leaf] = []
    users: list[list[int]] = []
    combines: list[_Combine] = []
    for index, rule in enumerate(rules):
        numbers = []
        for leaf in rule.leaves:
            n = position.get(leaf.id)
            if n is None:
                n = position[leaf.id] = len(leaves)
                leaves.append(leaf)
                users.append([])
            numbers.append(n)
            if rule.timed:
                users[n].append(index)
        combines.append(_combiner(rule.template.format(*numbers)))
    built = _RuleSet(
        tuple(leaves),
        tuple(combines),
        tuple(tuple(u) for u in users),
        tuple(n for n, u in enumerate(users) if u),
    )
    if len(_RULE_SETS) >= _RULE_SETS_MAX:
        _RULE_SETS.clear()
    _RULE_SETS[key] = (tuple(rules), built)
    return built


# ---------------------------------------------------------------------------------------------
# One contact's facts, prepared for many rules
# ---------------------------------------------------------------------------------------------


class ContactFacts:
    """One contact's profile as atoms: built lazily, one per distinct condition, over day series
    shared by every condition with the same event type, measure and filters."""

    __slots__ = ("_atoms", "_rfm", "_rfm_history", "_series", "profile")

    def __init__(self, profile: Profile, rfm: RfmThresholds | None) -> None:
        self.profile = profile
        self._rfm = rfm
        self._rfm_history: RfmHistory | None = None
        self._atoms: dict[int, _Atom] = {}
        self._series: dict[int, DaySeries] = {}

    def atom(self, leaf: _Leaf) -> _Atom:
        """This contact's atom for ``leaf`` (built once)."""
        atom = self._atoms.get(leaf.id)
        if atom is None:
            atom = self._atoms[leaf.id] = self._build(leaf)
        return atom

    def value(self, rule: CompiledRule, day: date) -> bool:
        return rule.combine([self.atom(leaf) for leaf in rule.leaves], day)

    def _build(self, leaf: _Leaf) -> _Atom:
        p, condition = self.profile, leaf.condition
        if leaf.series is not None and leaf.window is not None:  # an event condition: most leaves
            return _Windowed(leaf.window, self._series_of(leaf.series, cast(EventCondition, condition)))
        if isinstance(condition, TagCondition):
            return _Constant(condition.tag in p.tags)
        if isinstance(condition, AttrCondition):
            return _Constant(_attr_matches(condition, p))
        if isinstance(condition, FirstAddedCondition):
            return _DaysSince(condition, p.first_added_day)
        if isinstance(condition, RfmCondition):
            if self._rfm is None:
                raise MissingRfmThresholds("the rule has an rfm condition: pass the tenant's RFM thresholds")
            if self._rfm_history is None:
                self._rfm_history = RfmHistory(p.facts)
            return _Rfm(self._rfm_history, condition, self._rfm)
        raise TypeError(f"not a rule node: {type(condition).__name__}")

    def _series_of(self, key: int, condition: EventCondition) -> DaySeries:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _series(condition, self.profile.facts)
        return series


# ---------------------------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------------------------


class _Atom(Protocol):
    def value_at(self, day: date) -> bool: ...

    def next_step(self, after: date) -> date | None:
        """The first day after ``after`` on which ``value_at`` may differ from the day before
        (the days it returns, asked from any day, are a superset of the real changes); ``None``
        when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class _Constant:
    """An attribute or tag condition: the same answer every day until an event changes it."""

    answer: bool

    def value_at(self, day: date) -> bool:
        return self.answer

    def next_step(self, after: date) -> date | None:
        return None


@dataclass(frozen=True, slots=True)
class _DaysSince:
    """A comparison on the whole days since the contact was first added."""

    condition: FirstAddedCondition
    first_day: date | None

    def value_at(self, day: date) -> bool:
        if self.first_day is None:
            return False
        return self.condition.days_since.holds((day - self.first_day).days)

    def next_step(self, after: date) -> date | None:
        if self.first_day is None:
            return None
        # days_since grows by one a day, so it can only cross a bound on the bound's day or
        # the day after (gt/lte flip one day later than gte/lt).
        later = [
            day
            for _, bound in self.condition.days_since.terms
            for day in (
                self.first_day + timedelta(days=int(bound)),
                self.first_day + timedelta(days=int(bound) + 1),
            )
            if day > after
        ]
        return min(later, default=None)


class _Windowed:
    """count / amount / distinct_days of filtered facts over a sliding window of days."""

    __slots__ = ("series", "shape")

    def __init__(self, shape: _WindowShape, series: DaySeries) -> None:
        self.shape = shape
        self.series = series

    def value_at(self, day: date) -> bool:
        shape = self.shape
        return shape.holds(self.series.total(day - shape.farthest, day - shape.nearest))

    def next_step(self, after: date) -> date | None:
        # Day f lies in the window on day d iff f + nearest <= d <= f + farthest: it enters on
        # f + nearest and leaves on f + farthest + 1. The series' days are sorted, so the first
        # entry and the first exit after ``after`` are each one bisection away.
        days, enter, leave = self.series.days, self.shape.nearest, self.shape.leave
        i = bisect_right(days, after - enter)
        j = bisect_right(days, after - leave)
        if j == len(days):
            return None  # j <= i (leave > enter): nothing enters either
        exit_day = days[j] + leave
        return min(days[i] + enter, exit_day) if i < len(days) else exit_day


@dataclass(frozen=True, slots=True)
class _Rfm:
    history: RfmHistory
    condition: RfmCondition
    thresholds: RfmThresholds

    def value_at(self, day: date) -> bool:
        return self.history.class_at(day, self.thresholds) == self.condition.rfm

    def next_step(self, after: date) -> date | None:
        days = self.history.change_days(self.thresholds)
        i = bisect_right(days, after)
        return days[i] if i < len(days) else None


@lru_cache(maxsize=4096)
def _filter_split(
    filters: Filters,
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """The header and line filters of ``filters`` (computed once per distinct filter set)."""
    return tuple(filters.header()), tuple(filters.lines())


def _matches(obj: Fact | FactLine, filters: tuple[tuple[str, tuple[str, ...]], ...]) -> bool:
    for name, values in filters:
        if getattr(obj, name) not in values:
            return False
    return True


def _series(condition: EventCondition, facts: Iterable[Fact]) -> DaySeries:
    """Per-day totals of the condition's measure over the facts that pass its filters.

    The single definition of what each metric counts (the SQL compiler mirrors it):
    count: one per fact of the event type, if any line matches the line filters (or none set);
    distinct_days: one per day having such a fact; amount: order and refund facts' signed
    amounts, or with line filters the signed amounts of their matching lines.
    """
    header, by_line = _filter_split(condition.filters)
    if condition.metric == "amount":
        amounts: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for fact in facts:
            if fact.event_type not in ("order-placed", "order-refunded") or not _matches(fact, header):
                continue
            if by_line:
                matching = [line.amount for line in fact.lines if _matches(line, by_line)]
                if not matching:
                    continue
                amounts[fact.day] += sum(matching, ZERO)
            else:
                amounts[fact.day] += fact.amount
        return DaySeries(amounts, ZERO)
    counts: dict[date, int] = defaultdict(int)
    for fact in facts:
        if fact.event_type != condition.event or not _matches(fact, header):
            continue
        if by_line and not any(_matches(line, by_line) for line in fact.lines):
            continue
        counts[fact.day] += 1
    if condition.metric == "distinct_days":
        return DaySeries(dict.fromkeys(counts, 1))
    return DaySeries(counts)


def _attr_matches(rule: AttrCondition, profile: Profile) -> bool:
    if rule.attr == "staff_id":
        follows = any(v in profile.staff_ids for v in rule.values)
        return not follows if rule.op == "neq" else follows
    actual = getattr(profile, rule.attr)
    if rule.op == "neq":
        return actual != rule.values[0]  # a missing attribute differs from every value
    return actual is not None and actual in rule.values
