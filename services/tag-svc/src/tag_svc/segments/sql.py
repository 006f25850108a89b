"""The SQL engine: compile a rule to a parameterised predicate over the profile tables (0002).

``compile_sql(rule, SqlParams(today=...))`` returns ``(sql, args)``: a boolean expression over
one row ``p`` of ``profiles`` that holds exactly when ``evaluate(rule, profile, today)`` does,
for previews, backfills and audits::

    pred = compile_sql(rule, SqlParams(today=today, rfm=thresholds), first_arg=2)
    SELECT p.external_userid FROM profiles p WHERE p.tenant_id = $1 AND ({pred.sql})

Every value travels as a ``$n`` argument with an explicit cast; the text holds only identifiers
and operators chosen from the validated rule, never a value. Every sub-expression is two-valued
(never NULL), so ``NOT`` means the same as Python's ``not``. Window days are computed here, in
Python, by the same :meth:`Window.bounds` the evaluator uses, and compared with the stored
``day`` of each fact: no timezone arithmetic happens in SQL.

The predicate is built to be run over many profiles at once (a preview counts a tenant's 1M):

- conditions on the row (attributes, tags, first added) are plain expressions on ``p``;
- "has such an event in the window" (``count >= 1``) and "has none" (``no_event``,
  ``count = 0``), alone or as a conjunct at the top, are a correlated ``EXISTS`` /
  ``NOT EXISTS``: PostgreSQL runs them as one (parallel) semi- or anti-join with the facts;
- every other fact condition (counts, amounts, distinct days, RFM) reads one aggregate of the
  contact's facts: one pass over the facts the conditions count, grouped by contact, a column per
  measure. The rule's value for a contact without facts is known in Python (every measure 0, no
  RFM class), so the test is ``EXISTS`` (that value is false), ``NOT EXISTS ... NOT`` (true) or,
  where it depends on the row, a LEFT JOIN of the aggregate to the contact's own row.

Every one of those is tenant-scoped by ``p.tenant_id`` (the correlation), and PostgreSQL pushes
the caller's ``p.tenant_id = $1`` into the scans of the facts and lines. Placed as a conjunct of a
WHERE clause, as previews do, the sub-queries become joins (one pass over the facts); anywhere
else (a SELECT list, under OR) they stay correct but run per row.

Also here: the statements that write profile rows (shared by the processor and the tests) and the
RFM distribution queries.
"""

# This module composes SQL text from fixed fragments and identifiers picked from maps; every value
# goes through _Args as a $n argument, which is what S608 (string-built SQL) guards against.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from tag_svc.segments.profile import Profile
from tag_svc.segments.rfm import (
    CLASS_LEVELS,
    DEFAULT_RFM_THRESHOLDS,
    RFM_CLASSES,
    RFM_HORIZON_DAYS,
    MissingRfmThresholds,
    RfmThresholds,
    thresholds_from_medians,
)
from tag_svc.segments.rules import (
    AllOf,
    AnyOf,
    AttrCondition,
    EventCondition,
    FirstAddedCondition,
    NoEventCondition,
    Not,
    RfmCondition,
    Rule,
    TagCondition,
    conditions,
)

__all__ = [
    "INSERT_FACT",
    "INSERT_FACT_LINE",
    "UPSERT_PROFILE",
    "CompiledSql",
    "SqlParams",
    "compile_sql",
    "fact_args",
    "fact_line_args",
    "profile_args",
    "rfm_class_counts_query",
    "rfm_medians_query",
    "thresholds_from_medians_row",
]


@dataclass(frozen=True, slots=True)
class SqlParams:
    """What a predicate needs besides the rule: the tenant's today, and its RFM thresholds."""

    today: date
    rfm: RfmThresholds | None = None


class CompiledSql(NamedTuple):
    """SQL text with ``$n`` placeholders and the arguments for them, in order."""

    sql: str
    args: tuple[Any, ...]


