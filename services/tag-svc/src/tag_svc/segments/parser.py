"""Parse and validate segment rules from JSON, reporting every fault with its JSON path.

``parse_rule(data)`` returns a typed :data:`~tag_svc.segments.rules.Rule` or raises
:class:`InvalidRule`, whose ``errors`` list *all* faults found (not only the first), each as
``RuleError(path="$.all[1].count.gte", message="...")``. Unknown keys are errors, with a
"did you mean" hint when a known key is close: a typo must never turn a condition into "no
condition". The API turns :meth:`InvalidRule.as_list` into its 422 body.

The parser is hand-written rather than a pydantic model because the language is keyed by which
key is present (``{"tag": ...}`` vs ``{"event": ...}``) and the errors must speak the rule's own
terms and paths, not a union's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast, get_args

from scrm_shared.events.messages import MessageKind
from scrm_shared.events.orders import OrderChannel
from tag_svc.segments.profile import ContactStatus
from tag_svc.segments.rfm import RFM_CLASSES, RfmClass
from tag_svc.segments.rules import (
    ATTRS,
    COMPARE_OPS,
    EVENT_TYPES,
    FILTERS_BY_EVENT,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_WINDOW_DAYS,
    AllOf,
    AnyOf,
    Attr,
    AttrCondition,
    AttrOp,
    CompareOp,
    Comparison,
    EventCondition,
    EventType,
    Filters,
    FirstAddedCondition,
    Metric,
    NoEventCondition,
    Not,
    Number,
    RfmCondition,
    Rule,
    TagCondition,
    Window,
)

__all__ = ["InvalidRule", "RuleError", "parse_rule", "rule_errors"]

_HEADS = ("all", "any", "not", "attr", "tag", "event", "no_event", "rfm")
_METRICS: tuple[Metric, ...] = ("count", "amount", "distinct_days")
_WINDOW_KEYS = ("within_days", "between_days_ago")
_ALL_FILTERS = ("channel", "store_id", "state", "kind", "campaign_id", "category", "sku")
_ATTR_OPS: tuple[AttrOp, ...] = ("eq", "neq", "in")
_FIRST_ADDED = "first_added_at"
# Every key the language knows, for telling "not allowed here" from "unknown".
_KNOWN_KEYS = frozenset(
    (*_HEADS, *_METRICS, *_WINDOW_KEYS, *_ALL_FILTERS, *_ATTR_OPS, "days_since", *COMPARE_OPS)
)

_ENUMS: dict[str, tuple[str, ...]] = {
    "channel": get_args(OrderChannel),
    "kind": get_args(MessageKind),
    "status": get_args(ContactStatus),
}
_GENDERS = (0, 1, 2)
MAX_STRING = 256
MAX_LIST = 100
MAX_COUNT = 1_000_000_000
_AMOUNT = re.compile(r"-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class RuleError:
    """One fault: where (a JSON path such as ``$.all[1].count.gte``) and what is wrong."""

    path: str
    message: str


class InvalidRule(ValueError):
    """The rule does not parse; ``errors`` holds every fault found, in document order."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors: tuple[RuleError, ...] = tuple(errors)
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in self.errors))

    def as_list(self) -> list[dict[str, str]]:
        """``[{"path": ..., "message": ...}]``, the shape of the API's 422 ``errors``."""
        return [{"path": e.path, "message": e.message} for e in self.errors]


def parse_rule(data: Any) -> Rule:
    """Parse a rule decoded from JSON; raise :class:`InvalidRule` listing every fault."""
    parser = _Parser()
    rule = parser.rule(data, "$", 1)
    if parser.conditions > MAX_CONDITIONS:
        parser.fail(
            "$", f"a rule holds at most {MAX_CONDITIONS} conditions; this one holds {parser.conditions}"
        )
    if parser.errors or rule is None:
        raise InvalidRule(parser.errors or [RuleError("$", "invalid rule")])
    return rule


def rule_errors(data: Any) -> list[RuleError]:
    """Every fault of ``data`` as a rule (empty when it parses)."""
    try:
        parse_rule(data)
    except InvalidRule as exc:
        return list(exc.errors)
    return []


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENT.fullmatch(key) else f'{path}["{key}"]'


