"""What an event condition counts, as SQL: the rows a pass over a tenant reads for it.

Without a line filter these are the facts (``f``) of its event type (orders and refunds for an
amount) in its window that pass its header filters (channel, store, kind, ...). With a
``category`` / ``sku`` filter they are the matching item lines (``l``) of its window: a line
carries its fact's contact and day (migration 0007), so the lines' own index gives them without
reading any fact, and they are joined to their facts only for a header filter. Measured per line,
a count counts each fact once (``count(DISTINCT l.event_key)``) and an amount sums the matching
lines' amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tag_svc.segments.rules import EventCondition
from tag_svc.segments.sql.params import AMOUNT_TYPES, Args, SqlParams

__all__ = ["FACT_OF_LINE", "Rows", "contact_range", "event_rows", "fact_filters", "line_test"]

# Column names come from these maps, never from rule text.
_HEADER_COLUMNS = {
    "channel": "f.channel",
    "store_id": "f.store_id",
    "state": "f.state",
    "kind": "f.kind",
    "campaign_id": "f.campaign_id",
}
_LINE_COLUMNS = {"category": "l.category", "sku": "l.sku"}

FACT_OF_LINE = "f.tenant_id = l.tenant_id AND f.event_type = l.event_type AND f.event_key = l.event_key"
"""A line ``l`` and its fact ``f``."""


@dataclass(frozen=True, slots=True)
class Rows:
    """``SELECT ... FROM {source} WHERE {where}``: the rows of one condition. ``alias`` (``f`` or
    ``l``) names the relation whose tenant_id, external_userid, event_key, day and amount count."""

    source: str
    alias: str
    where: tuple[str, ...]

    @property
    def per_line(self) -> bool:
        return self.alias == "l"


def event_rows(arg: Args, params: SqlParams, rule: EventCondition) -> Rows:
    """The facts ``rule`` counts, or with line filters the matching lines of those facts."""
    if not rule.filters.lines():
        return Rows("profile_facts f", "f", tuple(fact_filters(arg, params, rule)))
    where = line_test(arg, params, rule)
    headers = _header_filters(arg, rule)
    if not headers:
        return Rows("profile_fact_lines l", "l", tuple(where))
    return Rows(f"profile_fact_lines l JOIN profile_facts f ON {FACT_OF_LINE}", "l", (*where, *headers))


def fact_filters(arg: Args, params: SqlParams, rule: EventCondition) -> list[str]:
    """The conditions on ``f`` of the facts ``rule`` counts, its line filters aside: the event
    type (orders and refunds for an amount), the window, the header filters (and the contact
    range)."""
    return [
        _type_test(arg, "f", rule),
        _window_test(arg, "f", params, rule),
        *_header_filters(arg, rule),
        *contact_range(arg, "f", params),
    ]


def line_test(arg: Args, params: SqlParams, rule: EventCondition) -> list[str]:
    """The conditions on ``l`` of the lines ``rule``'s line filters match in its window (a line has
    its fact's type, day and contact), every line filter on the same line."""
    match = [_one_of(arg, _LINE_COLUMNS[name], values) for name, values in rule.filters.lines()]
    return [
        _type_test(arg, "l", rule),
        _window_test(arg, "l", params, rule),
        *match,
        *contact_range(arg, "l", params),
    ]


def contact_range(arg: Args, alias: str, params: SqlParams) -> list[str]:
    """The conditions keeping ``alias``'s rows to the contacts of ``params.contacts``."""
    if params.contacts is None:
        return []
    first, end = params.contacts
    out = []
    if first is not None:
        out.append(f"{alias}.external_userid >= {arg(first, 'text')}")
    if end is not None:
        out.append(f"{alias}.external_userid < {arg(end, 'text')}")
    return out


def _type_test(arg: Args, alias: str, rule: EventCondition) -> str:
    if rule.metric == "amount":
        return f"{alias}.event_type = ANY({arg(list(AMOUNT_TYPES), 'text[]')})"
    return f"{alias}.event_type = {arg(rule.event, 'text')}"


def _window_test(arg: Args, alias: str, params: SqlParams, rule: EventCondition) -> str:
    first, last = rule.window.bounds(params.today)
    return f"{alias}.day BETWEEN {arg(first, 'date')} AND {arg(last, 'date')}"


def _header_filters(arg: Args, rule: EventCondition) -> list[str]:
    return [_one_of(arg, _HEADER_COLUMNS[name], values) for name, values in rule.filters.header()]


def _one_of(arg: Args, column: str, values: Sequence[str]) -> str:
    # One value is an equality, which PostgreSQL can match in an index while keeping the index's
    # order of the columns after it (15 loses that order for "= ANY" past the first column).
    if len(values) == 1:
        return f"{column} = {arg(values[0], 'text')}"
    return f"{column} = ANY({arg(list(values), 'text[]')})"
