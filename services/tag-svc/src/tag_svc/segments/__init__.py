"""Segments (用户分层): the rule language, the behaviour profile, and two engines with one meaning.

- :func:`parse_rule` JSON -> typed :data:`Rule`, or :class:`InvalidRule` with a JSON path per fault;
- :class:`Profile` / :class:`Fact`: one contact's attributes and day-bucketed behaviour facts;
- :func:`evaluate` / :func:`next_change`: the in-memory engine (the live processor);
- :func:`compile_sql`: the same rule as a SQL predicate over ``profiles p`` (previews, backfills);
- :mod:`.rfm`: the 8 RFM classes and per-tenant thresholds.

Pure domain: no I/O here; the SQL engine only *builds* statements. See docs/segments.md.
"""

from tag_svc.segments.evaluator import evaluate, next_change, uses_rfm
from tag_svc.segments.parser import InvalidRule, RuleError, parse_rule, rule_errors
from tag_svc.segments.profile import (
    DEFAULT_TZ,
    Fact,
    FactLine,
    Profile,
    day_in,
    friend_added_fact,
    message_sent_fact,
    order_placed_fact,
    order_refunded_fact,
)
from tag_svc.segments.rfm import (
    DEFAULT_RFM_THRESHOLDS,
    RFM_CLASSES,
    MissingRfmThresholds,
    RfmClass,
    RfmMetrics,
    RfmThresholds,
    classify,
    derive_thresholds,
)
from tag_svc.segments.rules import Rule
from tag_svc.segments.sql import CompiledSql, ContactRange, SqlParams, compile_sql

__all__ = [
    "DEFAULT_RFM_THRESHOLDS",
    "DEFAULT_TZ",
    "RFM_CLASSES",
    "CompiledSql",
    "ContactRange",
    "Fact",
    "FactLine",
    "InvalidRule",
    "MissingRfmThresholds",
    "Profile",
    "RfmClass",
    "RfmMetrics",
    "RfmThresholds",
    "Rule",
    "RuleError",
    "SqlParams",
    "classify",
    "compile_sql",
    "day_in",
    "derive_thresholds",
    "evaluate",
    "friend_added_fact",
    "message_sent_fact",
    "next_change",
    "order_placed_fact",
    "order_refunded_fact",
    "parse_rule",
    "rule_errors",
    "uses_rfm",
]