def compile_sql(rule: Rule, params: SqlParams, *, first_arg: int = 1) -> CompiledSql:
    """A boolean SQL predicate over ``profiles p`` meaning what ``evaluate`` means.

    ``first_arg`` is the number of the first placeholder, so callers can put their own arguments
    (tenant id, cursor, limit) first.
    """
    args = _Args(first_arg)
    sql = _Compiler(params, args).predicate(rule)
    return CompiledSql(sql, tuple(args.values))


class _Args:
    def __init__(self, first: int) -> None:
        self.first = first
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{cast}"


_OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "="}
_AMOUNT_TYPES = ("order-placed", "order-refunded")
_OF_CONTACT = "a.tenant_id = p.tenant_id AND a.external_userid = p.external_userid"
_FACT_OF_CONTACT = "f.tenant_id = p.tenant_id AND f.external_userid = p.external_userid"
_LINE_OF_FACT = "l.tenant_id = f.tenant_id AND l.event_type = f.event_type AND l.event_key = f.event_key"
# Column names come from these maps, never from rule text.
_ATTR_COLUMNS = {"state": "p.state", "store_id": "p.store_id", "gender": "p.gender", "status": "p.status"}
_HEADER_COLUMNS = {
    "channel": "f.channel",
    "store_id": "f.store_id",
    "state": "f.state",
    "kind": "f.kind",
    "campaign_id": "f.campaign_id",
}
_LINE_COLUMNS = {"category": "l.category", "sku": "l.sku"}
_FACT_CONDITIONS = (EventCondition, NoEventCondition, RfmCondition)


