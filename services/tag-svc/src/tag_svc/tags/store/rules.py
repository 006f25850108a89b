"""SQL of tag rules (``tag_rules``) and what applying them reads: segment memberships, and the
``contact_tags`` rows a rule set (``tagged_by = 'rule'``, ``actor_id`` = the rule's segment_id).

Lock order, the same for every writer, so they wait for each other but never deadlock:

- creating a rule: the segment row (``FOR SHARE``), the tag (``FOR SHARE``), then the tenant's
  rule-graph lock (an advisory lock that serialises the cycle check with other rule creations and
  segment rule edits: two changes that are each acyclic may close a cycle together);
- applying a new rule to the segment's members: the segment row (``FOR SHARE``: the processor's
  membership writers lock it ``FOR NO KEY UPDATE``, so membership cannot move under a chunk),
  the tag (``FOR SHARE``), the rule (``FOR UPDATE``), then ``contact_tags``;
- the worker: the rules of its segments (``FOR SHARE``), their tags, then ``contact_tags``;
- deleting a rule: the rule (``FOR UPDATE``); removing its tags: the pair's rule, if one was
  created again (``FOR SHARE``), the tag, then ``contact_tags``.

Segment and tag rows come before rule rows: deleting a segment (or dropping a purged tag) locks
its row and then, by the cascade, its rules. Share locks of the worker and of a chunk on the
same rows never wait for each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tag_svc.tags.rules.model import SegmentRule
from tag_svc.tags.store import Conn, Executor

__all__ = [
    "LockedRule",
    "OwnedTag",
    "RuleRow",
    "advance_apply",
    "delete_rule",
    "get_rule",
    "get_rule_by_pair",
    "graph_rules",
    "graph_segments",
    "insert_rule",
    "list_rules",
    "lock_owned_tags",
    "lock_rule",
    "lock_rule_graph",
    "lock_rules_of_segments",
    "lock_segment",
    "members_after",
    "members_of",
    "owned_by",
    "pair_has_rule",
    "rule_pair",
    "transfer_owned_tags",
]

# The key is derived from the tenant inside the schema's own database objects; a collision
# between two tenants only makes them wait for each other.
LOCK_RULE_GRAPH = "SELECT pg_advisory_xact_lock(hashtextextended('tag-svc:tag-rule-graph:' || $1, 0))"

# A rule as the API shows it; a rule whose tag was deleted is gone for readers (it does nothing
# and goes with the tag row when the purge job drops it).
_RULE = """
SELECT r.rule_id, r.segment_id, s.name AS segment_name, r.tag_id, t.name AS tag_name,
       g.name AS group_name, r.remove_on_exit, r.status, r.applied, r.created_at, r.created_by
FROM tag_rules r
JOIN segments s ON s.tenant_id = r.tenant_id AND s.segment_id = r.segment_id
JOIN tags t ON t.tenant_id = r.tenant_id AND t.tag_id = r.tag_id
JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.group_id = t.group_id
WHERE r.tenant_id = $1 AND t.deleted_at IS NULL
"""
SELECT_RULE = _RULE + " AND r.rule_id = $2"
SELECT_RULE_BY_PAIR = _RULE + " AND r.segment_id = $2 AND r.tag_id = $3"
SELECT_RULES = _RULE + " AND ($2::uuid IS NULL OR r.segment_id = $2) ORDER BY r.created_at, r.rule_id"

INSERT_RULE = """
INSERT INTO tag_rules (tenant_id, rule_id, segment_id, tag_id, remove_on_exit, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, segment_id, tag_id) DO NOTHING
RETURNING rule_id
"""

LOCK_SEGMENT = "SELECT segment_id FROM segments WHERE tenant_id = $1 AND segment_id = $2 FOR SHARE"

SELECT_RULE_PAIR = "SELECT segment_id, tag_id FROM tag_rules WHERE tenant_id = $1 AND rule_id = $2"

LOCK_RULE = """
SELECT rule_id, segment_id, tag_id, remove_on_exit, status, apply_cursor
FROM tag_rules WHERE tenant_id = $1 AND rule_id = $2
FOR UPDATE
"""

# Does a rule (again) own the tags of this (segment, tag)? Locked so a removal of a deleted rule's
# tags and the creation of its successor do not interleave.
PAIR_HAS_RULE = """
SELECT rule_id FROM tag_rules WHERE tenant_id = $1 AND segment_id = $2 AND tag_id = $3 FOR SHARE
"""

# A segment's members after `cursor`, on the members' primary key.
SELECT_MEMBERS_AFTER = """
SELECT external_userid FROM segment_members
WHERE tenant_id = $1 AND segment_id = $2 AND external_userid > $3
ORDER BY external_userid
LIMIT $4
"""

ADVANCE_APPLY = """
UPDATE tag_rules SET apply_cursor = $3, applied = applied + $4,
                     status = CASE WHEN $5::boolean THEN 'active' ELSE status END
