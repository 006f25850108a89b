"""The typed model of the segment rule language (JSON in, see :mod:`.parser` and docs/segments.md).

Nodes are frozen dataclasses, so a parsed rule can be cached, compared and hashed. Each node's
``to_json()`` gives the canonical JSON form (what the API stores and returns); parsing the
canonical form gives an equal node.

Time lives in two small types shared by both engines, so "within 30 days" is computed by one
piece of code whether Python or PostgreSQL evaluates it: :class:`Window` turns a day into the
(first, last) days it covers, :class:`Comparison` applies ``gte``/``lt``/... to a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from tag_svc.segments.rfm import RfmClass

__all__ = [
    "ATTRS",
    "COMPARE_OPS",
    "EVENT_TYPES",
    "FILTERS_BY_EVENT",
    "LINE_FILTERS",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_WINDOW_DAYS",
    "AllOf",
    "AnyOf",
    "Attr",
    "AttrCondition",
    "Comparison",
    "Condition",
    "EventCondition",
    "EventType",
    "Filters",
    "FirstAddedCondition",
    "Metric",
    "NoEventCondition",
    "Not",
    "RfmCondition",
    "Rule",
    "TagCondition",
    "Window",
    "conditions",
]

MAX_DEPTH = 8
"""Nesting levels of rule objects, the root being level 1."""
MAX_CONDITIONS = 50
MAX_WINDOW_DAYS = 3650

EventType = Literal["order-placed", "message-sent", "friend-added"]
EVENT_TYPES: tuple[EventType, ...] = ("order-placed", "message-sent", "friend-added")
Metric = Literal["count", "amount", "distinct_days"]
CompareOp = Literal["gte", "gt", "lte", "lt", "eq"]
COMPARE_OPS: tuple[CompareOp, ...] = ("gte", "gt", "lte", "lt", "eq")
Attr = Literal["state", "store_id", "staff_id", "gender", "status"]
ATTRS: tuple[Attr, ...] = ("state", "store_id", "staff_id", "gender", "status")
AttrOp = Literal["eq", "neq", "in"]

FilterName = Literal["channel", "store_id", "state", "kind", "campaign_id", "category", "sku"]
LINE_FILTERS: tuple[FilterName, ...] = ("category", "sku")
"""Filters on an order's item lines; the others filter the event itself."""
FILTERS_BY_EVENT: dict[EventType, tuple[FilterName, ...]] = {
    "order-placed": ("channel", "store_id", "category", "sku"),
    "message-sent": ("kind", "campaign_id"),
    "friend-added": ("store_id", "state"),
}

Number = int | Decimal


@dataclass(frozen=True, slots=True)
class Comparison:
    """A conjunction of bounds on one number: ``{"gte": 2, "lt": 5}`` holds for 2, 3 and 4."""

    terms: tuple[tuple[CompareOp, Number], ...]

    def holds(self, value: Number) -> bool:
        """Whether ``value`` satisfies every term."""
        for op, bound in self.terms:
            if op == "gte":
                ok = value >= bound
            elif op == "gt":
                ok = value > bound
            elif op == "lte":
                ok = value <= bound
            elif op == "lt":
                ok = value < bound
            else:
                ok = value == bound
            if not ok:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        # Amounts go out as decimal strings, like money everywhere on the platform.
        return {op: (f"{bound}" if isinstance(bound, Decimal) else bound) for op, bound in self.terms}


@dataclass(frozen=True, slots=True)
class Window:
    """Whole calendar days, counted back from "today" in the tenant's timezone (today = 0 days ago).

    ``within_days: D`` is ``Window(0, D - 1)``: the D days ending today, today included.
    ``between_days_ago: [a, b]`` is ``Window(a, b)``: from b days ago through a days ago.
    """

    nearest_ago: int
    farthest_ago: int
    spelled_within: bool = True

    @classmethod
    def within_days(cls, days: int) -> Window:
        return cls(0, days - 1, True)

    @classmethod
    def between_days_ago(cls, nearest: int, farthest: int) -> Window:
        return cls(nearest, farthest, False)

    def bounds(self, today: date) -> tuple[date, date]:
        """The first and last day (both included) the window covers on ``today``."""
        return today - timedelta(days=self.farthest_ago), today - timedelta(days=self.nearest_ago)

    def to_json(self) -> dict[str, Any]:
        if self.spelled_within:
            return {"within_days": self.farthest_ago + 1}
        return {"between_days_ago": [self.nearest_ago, self.farthest_ago]}


