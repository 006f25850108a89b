"""``compile_sql``: a rule as a boolean SQL predicate over one ``profiles p`` row (see the package
docstring for the forms it takes)."""

# SQL text from fixed fragments and identifiers picked from maps; values are $n arguments.
# ruff: noqa: S608

from __future__ import annotations

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
from tag_svc.segments.sql.aggregate import Aggregate
from tag_svc.segments.sql.params import OPS, Args, CompiledSql, SqlParams
from tag_svc.segments.sql.sources import contact_range, event_rows

__all__ = ["compile_sql"]

_OF_CONTACT = "a.tenant_id = p.tenant_id AND a.external_userid = p.external_userid"
# Column names come from this map, never from rule text.
_ATTR_COLUMNS = {"state": "p.state", "store_id": "p.store_id", "gender": "p.gender", "status": "p.status"}
_FACT_CONDITIONS = (EventCondition, NoEventCondition, RfmCondition)


def compile_sql(rule: Rule, params: SqlParams, *, first_arg: int = 1) -> CompiledSql:
    """A boolean SQL predicate over ``profiles p`` meaning what ``evaluate`` means.

    ``first_arg`` is the number of the first placeholder, so callers can put their own arguments
    (tenant id, cursor, limit) first.
    """
    args = Args(first_arg)
    sql = _Compiler(params, args).predicate(rule)
    return CompiledSql(sql, tuple(args.values))


class _Compiler:
    def __init__(self, params: SqlParams, args: Args) -> None:
        self.params = params
        self.arg = args

    def predicate(self, rule: Rule) -> str:
        """The conjuncts at the top, each in its cheapest exact form: a condition on the row as it
        is; "has such an event" / "has none" as a correlated EXISTS / NOT EXISTS over the rows the
        condition counts (PostgreSQL runs it as a semi- or anti-join, with no grouping); the other
        fact conditions together through one per-contact aggregate (:meth:`facts`)."""
        parts = rule.rules if isinstance(rule, AllOf) else (rule,)
        sql, on_facts = contact_range(self.arg, "p", self.params), []
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
        """Whether the contact has a fact passing ``rule``'s filters in its window (or has none):
        with a line filter, a matching line of such a fact."""
        rows = event_rows(self.arg, self.params, rule)
        a = rows.alias
        where = " AND ".join(
            [f"{a}.tenant_id = p.tenant_id AND {a}.external_userid = p.external_userid", *rows.where]
        )
        sql = f"EXISTS (SELECT 1 FROM {rows.source} WHERE {where})"
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
            agg = Aggregate(self.params, self.arg, single=single, zero_if_missing=True)
            test = self.node(rule, agg)
            return (
                f"EXISTS (SELECT 1 FROM profiles q LEFT JOIN ({agg.sql()}) a "
                "ON a.tenant_id = q.tenant_id AND a.external_userid = q.external_userid "
                f"WHERE q.tenant_id = p.tenant_id AND q.external_userid = p.external_userid AND {test})"
            )
        agg = Aggregate(self.params, self.arg, single=single)
        test = self.node(rule, agg)
        if without:
            return f"(NOT EXISTS (SELECT 1 FROM ({agg.sql()}) a WHERE {_OF_CONTACT} AND NOT {test}))"
        return f"EXISTS (SELECT 1 FROM ({agg.sql()}) a WHERE {_OF_CONTACT} AND {test})"

    def node(self, rule: Rule, agg: Aggregate | None) -> str:
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
        terms = " AND ".join(f"{days} {OPS[op]} {self.arg(b, 'integer')}" for op, b in rule.days_since.terms)
        return f"coalesce(({terms}), false)"


def _reads_facts(rule: Rule) -> bool:
    return any(isinstance(c, _FACT_CONDITIONS) for c in conditions(rule))


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