WHERE tenant_id = $1 AND rule_id = $2
"""

DELETE_RULE = """
DELETE FROM tag_rules r
USING tags t
WHERE r.tenant_id = $1 AND r.rule_id = $2
  AND t.tenant_id = r.tenant_id AND t.tag_id = r.tag_id AND t.deleted_at IS NULL
RETURNING r.segment_id, r.tag_id
"""

# The worker's lookup: the rules of a batch's segments, locked against deletion for the batch.
LOCK_RULES_OF_SEGMENTS = """
SELECT rule_id, segment_id, tag_id, remove_on_exit FROM tag_rules
WHERE tenant_id = $1 AND segment_id = ANY($2::uuid[])
ORDER BY rule_id
FOR SHARE
"""

# Which (contact, segment) pairs are memberships now.
SELECT_MEMBERS_OF = """
SELECT x.e AS external_userid, x.s AS segment_id
FROM unnest($2::text[], $3::uuid[]) AS x(e, s)
WHERE EXISTS (SELECT 1 FROM segment_members m
              WHERE m.tenant_id = $1 AND m.segment_id = x.s AND m.external_userid = x.e)
"""

# The rows a segment's rule set on these (contact, tag) pairs, locked, each with its heir: another
# segment with a rule for the same tag that the contact is a member of now (lowest segment_id).
LOCK_OWNED_TAGS = """
SELECT c.external_userid, c.tag_id, c.actor_id,
       (SELECT r.segment_id::text FROM tag_rules r
        JOIN segment_members m ON m.tenant_id = r.tenant_id AND m.segment_id = r.segment_id
        WHERE r.tenant_id = $1 AND r.tag_id = c.tag_id AND m.external_userid = c.external_userid
          AND r.segment_id::text <> c.actor_id
        ORDER BY r.segment_id
        LIMIT 1) AS heir
FROM contact_tags c
JOIN unnest($2::text[], $3::text[], $4::uuid[]) AS x(e, s, t)
  ON c.external_userid = x.e AND c.actor_id = x.s AND c.tag_id = x.t
WHERE c.tenant_id = $1 AND c.tagged_by = 'rule'
ORDER BY c.external_userid, c.tag_id
FOR UPDATE OF c
"""

# The tag stays, now on behalf of its heir's rule (tagged_at keeps when it was set).
TRANSFER_OWNED_TAGS = """
UPDATE contact_tags c SET actor_id = x.h
FROM unnest($2::text[], $3::uuid[], $4::text[]) AS x(e, t, h)
WHERE c.tenant_id = $1 AND c.external_userid = x.e AND c.tag_id = x.t AND c.tagged_by = 'rule'
"""

# The next contacts after `cursor` carrying a tag a segment's rule set (removing a deleted rule's
# tags), on contact_tags_rule_idx.
SELECT_OWNED_BY = """
SELECT external_userid FROM contact_tags
WHERE tenant_id = $1 AND tag_id = $2 AND tagged_by = 'rule' AND actor_id = $3 AND external_userid > $4
ORDER BY external_userid
LIMIT $5
"""

# The graph the cycle check walks: rules (with live tags) and every segment's rule.
SELECT_GRAPH_RULES = """
SELECT r.segment_id, r.tag_id, t.name AS tag_name
FROM tag_rules r JOIN tags t ON t.tenant_id = r.tenant_id AND t.tag_id = r.tag_id
WHERE r.tenant_id = $1 AND t.deleted_at IS NULL
ORDER BY r.segment_id, r.tag_id
"""
SELECT_GRAPH_SEGMENTS = "SELECT segment_id, name, rule FROM segments WHERE tenant_id = $1"

RuleStatus = Literal["applying", "active"]


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A rule as the API shows it."""

    rule_id: uuid.UUID
    segment_id: uuid.UUID
    segment_name: str
    tag_id: uuid.UUID
    tag_name: str
    group_name: str
    remove_on_exit: bool
    status: RuleStatus
    applied: int
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class LockedRule:
    rule: SegmentRule
    status: RuleStatus
    apply_cursor: str | None