class _Compiler:
    def __init__(self, params: SqlParams, args: _Args) -> None:
        self.params = params
        self.arg = args

    def predicate(self, rule: Rule) -> str:
        """The conjuncts at the top, each in its cheapest exact form: a condition on the row as it
        is; "has such an event" / "has none" as a correlated EXISTS / NOT EXISTS over the facts
        (PostgreSQL runs it as a semi- or anti-join, in parallel, with no grouping); the other
        fact conditions together through one per-contact aggregate (:meth:`facts`)."""
        parts = rule.rules if isinstance(rule, AllOf) else (rule,)
        sql, on_facts = [], []
        for part in parts:
            existence = _existence(part)
            if existence is not None:
                sql.append(self.exists(*existence))
            elif _reads_facts(part):
                on_facts.append(part)
            else:
                sql.append(self.node(part, None))
        if on_facts:
            sql.append(self.facts(on_facts[0] if len(on_facts) == 1 else AllOf(tuple(on_facts))))
        return "(" + " AND ".join(sql) + ")"

    def exists(self, rule: EventCondition, present: bool) -> str:
        """Whether the contact has a fact passing ``rule``'s filters in its window (or has none)."""
        where = " AND ".join([_FACT_OF_CONTACT, *_event_filters(self.arg, self.params.today, rule)])
        sql = f"EXISTS (SELECT 1 FROM profile_facts f WHERE {where})"
        return sql if present else f"(NOT {sql})"

    def facts(self, rule: Rule) -> str:
        """``rule`` through the aggregate ``a`` of the contact's facts, which has a row only for a
        contact with facts in its scope. Where the rule's value without facts is known (false, or
        true), a contact without a row needs no row: the test becomes a semi-join (or an
        anti-join on the negated test) that PostgreSQL runs as one hash join of the aggregate
        with the profiles, the tenant pushed into the aggregate from ``p.tenant_id``."""
        without = _without_facts(rule)
        leaves = [c for c in conditions(rule) if isinstance(c, _FACT_CONDITIONS)]
        single = len(leaves) == 1 and not isinstance(leaves[0], RfmCondition)
        if without is None:
            # The value without facts depends on the row (e.g. a tag OR an event): join the
            # aggregate to the contact's own row, so a contact without facts reads zeros.
            agg = _Aggregate(self.params, self.arg, single=single, zero_if_missing=True)
            test = self.node(rule, agg)
            return (
                f"EXISTS (SELECT 1 FROM profiles q LEFT JOIN ({agg.sql()}) a "
                "ON a.tenant_id = q.tenant_id AND a.external_userid = q.external_userid "
                f"WHERE q.tenant_id = p.tenant_id AND q.external_userid = p.external_userid AND {test})"
            )
        agg = _Aggregate(self.params, self.arg, single=single)
        test = self.node(rule, agg)
        if without:
            return f"(NOT EXISTS (SELECT 1 FROM ({agg.sql()}) a WHERE {_OF_CONTACT} AND NOT {test}))"
        return f"EXISTS (SELECT 1 FROM ({agg.sql()}) a WHERE {_OF_CONTACT} AND {test})"

    def node(self, rule: Rule, agg: _Aggregate | None) -> str:
        if isinstance(rule, AllOf):
            return "(" + " AND ".join(self.node(r, agg) for r in rule.rules) + ")"
        if isinstance(rule, AnyOf):
            return "(" + " OR ".join(self.node(r, agg) for r in rule.rules) + ")"
        if isinstance(rule, Not):
            return f"(NOT {self.node(rule.rule, agg)})"
        if isinstance(rule, TagCondition):
            return f"(p.tags @> ARRAY[{self.arg(rule.tag, 'text')}])"
        if isinstance(rule, AttrCondition):
            return self.attr(rule)
        if isinstance(rule, FirstAddedCondition):
            return self.first_added(rule)
        if agg is None:  # predicate() passes no aggregate only to rules without fact conditions
            raise TypeError(f"a fact condition outside the aggregate: {type(rule).__name__}")
        if isinstance(rule, EventCondition):
            return agg.event(rule)
        if isinstance(rule, NoEventCondition):
            return agg.event(rule.as_count())
        if isinstance(rule, RfmCondition):
            return agg.rfm(rule)
        raise TypeError(f"not a rule node: {type(rule).__name__}")

    def attr(self, rule: AttrCondition) -> str:
        if rule.attr == "staff_id":
            # staff_ids is NOT NULL, so both operators are two-valued.
            if rule.op == "in":
                return f"(p.staff_ids && {self.arg(list(rule.values), 'text[]')})"
            follows = f"(p.staff_ids @> ARRAY[{self.arg(rule.values[0], 'text')}])"
            return f"(NOT {follows})" if rule.op == "neq" else follows
        column = _ATTR_COLUMNS[rule.attr]
        cast = "smallint" if rule.attr == "gender" else "text"
        if rule.op == "in":
            return f"coalesce({column} = ANY({self.arg(list(rule.values), cast + '[]')}), false)"
        value = self.arg(rule.values[0], cast)
        if rule.op == "neq":
            return f"({column} IS DISTINCT FROM {value})"  # NULL differs from every value
        return f"coalesce({column} = {value}, false)"

    def first_added(self, rule: FirstAddedCondition) -> str:
        days = f"({self.arg(self.params.today, 'date')} - p.first_added_day)"  # date - date: integer days
        terms = " AND ".join(f"{days} {_OPS[op]} {self.arg(b, 'integer')}" for op, b in rule.days_since.terms)
        return f"coalesce(({terms}), false)"


def _reads_facts(rule: Rule) -> bool:
    return any(isinstance(c, _FACT_CONDITIONS) for c in conditions(rule))


def _event_filters(arg: _Args, today: date, rule: EventCondition, *, lines: bool = True) -> list[str]:
    """The conditions on ``f`` of the facts ``rule`` counts: the event type (orders and refunds
    for an amount), the window, the header filters, and (``lines``) a matching item line."""
    first, last = rule.window.bounds(today)
    if rule.metric == "amount":
        where = [f"f.event_type = ANY({arg(list(_AMOUNT_TYPES), 'text[]')})"]
    else:
        where = [f"f.event_type = {arg(rule.event, 'text')}"]
    where.append(f"f.day BETWEEN {arg(first, 'date')} AND {arg(last, 'date')}")
    for name, values in rule.filters.header():
        where.append(f"{_HEADER_COLUMNS[name]} = ANY({arg(list(values), 'text[]')})")
    if lines and rule.filters.lines():
        # A test per fact, not a join of the lines: an order with three matches counts once.
        where.append(
            f"EXISTS (SELECT 1 FROM profile_fact_lines l WHERE {_LINE_OF_FACT} AND {_line_match(arg, rule)})"
        )
    return where


