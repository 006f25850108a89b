"""What every statement of the SQL engine is built with: its inputs, its result, and the
placeholders its values travel in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from tag_svc.segments.rfm import RfmThresholds

__all__ = ["AMOUNT_TYPES", "OPS", "Args", "CompiledSql", "ContactRange", "SqlParams"]

OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "="}
"""The comparison operators of the rule language, as SQL."""

AMOUNT_TYPES = ("order-placed", "order-refunded")
"""The facts an amount sums (refunds are negative)."""


class ContactRange(NamedTuple):
    """The contacts whose ``external_userid`` lies in ``[first, end)`` (``None``: unbounded)."""

    first: str | None
    end: str | None


@dataclass(frozen=True, slots=True)
class SqlParams:
    """What a predicate needs besides the rule: the tenant's today, and its RFM thresholds.

    ``contacts``: only contacts in this key range can match, and every scan of facts and lines
    reads only theirs (a preview splits a tenant into ranges counted side by side).
    """

    today: date
    rfm: RfmThresholds | None = None
    contacts: ContactRange | None = None


class CompiledSql(NamedTuple):
    """SQL text with ``$n`` placeholders and the arguments for them, in order."""

    sql: str
    args: tuple[Any, ...]


class Args:
    """The arguments of one statement: ``arg(value, cast)`` records ``value`` and returns its
    placeholder (``$n::cast``), numbered from ``first``."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{cast}"