@dataclass(frozen=True, slots=True)
class OwnedTag:
    """A contact_tags row a segment's rule set; ``heir``: the segment whose rule keeps it."""

    external_userid: str
    tag_id: uuid.UUID
    segment_id: str
    heir: str | None


async def lock_rule_graph(conn: Conn, tenant_id: str) -> None:
    """Hold the tenant's rule-graph lock until the transaction ends."""
    await conn.execute(LOCK_RULE_GRAPH, tenant_id)


async def get_rule(db: Executor, tenant_id: str, rule_id: uuid.UUID) -> RuleRow | None:
    row = await db.fetchrow(SELECT_RULE, tenant_id, rule_id)
    return RuleRow(**dict(row)) if row is not None else None


async def get_rule_by_pair(
    db: Executor, tenant_id: str, segment_id: uuid.UUID, tag_id: uuid.UUID
) -> RuleRow | None:
    row = await db.fetchrow(SELECT_RULE_BY_PAIR, tenant_id, segment_id, tag_id)
    return RuleRow(**dict(row)) if row is not None else None


async def list_rules(db: Executor, tenant_id: str, segment_id: uuid.UUID | None = None) -> list[RuleRow]:
    """The tenant's rules (of one segment when given), oldest first."""
    return [RuleRow(**dict(r)) for r in await db.fetch(SELECT_RULES, tenant_id, segment_id)]


async def insert_rule(
    conn: Conn,
    tenant_id: str,
    *,
    segment_id: uuid.UUID,
    tag_id: uuid.UUID,
    remove_on_exit: bool,
    created_by: str | None,
) -> uuid.UUID | None:
    """Store a new rule (status ``applying``); ``None`` when the pair has a rule already."""
    value = await conn.fetchval(
        INSERT_RULE, tenant_id, uuid.uuid4(), segment_id, tag_id, remove_on_exit, created_by
    )
    return value if isinstance(value, uuid.UUID) else None


async def lock_segment(conn: Conn, tenant_id: str, segment_id: uuid.UUID) -> bool:
    """Lock the segment row ``FOR SHARE`` (its membership holds still); ``False``: no such segment."""
    return await conn.fetchval(LOCK_SEGMENT, tenant_id, segment_id) is not None


