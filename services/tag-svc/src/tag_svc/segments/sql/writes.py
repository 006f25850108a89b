"""The statements that write profile rows, one row per statement, with their arguments from a
:class:`Profile` (the tests' fixtures; the processor writes the same rows in batches, see
``processor.store.profiles``)."""

from __future__ import annotations

import json
from typing import Any

from tag_svc.segments.profile import Fact, Profile

__all__ = [
    "INSERT_FACT",
    "INSERT_FACT_LINE",
    "UPSERT_PROFILE",
    "fact_args",
    "fact_columns",
    "fact_line_args",
    "profile_args",
]

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
                           state, kind, campaign_id, amount, lines)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb)
ON CONFLICT (tenant_id, event_type, event_key) DO NOTHING
"""

# A line carries its fact's contact and day (migration 0007).
INSERT_FACT_LINE = """
INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, external_userid, day, category,
                                sku, amount)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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


def fact_columns(external_userid: str, f: Fact) -> tuple[Any, ...]:
    """A fact's columns after ``tenant_id``, in :data:`INSERT_FACT`'s order (the processor's
    batch insert takes the same columns as arrays)."""
    return (
        f.event_type,
        f.key,
        external_userid,
        f.day,
        f.channel,
        f.store_id,
        f.state,
        f.kind,
        f.campaign_id,
        f.amount,
        lines_json(f),
    )


def lines_json(f: Fact) -> str:
    """The fact's item lines as ``profile_facts.lines`` holds them (migration 0012)."""
    return json.dumps([[line.category, line.sku, str(line.amount)] for line in f.lines], ensure_ascii=False)


def fact_args(profile: Profile) -> list[tuple[Any, ...]]:
    """Arguments of :data:`INSERT_FACT`, one tuple per fact of ``profile``."""
    return [(profile.tenant_id, *fact_columns(profile.external_userid, f)) for f in profile.facts]


def fact_line_args(profile: Profile) -> list[tuple[Any, ...]]:
    """Arguments of :data:`INSERT_FACT_LINE`, one tuple per line (numbered from 0 per fact)."""
    return [
        (
            profile.tenant_id,
            f.event_type,
            f.key,
            n,
            profile.external_userid,
            f.day,
            line.category,
            line.sku,
            line.amount,
        )
        for f in profile.facts
        for n, line in enumerate(f.lines)
    ]