def _line_match(arg: _Args, rule: EventCondition) -> str:
    """Every line filter of ``rule`` on the same line ``l``."""
    return " AND ".join(
        f"{_LINE_COLUMNS[n]} = ANY({arg(list(v), 'text[]')})" for n, v in rule.filters.lines()
    )


def _existence(rule: Rule) -> tuple[EventCondition, bool] | None:
    """``(condition, True)`` when ``rule`` holds exactly for a contact with at least one fact the
    condition counts, ``(condition, False)`` when exactly for one with none; else ``None``.

    So are a count or distinct-days comparison false on 0 and true on every n >= 1 (``gte`` 1,
    ``gt`` 0) or true on 0 and false on every n >= 1 (``eq`` 0, ``lt`` 1, ``lte`` 0), a
    ``no_event``, and ``not`` of any of them.
    """
    if isinstance(rule, Not):
        inner = _existence(rule.rule)
        return None if inner is None else (inner[0], not inner[1])
    if isinstance(rule, NoEventCondition):
        return rule.as_count(), False
    if not isinstance(rule, EventCondition) or rule.metric == "amount":
        return None
    terms = rule.comparison.terms
    if not rule.comparison.holds(0) and all(
        (op == "gte" and b <= 1) or (op == "gt" and b < 1) for op, b in terms
    ):
        return rule, True
    if rule.comparison.holds(0) and any(
        (op == "eq" and b == 0) or (op == "lt" and b <= 1) or (op == "lte" and b <= 0) for op, b in terms
    ):
        return rule, False
    return None


def _without_facts(rule: Rule) -> bool | None:
    """The rule's value for a contact without any fact, or ``None`` if that depends on the row.

    A measure over no facts is 0 (``DaySeries.total`` of nothing), and a contact without orders
    has no RFM class: the same values the evaluator computes for such a contact.
    """
    if isinstance(rule, AllOf | AnyOf):
        values = [_without_facts(r) for r in rule.rules]
        decisive = isinstance(rule, AnyOf)  # True decides an any, False an all
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(rule, Not):
        value = _without_facts(rule.rule)
        return None if value is None else not value
    if isinstance(rule, EventCondition):
        return rule.comparison.holds(0)
    if isinstance(rule, NoEventCondition):
        return True
    if isinstance(rule, RfmCondition):
        return False
    return None