async def rule_pair(conn: Conn, tenant_id: str, rule_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    """A rule's (segment_id, tag_id), unlocked (they never change); ``None``: no such rule."""
    row = await conn.fetchrow(SELECT_RULE_PAIR, tenant_id, rule_id)
    return (row["segment_id"], row["tag_id"]) if row is not None else None


async def lock_rule(conn: Conn, tenant_id: str, rule_id: uuid.UUID) -> LockedRule | None:
    row = await conn.fetchrow(LOCK_RULE, tenant_id, rule_id)
    if row is None:
        return None
    rule = SegmentRule(row["rule_id"], row["segment_id"], row["tag_id"], row["remove_on_exit"])
    return LockedRule(rule, row["status"], row["apply_cursor"])


async def pair_has_rule(conn: Conn, tenant_id: str, segment_id: uuid.UUID, tag_id: uuid.UUID) -> bool:
    return await conn.fetchval(PAIR_HAS_RULE, tenant_id, segment_id, tag_id) is not None


async def members_after(
    conn: Conn, tenant_id: str, segment_id: uuid.UUID, cursor: str, limit: int
) -> list[str]:
    """Up to ``limit`` members of the segment after ``cursor``, in external_userid order."""
    rows = await conn.fetch(SELECT_MEMBERS_AFTER, tenant_id, segment_id, cursor, limit)
    return [r["external_userid"] for r in rows]


async def advance_apply(
    conn: Conn, tenant_id: str, rule_id: uuid.UUID, *, cursor: str | None, applied: int, done: bool
) -> None:
    await conn.execute(ADVANCE_APPLY, tenant_id, rule_id, cursor, applied, done)


async def delete_rule(conn: Conn, tenant_id: str, rule_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Delete the rule; its (segment_id, tag_id), or ``None`` when there was no such rule."""
    row = await conn.fetchrow(DELETE_RULE, tenant_id, rule_id)
    return (row["segment_id"], row["tag_id"]) if row is not None else None


async def lock_rules_of_segments(
    conn: Conn, tenant_id: str, segment_ids: Sequence[uuid.UUID]
) -> list[SegmentRule]:
    rows = await conn.fetch(LOCK_RULES_OF_SEGMENTS, tenant_id, list(segment_ids))
    return [SegmentRule(r["rule_id"], r["segment_id"], r["tag_id"], r["remove_on_exit"]) for r in rows]


async def members_of(
    conn: Conn, tenant_id: str, pairs: Sequence[tuple[str, uuid.UUID]]
) -> set[tuple[str, uuid.UUID]]:
    """The (external_userid, segment_id) pairs among ``pairs`` that are memberships now."""
    if not pairs:
        return set()
    euids, segments = zip(*pairs, strict=True)
    rows = await conn.fetch(SELECT_MEMBERS_OF, tenant_id, list(euids), list(segments))
    return {(r["external_userid"], r["segment_id"]) for r in rows}


async def lock_owned_tags(
    conn: Conn, tenant_id: str, triples: Sequence[tuple[str, uuid.UUID, uuid.UUID]]
) -> list[OwnedTag]:
    """Of the (external_userid, segment_id, tag_id) triples, the tags that segment's rule set,
    locked, each with its heir."""
    if not triples:
        return []
    euids, segments, tags = zip(*sorted(triples), strict=True)
    rows = await conn.fetch(LOCK_OWNED_TAGS, tenant_id, list(euids), [str(s) for s in segments], list(tags))
    return [OwnedTag(r["external_userid"], r["tag_id"], r["actor_id"], r["heir"]) for r in rows]


async def transfer_owned_tags(conn: Conn, tenant_id: str, rows: Sequence[tuple[str, uuid.UUID, str]]) -> None:
    """Hand (external_userid, tag_id) rows set by a rule to the rule of segment ``heir``."""
    if rows:
        euids, tags, heirs = zip(*sorted(rows), strict=True)
        await conn.execute(TRANSFER_OWNED_TAGS, tenant_id, list(euids), list(tags), list(heirs))


async def owned_by(
    conn: Conn, tenant_id: str, segment_id: uuid.UUID, tag_id: uuid.UUID, cursor: str, limit: int
) -> list[str]:
    """Up to ``limit`` contacts after ``cursor`` (in external_userid order) carrying ``tag_id``
    as set by the rule of ``segment_id``."""
    rows = await conn.fetch(SELECT_OWNED_BY, tenant_id, tag_id, str(segment_id), cursor, limit)
    return [r["external_userid"] for r in rows]


async def graph_rules(conn: Conn, tenant_id: str) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """Every rule whose tag is live, as (segment_id, tag_id, tag name)."""
    rows = await conn.fetch(SELECT_GRAPH_RULES, tenant_id)
    return [(r["segment_id"], r["tag_id"], r["tag_name"]) for r in rows]


async def graph_segments(conn: Conn, tenant_id: str) -> list[tuple[uuid.UUID, str, dict[str, Any]]]:
    """Every segment as (segment_id, name, canonical rule JSON)."""
    rows = await conn.fetch(SELECT_GRAPH_SEGMENTS, tenant_id)
    return [(r["segment_id"], r["name"], r["rule"]) for r in rows]
