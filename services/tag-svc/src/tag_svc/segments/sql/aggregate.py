"""The per-contact pass: one aggregate over a tenant's facts, grouped by contact, one column per
measure a rule reads (see the package docstring for where it is used)."""

# SQL text from fixed fragments and identifiers picked from maps; values are $n arguments.
# ruff: noqa: S608

from __future__ import annotations

from datetime import timedelta

from tag_svc.segments.rfm import CLASS_LEVELS, RFM_HORIZON_DAYS, MissingRfmThresholds
from tag_svc.segments.rules import EventCondition, RfmCondition
from tag_svc.segments.sql.params import AMOUNT_TYPES, OPS, Args, SqlParams
from tag_svc.segments.sql.sources import contact_range, event_rows, fact_filters, line_test

__all__ = ["Aggregate"]


class Aggregate:
    """One pass over a tenant's facts grouped by contact (``a``), one column per measure the rule
    reads, so a rule with several fact conditions still reads the facts once.

    Each measure counts the facts that pass its condition (the mirror of ``evaluator._series``),
    and the pass reads only the facts that pass some condition: a contact has a row iff one of its
    facts counts for some measure, so a contact without a row has 0 in every measure and no RFM
    class (``zero_if_missing``: columns read through ``coalesce`` for a LEFT JOIN).

    With a single event condition (``single``) the pass reads only that condition's rows
    (:func:`.sources.event_rows`) and needs no ``FILTER``: with a line filter, the matching lines
    of its window, grouped by their own contact. With several, it reads the facts once, and each
    line-filtered measure reads a per-fact summary of the lines in its window (``x``).
    """

    def __init__(self, params: SqlParams, arg: Args, *, single: bool, zero_if_missing: bool = False) -> None:
        self.params = params
        self.arg = arg
        self.single = single
        self.zero_if_missing = zero_if_missing
        self.source = "profile_facts f"
        self.alias = "f"  # whose tenant_id and external_userid the pass groups by
        self.columns: list[str] = []  # the measures' expressions (column mN is columns[N])
        self.alone: dict[int, str] = {}  # cheaper forms of columns, when theirs is the only scope
        self.scopes: list[str] = []  # the conditions of the measures; the pass reads their union
        self.line_columns: list[str] = []  # per-fact summaries of lines (x), several conditions
        self.line_tests: list[str] = []
        self.rfm_columns: tuple[str, str, str] | None = None

    def event(self, rule: EventCondition) -> str:
        """The measure over the window, then the comparison."""
        measure = self._single(rule) if self.single else self._filtered(rule)
        cast = "numeric" if rule.metric == "amount" else "bigint"
        tests = [f"{measure} {OPS[op]} {self.arg(b, cast)}" for op, b in rule.comparison.terms]
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
            types, placed = self.arg(list(AMOUNT_TYPES), "text[]"), self.arg("order-placed", "text")
            today_arg = self.arg(today, "date")
            horizon = f"f.day BETWEEN {self.arg(today - timedelta(days=RFM_HORIZON_DAYS - 1), 'date')} AND {today_arg}"
            window_first = self.arg(today - timedelta(days=thresholds.window_days - 1), "date")
            window = f"f.day BETWEEN {window_first} AND {today_arg}"
            self.scopes.append(
                " AND ".join(
                    [f"f.event_type = ANY({types})", horizon, *contact_range(self.arg, "f", self.params)]
                )
            )
            # Alone in the pass, every row it reads is an order or a refund of the horizon, which
            # ends today: the filters keep only what that does not imply (measured: a fifth less
            # time for the aggregate over 3M orders and refunds).
            self.rfm_columns = (
                self._column(
                    f"max(f.day) FILTER (WHERE f.event_type = {placed} AND {horizon})",
                    None,
                    alone=f"max(f.day) FILTER (WHERE f.event_type = {placed})",
                ),
                self._column(
                    f"count(*) FILTER (WHERE f.event_type = {placed} AND {window})",
                    "0",
                    alone=f"count(*) FILTER (WHERE f.event_type = {placed} AND f.day >= {window_first})",
                ),
                self._column(
                    f"coalesce(sum(f.amount) FILTER (WHERE f.event_type = ANY({types}) AND {window}), 0)",
                    "0",
                    alone=f"coalesce(sum(f.amount) FILTER (WHERE f.day >= {window_first}), 0)",
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
        source = self.source
        if self.line_columns:
            source += (
                f" LEFT JOIN (SELECT l.tenant_id, l.event_type, l.event_key, {', '.join(self.line_columns)} "
                f"FROM profile_fact_lines l WHERE {' OR '.join(self.line_tests)} "
                "GROUP BY l.tenant_id, l.event_type, l.event_key) x "
                "ON x.tenant_id = f.tenant_id AND x.event_type = f.event_type AND x.event_key = f.event_key"
            )
        scope = " OR ".join(f"({s})" for s in self.scopes)
        alone = len(self.scopes) == 1
        columns = ", ".join(
            f"{self.alone.get(n, expr) if alone else expr} AS m{n}" for n, expr in enumerate(self.columns)
        )
        a = self.alias
        return (
            f"SELECT {a}.tenant_id, {a}.external_userid, {columns} FROM {source} "
            f"WHERE {scope} GROUP BY {a}.tenant_id, {a}.external_userid"
        )

    def _single(self, rule: EventCondition) -> str:
        """The only measure of the pass: the pass reads the condition's own rows."""
        rows = event_rows(self.arg, self.params, rule)
        self.source, self.alias = rows.source, rows.alias
        self.scopes.append(" AND ".join(rows.where))
        a = rows.alias
        if rule.metric == "amount":
            expr = f"coalesce(sum({a}.amount), 0)"  # per line: the matching lines' amounts
        elif rule.metric == "distinct_days":
            expr = f"count(DISTINCT {a}.day)"
        elif rows.per_line:
            expr = "count(DISTINCT l.event_key)"  # an order counts once, however many lines match
        else:
            expr = "count(*)"
        return self._column(expr, "0")

    def _filtered(self, rule: EventCondition) -> str:
        """One measure among several over the facts: each aggregates its own facts (``FILTER``)."""
        where = fact_filters(self.arg, self.params, rule)
        amount = rule.metric == "amount"
        value = "f.amount"
        if rule.filters.lines():
            value = self._lines(rule, where)
        if amount:
            expr = "coalesce(sum({value}) FILTER (WHERE {condition}), 0)"
        elif rule.metric == "distinct_days":
            expr = "count(DISTINCT f.day) FILTER (WHERE {condition})"
        else:
            expr = "count(*) FILTER (WHERE {condition})"
        condition = " AND ".join(where)
        self.scopes.append(condition)
        return self._column(expr.format(value=value, condition=condition), "0")

    def _column(self, expr: str, zero: str | None, *, alone: str | None = None) -> str:
        """A new column ``expr`` (or ``alone``, the same value when the pass reads only the
        column's own scope); returns how the test reads it."""
        name = f"m{len(self.columns)}"
        if alone is not None:
            self.alone[len(self.columns)] = alone
        self.columns.append(expr)
        if self.zero_if_missing and zero is not None:
            return f"coalesce(a.{name}, {zero})"
        return f"a.{name}"

    def _lines(self, rule: EventCondition, where: list[str]) -> str:
        """Add to ``where`` that the fact has a line matching ``rule``'s line filters; returns the
        value an amount sums: the matching lines' amounts.

        One summary row per fact of its lines in the windows of the line-filtered measures (x.lN:
        the matching lines' amount, or whether there is one; NULL for a fact without a matching
        line). A line has its fact's type and day, so the test on its window reads only the
        lines of the facts the measure can count."""
        test = "(" + " AND ".join(line_test(self.arg, self.params, rule)) + ")"
        name = f"l{len(self.line_columns)}"
        if rule.metric == "amount":
            self.line_columns.append(f"sum(l.amount) FILTER (WHERE {test}) AS {name}")
            where.append(f"x.{name} IS NOT NULL")
        else:
            self.line_columns.append(f"bool_or({test}) AS {name}")
            where.append(f"x.{name}")
        self.line_tests.append(test)
        return f"x.{name}"