class _Aggregate:
    """One pass over a tenant's facts grouped by contact (``a``), one column per measure the rule
    reads, so a rule with several fact conditions still reads the facts once.

    Each measure counts the facts that pass its condition (the mirror of ``evaluator._series``),
    and the pass reads only the facts that pass some condition: a contact has a row iff one of its
    facts counts for some measure, so a contact without a row has 0 in every measure and no RFM
    class (``zero_if_missing``: columns read through ``coalesce`` for a LEFT JOIN). With a single
    event condition (``single``) the pass reads only its facts and needs no ``FILTER``, and its
    line filters join the lines directly instead of through a per-fact summary of them.
    """

    def __init__(self, params: SqlParams, arg: _Args, *, single: bool, zero_if_missing: bool = False) -> None:
        self.params = params
        self.arg = arg
        self.single = single
        self.zero_if_missing = zero_if_missing
        self.columns: list[str] = []
        self.scopes: list[str] = []  # the conditions of the measures; the pass reads their union
        self.line_columns: list[str] = []  # per-fact summaries of lines (x), several conditions
        self.line_tests: list[str] = []
        self.line_types: set[str] = set()
        self.join_lines = False  # single amount condition with a line filter: f JOIN l
        self.rfm_columns: tuple[str, str, str] | None = None

    def event(self, rule: EventCondition) -> str:
        """The measure over the window, then the comparison."""
        amount = rule.metric == "amount"
        lines = bool(rule.filters.lines())
        if self.single and not (amount and lines):
            where = _event_filters(self.arg, self.params.today, rule)
        else:
            where = _event_filters(self.arg, self.params.today, rule, lines=False)
        if amount:
            # Only the matching lines' signed amounts: one order's several matches all add.
            value = self._lines(rule, where) if lines else "f.amount"
            measure = self._measure("coalesce(sum({value}){filter}, 0)", value, where, "0")
            cast = "numeric"
        else:
            if lines and not self.single:
                self._lines(rule, where)
            if rule.metric == "distinct_days":
                measure = self._measure("count(DISTINCT {value}){filter}", "f.day", where, "0")
            else:
                measure = self._measure("count({value}){filter}", "*", where, "0")
            cast = "bigint"
        tests = [f"{measure} {_OPS[op]} {self.arg(b, cast)}" for op, b in rule.comparison.terms]
        return "(" + " AND ".join(tests) + ")"

    def rfm(self, rule: RfmCondition) -> str:
        thresholds = self.params.rfm
        if thresholds is None:
            raise MissingRfmThresholds("the rule has an rfm condition: pass the tenant's RFM thresholds")
        today = self.params.today
        if self.rfm_columns is None:
            # A contact is a buyer iff it placed an order from the horizon through today, and the
            # last such day is its last order (``RfmHistory.metrics_at``); F and M count in the
            # window, which lies within the horizon (window_days <= RFM_HORIZON_DAYS).
            types, placed = self.arg(list(_AMOUNT_TYPES), "text[]"), self.arg("order-placed", "text")
            today_arg = self.arg(today, "date")
            horizon = f"f.day BETWEEN {self.arg(today - timedelta(days=RFM_HORIZON_DAYS - 1), 'date')} AND {today_arg}"
            window = f"f.day BETWEEN {self.arg(today - timedelta(days=thresholds.window_days - 1), 'date')} AND {today_arg}"
            self.scopes.append(f"f.event_type = ANY({types}) AND {horizon}")
            self.rfm_columns = (
                self._column(f"max(f.day) FILTER (WHERE f.event_type = {placed} AND {horizon})", None),
                self._column(f"count(*) FILTER (WHERE f.event_type = {placed} AND {window})", "0"),
                self._column(
                    f"coalesce(sum(f.amount) FILTER (WHERE f.event_type = ANY({types}) AND {window}), 0)", "0"
                ),
            )
        last_day, frequency, monetary = self.rfm_columns
        levels = (
            f"{last_day} >= {self.arg(today - timedelta(days=thresholds.recent_within_days), 'date')}",
            f"{frequency} >= {self.arg(thresholds.frequent_min_orders, 'bigint')}",
            f"{monetary} >= {self.arg(thresholds.monetary_min, 'numeric')}",
        )
        tests = [
            lvl if high else f"NOT ({lvl})" for lvl, high in zip(levels, CLASS_LEVELS[rule.rfm], strict=True)
        ]
        # last_day is NULL for a non-buyer: the first term is then false, and false AND NULL is
        # false, so the result is never NULL.
        return "(" + " AND ".join([f"{last_day} IS NOT NULL", *tests]) + ")"

    def sql(self) -> str:
        """The pass's SELECT (after the rule's conditions registered their measures)."""
        source = "profile_facts f"
        if self.join_lines:
            source += f" JOIN profile_fact_lines l ON {_LINE_OF_FACT}"
        if self.line_columns:
            source += (
                f" LEFT JOIN (SELECT l.tenant_id, l.event_type, l.event_key, {', '.join(self.line_columns)} "
                "FROM profile_fact_lines l "
                f"WHERE l.event_type = ANY({self.arg(sorted(self.line_types), 'text[]')}) "
                f"AND ({' OR '.join(self.line_tests)}) GROUP BY l.tenant_id, l.event_type, l.event_key) x "
                "ON x.tenant_id = f.tenant_id AND x.event_type = f.event_type AND x.event_key = f.event_key"
            )
        scope = " OR ".join(f"({s})" for s in self.scopes)
        return (
            f"SELECT f.tenant_id, f.external_userid, {', '.join(self.columns)} FROM {source} "
            f"WHERE {scope} GROUP BY f.tenant_id, f.external_userid"
        )

    def _measure(self, aggregate: str, value: str, where: list[str], zero: str) -> str:
        condition = " AND ".join(where)
        self.scopes.append(condition)
        # With a single condition the pass reads only its facts: no FILTER needed.
        filtered = "" if self.single else f" FILTER (WHERE {condition})"
        return self._column(aggregate.format(value=value, filter=filtered), zero)

    def _column(self, expr: str, zero: str | None) -> str:
        name = f"m{len(self.columns)}"
        self.columns.append(f"{expr} AS {name}")
        if self.zero_if_missing and zero is not None:
            return f"coalesce(a.{name}, {zero})"
        return f"a.{name}"

    def _lines(self, rule: EventCondition, where: list[str]) -> str:
        """Add to ``where`` that the fact has a line matching ``rule``'s line filters; returns the
        value an amount sums: the matching lines' amounts."""
        match = _line_match(self.arg, rule)
        if self.single:  # an amount: join the matching lines
            self.join_lines = True
            where.append(match)
            return "l.amount"
        # Several conditions: one summary row per fact of its lines (x.lN: the matching lines'
        # amount, or whether there is one; NULL for a fact without a matching line).
        amount = rule.metric == "amount"
        name = f"l{len(self.line_columns)}"
        self.line_columns.append(
            f"sum(l.amount) FILTER (WHERE {match}) AS {name}" if amount else f"bool_or({match}) AS {name}"
        )
        self.line_tests.append(f"({match})")
        self.line_types.update(_AMOUNT_TYPES if amount else (rule.event,))
        where.append(f"x.{name} IS NOT NULL" if amount else f"x.{name}")
        return f"x.{name}"