@dataclass(frozen=True, slots=True)
class Filters:
    """Event filters: each given one must match (a value among its values); empty = no filter.

    ``category`` and ``sku`` look at an order's item lines and must match on the *same* line.
    """

    channel: tuple[str, ...] = ()
    store_id: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    campaign_id: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    sku: tuple[str, ...] = ()

    def items(self) -> list[tuple[FilterName, tuple[str, ...]]]:
        """The filters that are set, in a fixed order."""
        names: tuple[FilterName, ...] = (
            "channel",
            "store_id",
            "state",
            "kind",
            "campaign_id",
            "category",
            "sku",
        )
        return [(name, getattr(self, name)) for name in names if getattr(self, name)]

    def header(self) -> list[tuple[FilterName, tuple[str, ...]]]:
        return [(n, v) for n, v in self.items() if n not in LINE_FILTERS]

    def lines(self) -> list[tuple[FilterName, tuple[str, ...]]]:
        return [(n, v) for n, v in self.items() if n in LINE_FILTERS]

    def to_json(self) -> dict[str, Any]:
        return {name: values[0] if len(values) == 1 else list(values) for name, values in self.items()}


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllOf:
    """``{"all": [...]}``: every rule holds."""

    rules: tuple[Rule, ...]

    def to_json(self) -> dict[str, Any]:
        return {"all": [r.to_json() for r in self.rules]}


@dataclass(frozen=True, slots=True)
class AnyOf:
    """``{"any": [...]}``: at least one rule holds."""

    rules: tuple[Rule, ...]

    def to_json(self) -> dict[str, Any]:
        return {"any": [r.to_json() for r in self.rules]}


@dataclass(frozen=True, slots=True)
class Not:
    """``{"not": rule}``."""

    rule: Rule

    def to_json(self) -> dict[str, Any]:
        return {"not": self.rule.to_json()}


@dataclass(frozen=True, slots=True)
class AttrCondition:
    """``{"attr": "store_id", "eq": "sh-012"}`` and friends.

    ``eq`` and ``in`` never match a missing attribute; ``neq`` does (a contact without a store is
    not in store sh-012). ``staff_id`` is the set of staff following the contact: ``eq`` means
    "followed by", ``in`` "followed by any of", ``neq`` "not followed by".
    """

    attr: Attr
    op: AttrOp
    values: tuple[str | int, ...]

    def to_json(self) -> dict[str, Any]:
        value: Any = list(self.values) if self.op == "in" else self.values[0]
        return {"attr": self.attr, self.op: value}


@dataclass(frozen=True, slots=True)
class FirstAddedCondition:
    """``{"attr": "first_added_at", "within_days": N}`` or ``"days_since": {...}``.

    Both compare the whole days since the contact was first added (today minus its
    ``first_added_day``); ``within_days: N`` means ``days_since`` in 0..N-1, like an event window.
    A contact never added matches neither.
    """

    days_since: Comparison
    within_days: int | None = None

    @classmethod
    def within(cls, days: int) -> FirstAddedCondition:
        return cls(Comparison((("gte", 0), ("lte", days - 1))), days)

    def to_json(self) -> dict[str, Any]:
        if self.within_days is not None:
            return {"attr": "first_added_at", "within_days": self.within_days}
        return {"attr": "first_added_at", "days_since": self.days_since.to_json()}


@dataclass(frozen=True, slots=True)
class TagCondition:
    """``{"tag": "VIP"}``: the contact carries a tag of that name (in any tag group)."""

    tag: str

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag}


@dataclass(frozen=True, slots=True)
class EventCondition:
    """``{"event": "order-placed", "count": {"gte": 2}, "within_days": 60, "category": "护肤"}``.

    - ``count``: events of the type in the window that pass the filters (an order counts once,
      however many of its lines match ``category``/``sku``);
    - ``amount`` (orders only): net yuan in the window: the paid totals minus refunds, or with a
      line filter the matching line totals minus matching refunded lines;
    - ``distinct_days``: days in the window with at least one counted event.
    """

    event: EventType
    metric: Metric
    comparison: Comparison
    window: Window
    filters: Filters = Filters()

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            self.metric: self.comparison.to_json(),
            **self.window.to_json(),
            **self.filters.to_json(),
        }


@dataclass(frozen=True, slots=True)
class NoEventCondition:
    """``{"no_event": "order-placed", "within_days": 30}``: no such event (with the filters) in the window.

    The same as ``count`` ``{"eq": 0}``; a contact with no history at all matches.
    """

    event: EventType
    window: Window
    filters: Filters = Filters()

    def as_count(self) -> EventCondition:
        """The equivalent count condition (how both engines evaluate it)."""
        return EventCondition(self.event, "count", Comparison((("eq", 0),)), self.window, self.filters)

    def to_json(self) -> dict[str, Any]:
        return {"no_event": self.event, **self.window.to_json(), **self.filters.to_json()}


@dataclass(frozen=True, slots=True)
class RfmCondition:
    """``{"rfm": "重要价值客户"}``: the contact's RFM class today (see :mod:`.rfm`)."""

    rfm: RfmClass

    def to_json(self) -> dict[str, Any]:
        return {"rfm": self.rfm}


Condition = (
    AttrCondition | FirstAddedCondition | TagCondition | EventCondition | NoEventCondition | RfmCondition
)
Rule = AllOf | AnyOf | Not | Condition


def conditions(rule: Rule) -> list[Condition]:
    """The leaf conditions of ``rule``, depth first."""
    if isinstance(rule, AllOf | AnyOf):
        return [c for r in rule.rules for c in conditions(r)]
    if isinstance(rule, Not):
        return conditions(rule.rule)
    return [rule]
