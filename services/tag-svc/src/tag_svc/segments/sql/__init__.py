"""The SQL engine: compile a rule to a parameterised predicate over the profile tables.

``compile_sql(rule, SqlParams(today=...))`` returns ``(sql, args)``: a boolean expression over
one row ``p`` of ``profiles`` that holds exactly when ``evaluate(rule, profile, today)`` does,
for previews, backfills and audits::

    pred = compile_sql(rule, SqlParams(today=today, rfm=thresholds), first_arg=2)
    SELECT p.external_userid FROM profiles p WHERE p.tenant_id = $1 AND ({pred.sql})

Every value travels as a ``$n`` argument with an explicit cast; the text holds only identifiers
and operators chosen from the validated rule, never a value. Every sub-expression is two-valued
(never NULL), so ``NOT`` means the same as Python's ``not``. Window days are computed here, in
Python, by the same :meth:`Window.bounds` the evaluator uses, and compared with the stored
``day`` of each fact (and of each item line, which carries its fact's day and contact: migration
0007): no timezone arithmetic happens in SQL.

The predicate is built to be run over many profiles at once (a preview counts a tenant's 1M):

- conditions on the row (attributes, tags, first added) are plain expressions on ``p``;
- "has such an event in the window" (``count >= 1``) and "has none" (``no_event``,
  ``count = 0``), alone or as a conjunct at the top, are a correlated ``EXISTS`` /
  ``NOT EXISTS``: PostgreSQL runs them as one semi- or anti-join with the facts;
- every other fact condition (counts, amounts, distinct days, RFM) reads one aggregate of the
  contact's facts: one pass over the facts the conditions count, grouped by contact, a column per
  measure. The rule's value for a contact without facts is known in Python (every measure 0, no
  RFM class), so the test is ``EXISTS`` (that value is false), ``NOT EXISTS ... NOT`` (true) or,
  where it depends on the row, a LEFT JOIN of the aggregate to the contact's own row;
- a condition with a ``category`` / ``sku`` filter reads the matching item lines of its window
  (their own index, migration 0007), joined to their facts only when it also filters on the
  order's channel or store (:mod:`.sources`).

Every one of those is tenant-scoped by ``p.tenant_id`` (the correlation), and PostgreSQL pushes
the caller's ``p.tenant_id = $1`` into the scans of the facts and lines. Placed as a conjunct of a
WHERE clause, as previews do, the sub-queries become joins (one pass over the facts); anywhere
else (a SELECT list, under OR) they stay correct but run per row.

Modules: :mod:`.compiler` (the predicate), :mod:`.sources` (what a fact condition counts),
:mod:`.aggregate` (the per-contact pass), :mod:`.rfm_queries` (a tenant's RFM distribution),
:mod:`.writes` (the statements that write profile rows, shared by the processor and the tests).
"""

from tag_svc.segments.sql.compiler import compile_sql
from tag_svc.segments.sql.params import CompiledSql, ContactRange, SqlParams
from tag_svc.segments.sql.rfm_queries import (
    rfm_class_counts_query,
    rfm_medians_query,
    thresholds_from_medians_row,
)
from tag_svc.segments.sql.writes import (
    INSERT_FACT,
    INSERT_FACT_LINE,
    UPSERT_PROFILE,
    fact_args,
    fact_columns,
    fact_line_args,
    profile_args,
)

__all__ = [
    "INSERT_FACT",
    "INSERT_FACT_LINE",
    "UPSERT_PROFILE",
    "CompiledSql",
    "ContactRange",
    "SqlParams",
    "compile_sql",
    "fact_args",
    "fact_columns",
    "fact_line_args",
    "profile_args",
    "rfm_class_counts_query",
    "rfm_medians_query",
    "thresholds_from_medians_row",
]