def _rfm_metrics_select(arg: _Args, today: date, window_days: int, scope: str, group: str = "") -> str:
    """last_day / frequency / monetary of a contact's orders and refunds (see ``RfmHistory``)."""
    placed = arg("order-placed", "text")
    today_arg = arg(today, "date")
    window_first = arg(today - timedelta(days=window_days - 1), "date")
    in_window = f"f.day BETWEEN {window_first} AND {today_arg}"
    return (
        f"SELECT {group + ', ' if group else ''}"
        f"max(f.day) FILTER (WHERE f.event_type = {placed} AND f.day <= {today_arg}) AS last_day, "
        f"count(*) FILTER (WHERE f.event_type = {placed} AND {in_window}) AS frequency, "
        f"coalesce(sum(f.amount) FILTER (WHERE {in_window}), 0) AS monetary "
        f"FROM profile_facts f WHERE {scope} AND f.event_type = ANY({arg(list(_AMOUNT_TYPES), 'text[]')})"
        f"{' GROUP BY ' + group if group else ''}"
    )


def _buyers_cte(arg: _Args, tenant_id: str, today: date, window_days: int) -> str:
    """Per-buyer R, F and M of one tenant (the population the medians and class counts use)."""
    scope = f"f.tenant_id = {arg(tenant_id, 'text')}"
    metrics = _rfm_metrics_select(arg, today, window_days, scope, group="f.external_userid")
    horizon = arg(today - timedelta(days=RFM_HORIZON_DAYS - 1), "date")
    return (
        f"WITH m AS ({metrics}), "
        f"buyers AS (SELECT external_userid, ({arg(today, 'date')} - last_day) AS recency_days, "
        f"frequency, monetary FROM m WHERE last_day >= {horizon})"
    )


def rfm_medians_query(tenant_id: str, today: date, window_days: int = 365) -> CompiledSql:
    """One row: ``buyers`` and the lower medians ``recency_median``, ``frequency_median``,
    ``monetary_median`` (``percentile_disc(0.5)``, = ``statistics.median_low``) of a tenant."""
    arg = _Args(1)
    cte = _buyers_cte(arg, tenant_id, today, window_days)
    sql = (
        f"{cte} SELECT count(*) AS buyers, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY recency_days) AS recency_median, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY frequency) AS frequency_median, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY monetary) AS monetary_median FROM buyers"
    )
    return CompiledSql(sql, tuple(arg.values))


