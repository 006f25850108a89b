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
    sql = _Compiler(params, args).node(rule)
    return CompiledSql(sql, tuple(args.values))


class _Args:
    def __init__(self, first: int) -> None:
        self.first = first
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{cast}"


_OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "="}
_OF_CONTACT = "f.tenant_id = p.tenant_id AND f.external_userid = p.external_userid"
_LINE_OF_FACT = "l.tenant_id = f.tenant_id AND l.event_type = f.event_type AND l.event_key = f.event_key"
_AMOUNT_TYPES = ["order-placed", "order-refunded"]
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


class _Compiler:
    def __init__(self, params: SqlParams, args: _Args) -> None:
        self.params = params
        self.arg = args

    def node(self, rule: Rule) -> str:
        if isinstance(rule, AllOf):
            return "(" + " AND ".join(self.node(r) for r in rule.rules) + ")"
        if isinstance(rule, AnyOf):
            return "(" + " OR ".join(self.node(r) for r in rule.rules) + ")"
        if isinstance(rule, Not):
            return f"(NOT {self.node(rule.rule)})"
        if isinstance(rule, TagCondition):
            return f"(p.tags @> ARRAY[{self.arg(rule.tag, 'text')}])"
        if isinstance(rule, AttrCondition):
            return self.attr(rule)
        if isinstance(rule, FirstAddedCondition):
            return self.first_added(rule)
        if isinstance(rule, EventCondition):
            return self.windowed(rule)
        if isinstance(rule, NoEventCondition):
            return self.windowed(rule.as_count())
        if isinstance(rule, RfmCondition):
            return self.rfm(rule)
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

    def windowed(self, rule: EventCondition) -> str:
        """Mirror of ``evaluator._series``: the measure over the window, then the comparison."""
        first, last = rule.window.bounds(self.params.today)
        where = [_OF_CONTACT, f"f.day BETWEEN {self.arg(first, 'date')} AND {self.arg(last, 'date')}"]
        for name, values in rule.filters.header():
            where.append(f"{_HEADER_COLUMNS[name]} = ANY({self.arg(list(values), 'text[]')})")
        lines = [f"{_LINE_COLUMNS[n]} = ANY({self.arg(list(v), 'text[]')})" for n, v in rule.filters.lines()]
        source = "profile_facts f"
        if rule.metric == "amount":
            where.append(f"f.event_type = ANY({self.arg(_AMOUNT_TYPES, 'text[]')})")
            if lines:
                # Only the matching lines' signed amounts; one order's several matches all add.
                source = f"profile_facts f JOIN profile_fact_lines l ON {_LINE_OF_FACT}"
                where.extend(lines)
                measure = "coalesce(sum(l.amount), 0)"
            else:
                measure = "coalesce(sum(f.amount), 0)"
            cast = "numeric"
        else:
            where.append(f"f.event_type = {self.arg(rule.event, 'text')}")
            if lines:
                # EXISTS, not a join: an order with three matching lines counts once.
                where.append(
                    f"EXISTS (SELECT 1 FROM profile_fact_lines l WHERE {_LINE_OF_FACT} AND {' AND '.join(lines)})"
                )
            measure = "count(DISTINCT f.day)" if rule.metric == "distinct_days" else "count(*)"
            cast = "bigint"
        test = " AND ".join(f"s.v {_OPS[op]} {self.arg(b, cast)}" for op, b in rule.comparison.terms)
        # An aggregate without GROUP BY yields exactly one row, so the scalar subquery is never NULL.
        return f"(SELECT {test} FROM (SELECT {measure} AS v FROM {source} WHERE {' AND '.join(where)}) s)"

    def rfm(self, rule: RfmCondition) -> str:
        thresholds = self.params.rfm
        if thresholds is None:
            raise MissingRfmThresholds("the rule has an rfm condition: pass the tenant's RFM thresholds")
        today = self.params.today
        r_high, f_high, m_high = CLASS_LEVELS[rule.rfm]
        metrics = _rfm_metrics_select(self.arg, today, thresholds.window_days, _OF_CONTACT)
        buyer = f"s.last_day >= {self.arg(today - timedelta(days=RFM_HORIZON_DAYS - 1), 'date')}"
        recent = f"s.last_day >= {self.arg(today - timedelta(days=thresholds.recent_within_days), 'date')}"
        frequent = f"s.frequency >= {self.arg(thresholds.frequent_min_orders, 'bigint')}"
        valuable = f"s.monetary >= {self.arg(thresholds.monetary_min, 'numeric')}"
        levels = [
            lvl if high else f"NOT ({lvl})"
            for lvl, high in ((recent, r_high), (frequent, f_high), (valuable, m_high))
        ]
        # last_day is NULL for a non-buyer: the first two terms are then false, and false AND NULL
        # is false, so the result is never NULL.
        test = " AND ".join(["s.last_day IS NOT NULL", buyer, *levels])
        return f"(SELECT {test} FROM ({metrics}) s)"


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
        f"FROM profile_facts f WHERE {scope} AND f.event_type = ANY({arg(_AMOUNT_TYPES, 'text[]')})"
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