def _describe(value: Any) -> str:
    # Names JSON types, never the value: a rule may hold a tag name or id we need not echo.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Parser:
    """One parse: collects errors and counts conditions while building nodes."""

    def __init__(self) -> None:
        self.errors: list[RuleError] = []
        self.conditions = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(RuleError(path, message))

    # -- structure ---------------------------------------------------------------------------

    def rule(self, data: Any, path: str, depth: int) -> Rule | None:
        if not isinstance(data, dict):
            self.fail(path, f'expected a rule object such as {{"tag": "VIP"}}, got {_describe(data)}')
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"rules nest at most {MAX_DEPTH} levels deep")
            return None
        heads = [k for k in data if k in _HEADS]
        if not heads:
            self._no_head(data, path)
            return None
        if len(heads) > 1:
            listed = ", ".join(f"'{h}'" for h in heads)
            self.fail(
                path, f'one object holds one rule, this one has {listed}; combine rules with {{"all": [...]}}'
            )
            return None
        head = heads[0]
        if head in ("all", "any"):
            return self._boolean(head, data, path, depth)
        if head == "not":
            self._only(data, path, ("not",), "not")
            inner = self.rule(data["not"], _key_path(path, "not"), depth + 1)
            return None if inner is None else Not(inner)
        self.conditions += 1
        if head == "attr":
            return self._attr(data, path)
        if head == "tag":
            return self._tag(data, path)
        if head == "rfm":
            return self._rfm(data, path)
        return self._event(head, data, path)

    def _no_head(self, data: dict[str, Any], path: str) -> None:
        expected = ", ".join(_HEADS)
        if not data:
            self.fail(path, f"empty rule object; expected one of: {expected}")
            return
        for key in data:
            if key not in _KNOWN_KEYS:
                self.fail(_key_path(path, str(key)), f"unknown key '{key}'{_hint(str(key), _HEADS)}")
        self.fail(path, f"a rule object needs one of: {expected}")

    def _only(self, data: dict[str, Any], path: str, allowed: Sequence[str], what: str) -> None:
        """Report every key of ``data`` outside ``allowed``."""
        for key in data:
            if key in allowed:
                continue
            key = str(key)
            if key in _KNOWN_KEYS:
                self.fail(_key_path(path, key), f"'{key}' does not apply to {what}")
            else:
                self.fail(_key_path(path, key), f"unknown key '{key}'{_hint(key, allowed)}")

    def _boolean(self, head: str, data: dict[str, Any], path: str, depth: int) -> Rule | None:
        self._only(data, path, (head,), f"'{head}'")
        items = data[head]
        here = _key_path(path, head)
        if not isinstance(items, list):
            self.fail(here, f"expected an array of rules, got {_describe(items)}")
            return None
        if not items:
            # An empty "all" would match every contact; that is never what an operator meant.
            self.fail(here, "expected at least one rule")
            return None
        parsed = [self.rule(item, f"{here}[{i}]", depth + 1) for i, item in enumerate(items)]
        if any(p is None for p in parsed):
            return None
        rules = tuple(cast(list[Rule], parsed))
        return AllOf(rules) if head == "all" else AnyOf(rules)

    # -- conditions --------------------------------------------------------------------------

    def _tag(self, data: dict[str, Any], path: str) -> Rule | None:
        self._only(data, path, ("tag",), "a tag condition")
        name = self._string(data["tag"], _key_path(path, "tag"))
        return None if name is None else TagCondition(name)

    def _rfm(self, data: dict[str, Any], path: str) -> Rule | None:
        self._only(data, path, ("rfm",), "an rfm condition")
        here = _key_path(path, "rfm")
        value = data["rfm"]
        if not isinstance(value, str) or value not in RFM_CLASSES:
            hint = _hint(value, RFM_CLASSES) if isinstance(value, str) else ""
            self.fail(here, f"expected one of the RFM classes: {', '.join(RFM_CLASSES)}{hint}")
            return None
        return RfmCondition(cast(RfmClass, value))

    def _attr(self, data: dict[str, Any], path: str) -> Rule | None:
        here = _key_path(path, "attr")
        attr = data["attr"]
        if not isinstance(attr, str) or attr not in (*ATTRS, _FIRST_ADDED):
            hint = _hint(attr, (*ATTRS, _FIRST_ADDED)) if isinstance(attr, str) else ""
            self.fail(here, f"expected one of: {', '.join((*ATTRS, _FIRST_ADDED))}{hint}")
            self._only(data, path, ("attr", *_ATTR_OPS, "within_days", "days_since"), "an attr condition")
            return None
        if attr == _FIRST_ADDED:
            return self._first_added(data, path)
        self._only(data, path, ("attr", *_ATTR_OPS), f"attr '{attr}'")
        ops = [op for op in _ATTR_OPS if op in data]
        if len(ops) != 1:
            found = f"; found {', '.join(ops)}" if ops else ""
            self.fail(path, f"attr '{attr}' needs exactly one of: eq, neq, in{found}")
            return None
        op = ops[0]
        value = data[op]
        op_path = _key_path(path, op)
        if op == "in":
            values = self._list(value, op_path, lambda v, p: self._attr_value(cast(Attr, attr), v, p))
            if values is None:
                return None
            return AttrCondition(cast(Attr, attr), op, tuple(values))
        single = self._attr_value(cast(Attr, attr), value, op_path)
        return None if single is None else AttrCondition(cast(Attr, attr), op, (single,))

    def _attr_value(self, attr: Attr, value: Any, path: str) -> str | int | None:
        if attr == "gender":
            if isinstance(value, bool) or value not in _GENDERS:
                self.fail(path, "gender is 0 (unknown), 1 (male) or 2 (female), as WeCom reports it")
                return None
            return cast(int, value)
        return self._string(value, path, _ENUMS.get(attr))

    def _first_added(self, data: dict[str, Any], path: str) -> Rule | None:
        self._only(data, path, ("attr", "within_days", "days_since"), "attr 'first_added_at'")
        given = [k for k in ("within_days", "days_since") if k in data]
        if len(given) != 1:
            self.fail(path, "attr 'first_added_at' needs exactly one of: within_days, days_since")
            return None
        if given[0] == "within_days":
            days = self._days(data["within_days"], _key_path(path, "within_days"), 1, MAX_WINDOW_DAYS)
            return None if days is None else FirstAddedCondition.within(days)
        comparison = self._comparison(data["days_since"], _key_path(path, "days_since"), "days_since")
        return None if comparison is None else FirstAddedCondition(comparison)

    def _event(self, head: str, data: dict[str, Any], path: str) -> Rule | None:
        here = _key_path(path, head)
        event = data[head]
        if not isinstance(event, str) or event not in EVENT_TYPES:
            hint = _hint(event, EVENT_TYPES) if isinstance(event, str) else ""
            self.fail(here, f"expected one of: {', '.join(EVENT_TYPES)}{hint}")
            return None
        event_type = cast(EventType, event)
        applicable = FILTERS_BY_EVENT[event_type]
        metrics: tuple[str, ...] = _METRICS if head == "event" else ()
        allowed = (head, *metrics, *_WINDOW_KEYS, *applicable)
        for key in data:
            if key in allowed:
                continue
            key = str(key)
            key_path = _key_path(path, key)
            if key in _ALL_FILTERS:
                users = [e for e in EVENT_TYPES if key in FILTERS_BY_EVENT[e]]
                self.fail(
                    key_path, f"filter '{key}' does not apply to {event}; it filters {', '.join(users)}"
                )
            elif key in _METRICS:
                self.fail(key_path, f"no_event takes no '{key}': it means none in the window")
            elif key in _KNOWN_KEYS:
                self.fail(key_path, f"'{key}' does not apply to an {head} condition")
            else:
                self.fail(key_path, f"unknown key '{key}'{_hint(key, allowed)}")

        window = self._window(data, path)
        filters = self._filters(data, path, applicable)
        if head == "no_event":
            if window is None or filters is None:
                return None
            return NoEventCondition(event_type, window, filters)

        given = [m for m in _METRICS if m in data]
        if len(given) != 1:
            found = f"; found {', '.join(given)}" if given else ""
            self.fail(path, f"an event condition needs exactly one of: count, amount, distinct_days{found}")
            return None
        metric = given[0]
        if metric == "amount" and event_type != "order-placed":
            self.fail(_key_path(path, "amount"), f"amount applies to order-placed only, not {event}")
            return None
        comparison = self._comparison(data[metric], _key_path(path, metric), metric)
        if comparison is None or window is None or filters is None:
            return None
        return EventCondition(event_type, metric, comparison, window, filters)

    # -- pieces --------------------------------------------------------------------------------

    def _window(self, data: dict[str, Any], path: str) -> Window | None:
        given = [k for k in _WINDOW_KEYS if k in data]
        if len(given) != 1:
            found = " (not both)" if given else ""
            self.fail(path, f"needs a window: within_days or between_days_ago{found}")
            return None
        key = given[0]
        here = _key_path(path, key)
        if key == "within_days":
            days = self._days(data[key], here, 1, MAX_WINDOW_DAYS)
            return None if days is None else Window.within_days(days)
        pair = data[key]
        if not isinstance(pair, list) or len(pair) != 2:
            self.fail(here, f"expected [nearest, farthest] days ago, e.g. [7, 14]; got {_describe(pair)}")
            return None
        nearest = self._days(pair[0], f"{here}[0]", 0, MAX_WINDOW_DAYS - 1)
        farthest = self._days(pair[1], f"{here}[1]", 0, MAX_WINDOW_DAYS - 1)
        if nearest is None or farthest is None:
            return None
        if nearest > farthest:
            self.fail(here, "the first number (nearest, days ago) must not exceed the second (farthest)")
            return None
        return Window.between_days_ago(nearest, farthest)

    def _filters(self, data: dict[str, Any], path: str, applicable: Sequence[str]) -> Filters | None:
        values: dict[str, tuple[str, ...]] = {}
        ok = True
        for name in applicable:
            if name not in data:
                continue
            raw = data[name]
            here = _key_path(path, name)
            enum = _ENUMS.get(name)
            if isinstance(raw, list):
                parsed = self._list(raw, here, lambda v, p, e=enum: self._string(v, p, e))
            else:
                one = self._string(raw, here, enum, also_list=True)
                parsed = None if one is None else [one]
            if parsed is None:
                ok = False
            else:
                values[name] = tuple(cast(list[str], parsed))
        return Filters(**values) if ok else None

    def _comparison(self, data: Any, path: str, measure: str) -> Comparison | None:
        if not isinstance(data, dict) or not data:
            self.fail(
                path, f'expected an object with at least one of {", ".join(COMPARE_OPS)}, e.g. {{"gte": 2}}'
            )
            return None
        terms: list[tuple[CompareOp, Number]] = []
        ok = True
        for key, raw in data.items():
            here = _key_path(path, str(key))
            if key not in COMPARE_OPS:
                self.fail(here, f"unknown comparison '{key}'{_hint(str(key), COMPARE_OPS)}")
                ok = False
                continue
            if measure == "amount":
                bound: Number | None = self._amount(raw, here)
            else:
                # days_since stays within the longest window: its bounds become dates (next_change).
                high = MAX_WINDOW_DAYS if measure == "days_since" else MAX_COUNT
                bound = self._count(raw, here, measure, high)
            if bound is None:
                ok = False
            else:
                terms.append((cast(CompareOp, key), bound))
        return Comparison(tuple(terms)) if ok else None

    def _count(self, value: Any, path: str, measure: str, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            self.fail(path, f"{measure} bounds are whole numbers from 0 to {high}, got {_describe(value)}")
            return None
        return value

    def _amount(self, value: Any, path: str) -> Decimal | None:
        if isinstance(value, bool) or isinstance(value, float):
            # A JSON fraction has lost exactness in most producers; money travels as a string.
            self.fail(path, 'amounts are yuan as an integer or a decimal string, e.g. 500 or "499.90"')
            return None
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
            self.fail(path, 'amounts are yuan as an integer or a decimal string, e.g. 500 or "499.90"')
            return None
        return Decimal(value)

    def _days(self, value: Any, path: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"expected a whole number of days from {low} to {high}, got {_describe(value)}")
            return None
        return value

    def _string(
        self, value: Any, path: str, enum: Sequence[str] | None = None, *, also_list: bool = False
    ) -> str | None:
        shape = "a non-empty string" + (" or an array of them" if also_list else "")
        if not isinstance(value, str) or not value.strip():
            got = "a blank string" if isinstance(value, str) else _describe(value)
            self.fail(path, f"expected {shape}, got {got}")
            return None
        if len(value) > MAX_STRING:
            self.fail(path, f"at most {MAX_STRING} characters")
            return None
        if enum is not None and value not in enum:
            self.fail(path, f"expected one of: {', '.join(enum)}{_hint(value, enum)}")
            return None
        return value

    def _list(self, value: Any, path: str, item: Any) -> list[Any] | None:
        if not isinstance(value, list) or not value:
            self.fail(path, f"expected a non-empty array, got {_describe(value)}")
            return None
        if len(value) > MAX_LIST:
            self.fail(path, f"at most {MAX_LIST} values")
            return None
        parsed = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if any(p is None for p in parsed):
            return None
        return parsed