def thresholds_from_medians_row(
    row: Mapping[str, Any], window_days: int = 365, fallback: RfmThresholds = DEFAULT_RFM_THRESHOLDS
) -> RfmThresholds:
    """Default thresholds from a :func:`rfm_medians_query` row (like ``rfm.derive_thresholds``)."""
    if not row["buyers"]:
        return RfmThresholds(
            fallback.recent_within_days, fallback.frequent_min_orders, fallback.monetary_min, window_days
        )
    return thresholds_from_medians(
        int(row["recency_median"]), int(row["frequency_median"]), Decimal(row["monetary_median"]), window_days
    )


def rfm_class_counts_query(tenant_id: str, today: date, thresholds: RfmThresholds) -> CompiledSql:
    """Rows ``(rfm_class, contacts)`` for the classes that have buyers (facts' contacts)."""
    arg = _Args(1)
    cte = _buyers_cte(arg, tenant_id, today, thresholds.window_days)
    recent = f"recency_days <= {arg(thresholds.recent_within_days, 'integer')}"
    frequent = f"frequency >= {arg(thresholds.frequent_min_orders, 'bigint')}"
    valuable = f"monetary >= {arg(thresholds.monetary_min, 'numeric')}"
    cases = " ".join(
        f"WHEN {' AND '.join(c if high else f'NOT ({c})' for c, high in zip((recent, frequent, valuable), CLASS_LEVELS[name], strict=True))} "
        f"THEN {arg(name, 'text')}"
        for name in RFM_CLASSES
    )
    sql = (
        f"{cte} SELECT CASE {cases} END AS rfm_class, count(*) AS contacts FROM buyers GROUP BY 1 ORDER BY 1"
    )
    return CompiledSql(sql, tuple(arg.values))


# ---------------------------------------------------------------------------------------------
# Writing profiles (the processor's upserts and the tests' fixtures)
# ---------------------------------------------------------------------------------------------

UPSERT_PROFILE = """
INSERT INTO profiles (tenant_id, external_userid, state, store_id, staff_ids, gender, status,
                      first_added_at, first_added_day, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (tenant_id, external_userid) DO UPDATE SET
    state = EXCLUDED.state, store_id = EXCLUDED.store_id, staff_ids = EXCLUDED.staff_ids,
    gender = EXCLUDED.gender, status = EXCLUDED.status, first_added_at = EXCLUDED.first_added_at,
    first_added_day = EXCLUDED.first_added_day, tags = EXCLUDED.tags, updated_at = now()
"""

# A fact is immutable once recorded: its natural key makes a redelivered or re-sent event a no-op.
INSERT_FACT = """
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, channel, store_id,
                           state, kind, campaign_id, amount)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant_id, event_type, event_key) DO NOTHING
"""

INSERT_FACT_LINE = """
INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, category, sku, amount)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, event_type, event_key, line_no) DO NOTHING
"""


def profile_args(profile: Profile) -> tuple[Any, ...]:
    """Arguments of :data:`UPSERT_PROFILE` for ``profile`` (sorted arrays: stable rows)."""
    return (
        profile.tenant_id,
        profile.external_userid,
        profile.state,
        profile.store_id,
        sorted(profile.staff_ids),
        profile.gender,
        profile.status,
        profile.first_added_at,
        profile.first_added_day,
        sorted(profile.tags),
    )


def fact_args(profile: Profile) -> list[tuple[Any, ...]]:
    """Arguments of :data:`INSERT_FACT`, one tuple per fact of ``profile``."""
    return [
        (
            profile.tenant_id,
            f.event_type,
            f.key,
            profile.external_userid,
            f.day,
            f.channel,
            f.store_id,
            f.state,
            f.kind,
            f.campaign_id,
            f.amount,
        )
        for f in profile.facts
    ]


def fact_line_args(profile: Profile) -> list[tuple[Any, ...]]:
    """Arguments of :data:`INSERT_FACT_LINE`, one tuple per line (numbered from 0 per fact)."""
    return [
        (profile.tenant_id, f.event_type, f.key, n, line.category, line.sku, line.amount)
        for f in profile.facts
        for n, line in enumerate(f.lines)
    ]
