"""Rule-based tagging at work (see :mod:`tag_svc.tags.rules`): the worker's handling of
``segment-changed``, creating a rule and applying it to its segment's members, deleting a rule
(and its tags), and the cycle check over the stored graph. Every function runs in the caller's
transaction or, given the pool, one chunk per transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
from prometheus_client import Counter

from scrm_shared.events import SegmentChangedEvent
from tag_svc.segments import Rule, parse_rule
from tag_svc.tags import tagging
from tag_svc.tags.domain import TagRef
from tag_svc.tags.rules.model import (
    CycleStep,
    DuplicateRule,
    RuleCycle,
    RuleEdge,
    RulePlan,
    UnknownSegment,
    UnknownTag,
    find_cycle,
    plan_changes,
    rule_actor,
    tag_reads,
)
from tag_svc.tags.store import Conn, contacts
from tag_svc.tags.store import rules as store

__all__ = [
    "APPLY_CHUNK",
    "RULE_SEGMENT_CHANGES",
    "apply_chunk",
    "apply_segment_changes",
    "apply_to_members",
    "check_segment_rule",
    "check_tag_rename",
    "create_rule",
    "delete_rule",
    "remove_rule_tags",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLY_CHUNK = 2000
"""Contacts per transaction when a rule is applied to (or its tags removed from) many contacts."""
_DEADLOCK_RETRIES = 3

RULE_SEGMENT_CHANGES = Counter(
    "scrm_tag_rule_segment_changes",
    "segment-changed events the tag worker consumed, by outcome (applied: the segment has tag "
    "rules; no-rule; invalid: a segment_id that is not a uuid).",
    ["outcome"],
)


# ---------------------------------------------------------------------------------------------
# The worker: segment-changed
# ---------------------------------------------------------------------------------------------


async def apply_segment_changes(conn: Conn, events: Sequence[SegmentChangedEvent]) -> None:
    """Apply a batch's fresh ``segment-changed`` events in the caller's transaction (see the
    module docstring). Segments without rules cost one indexed lookup per tenant and batch."""
    touched: dict[str, dict[tuple[str, uuid.UUID], None]] = {}
    for e in events:
        try:
            segment_id = uuid.UUID(e.data.segment_id)
        except ValueError:
            RULE_SEGMENT_CHANGES.labels("invalid").inc()
            continue
        touched.setdefault(e.tenant_id, {})[(e.data.external_userid, segment_id)] = None
    now = datetime.now(UTC)
    for tenant_id in sorted(touched):
        pairs = list(touched[tenant_id])
        segments = sorted({s for _, s in pairs})
        rules = await store.lock_rules_of_segments(conn, tenant_id, segments)
        ruled = {r.segment_id for r in rules}
        pairs_with_rules = [p for p in pairs if p[1] in ruled]
        RULE_SEGMENT_CHANGES.labels("no-rule").inc(len(pairs) - len(pairs_with_rules))
        if not pairs_with_rules:
            continue
        members = await store.members_of(conn, tenant_id, pairs_with_rules)
        await _apply_plan(conn, tenant_id, plan_changes(pairs_with_rules, members, rules), now)
        RULE_SEGMENT_CHANGES.labels("applied").inc(len(pairs_with_rules))


async def _apply_plan(conn: Conn, tenant_id: str, plan: RulePlan, at: datetime) -> int:
    """Apply ``plan`` (tags are locked here); returns how many contact tags changed. Tags deleted
    meanwhile are skipped: their purge job untags their contacts."""
    refs = await contacts.lock_tags(conn, tenant_id, plan.tag_ids())
    changed = 0
    for segment_id in sorted(plan.add):
        add = [(e, refs[t]) for e, t in plan.add[segment_id] if t in refs]
        if add:
            changes = await tagging.apply(conn, tenant_id, actor=rule_actor(segment_id), at=at, add=add)
            changed += len(changes)
    release = [(e, s, t) for e, s, t in plan.release if t in refs]
    return changed + await _release(conn, tenant_id, release, refs, at)


async def _release(
    conn: Conn,
    tenant_id: str,
    triples: Sequence[tuple[str, uuid.UUID, uuid.UUID]],
    refs: Mapping[uuid.UUID, TagRef],
    at: datetime,
) -> int:
    """Remove the tags of (external_userid, segment_id, tag_id) that segment's rule set, unless
    another rule keeps them (they pass to it); returns how many were removed."""
    owned = await store.lock_owned_tags(conn, tenant_id, triples)
    await store.transfer_owned_tags(
        conn, tenant_id, [(o.external_userid, o.tag_id, o.heir) for o in owned if o.heir is not None]
    )
    by_segment: dict[str, list[tuple[str, TagRef]]] = {}
    for o in owned:
        if o.heir is None:
            by_segment.setdefault(o.segment_id, []).append((o.external_userid, refs[o.tag_id]))
    removed = 0
    for segment_id in sorted(by_segment):
        changes = await tagging.apply(
            conn, tenant_id, actor=rule_actor(segment_id), at=at, remove=by_segment[segment_id]
        )
        removed += len(changes)
    return removed


# ---------------------------------------------------------------------------------------------
# Creating, applying and deleting rules (the API)
# ---------------------------------------------------------------------------------------------


async def create_rule(
    conn: Conn,
    tenant_id: str,
    *,
    segment_id: uuid.UUID,
    tag_id: uuid.UUID,
    remove_on_exit: bool,
    created_by: str | None,
) -> tuple[uuid.UUID, bool]:
    """Store a rule inside the caller's transaction; returns (rule_id, created).

    An existing rule of the pair whose first application did not finish is returned with
    ``created=False`` (the caller resumes it); a finished one raises :class:`DuplicateRule`.
    Raises :class:`UnknownSegment`, :class:`UnknownTag` or :class:`RuleCycle` otherwise.
    """
    if not await store.lock_segment(conn, tenant_id, segment_id):
        raise UnknownSegment()
    refs = await contacts.lock_tags(conn, tenant_id, [tag_id])
    if tag_id not in refs:
        raise UnknownTag()
    await store.lock_rule_graph(conn, tenant_id)
    existing = await store.get_rule_by_pair(conn, tenant_id, segment_id, tag_id)
    if existing is not None:
        if existing.status == "applying":
            return existing.rule_id, False
        raise DuplicateRule(existing.rule_id)
    new = RuleEdge(segment_id, tag_id, refs[tag_id].name)
    await _refuse_cycle(conn, tenant_id, [segment_id], extra=new)
    rule_id = await store.insert_rule(
        conn,
        tenant_id,
        segment_id=segment_id,
        tag_id=tag_id,
        remove_on_exit=remove_on_exit,
        created_by=created_by,
    )
    assert rule_id is not None  # the pair was checked under the segment's and the graph's lock
    return rule_id, True


async def apply_chunk(conn: Conn, tenant_id: str, rule_id: uuid.UUID, limit: int) -> bool:
    """Tag the next ``limit`` members of a new rule's segment, in the caller's transaction;
    ``True`` when the rule is fully applied (or gone)."""
    pair = await store.rule_pair(conn, tenant_id, rule_id)  # never changes: read unlocked
    if pair is None:
        return True
    segment_id, tag_id = pair
    # The lock order of the module docstring of tag_svc.tags.store.rules: segment (membership
    # holds still until commit), tag, then the rule itself.
    if not await store.lock_segment(conn, tenant_id, segment_id):
        return True
    refs = await contacts.lock_tags(conn, tenant_id, [tag_id])
    locked = await store.lock_rule(conn, tenant_id, rule_id)
    if locked is None or locked.status == "active":
        return True
    if tag_id not in refs:  # deleted: its purge job untags everyone, nothing to add
        await store.advance_apply(conn, tenant_id, rule_id, cursor=locked.apply_cursor, applied=0, done=True)
        return True
    euids = await store.members_after(conn, tenant_id, segment_id, locked.apply_cursor or "", limit)
    changes = await tagging.apply(
        conn,
        tenant_id,
        actor=rule_actor(segment_id),
        at=datetime.now(UTC),
        add=[(e, refs[tag_id]) for e in euids],
    )
    done = len(euids) < limit
    cursor = euids[-1] if euids else locked.apply_cursor
    await store.advance_apply(conn, tenant_id, rule_id, cursor=cursor, applied=len(changes), done=done)
    return done


async def apply_to_members(
    pool: asyncpg.Pool, tenant_id: str, rule_id: uuid.UUID, chunk_size: int = APPLY_CHUNK
) -> None:
    """Apply a new rule to its segment's members, one chunk per transaction, until done."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    done = False
    while not done:
        done = await _retrying(pool, lambda conn: apply_chunk(conn, tenant_id, rule_id, chunk_size))


async def delete_rule(
    pool: asyncpg.Pool,
    tenant_id: str,
    rule_id: uuid.UUID,
    *,
    remove_tags: bool = False,
    chunk_size: int = APPLY_CHUNK,
) -> bool:
    """Delete a rule; ``False`` when there is none. Its tags stay unless ``remove_tags``: then
    those it set are removed (with events), except where another rule keeps them."""
    async with pool.acquire() as conn, conn.transaction():
        if await store.lock_rule(conn, tenant_id, rule_id) is None:
            return False
        pair = await store.delete_rule(conn, tenant_id, rule_id)
    if pair is None:  # its tag was deleted: the rule is gone for readers, and so for writers
        return False
    if remove_tags:
        await remove_rule_tags(pool, tenant_id, *pair, chunk_size=chunk_size)
    return True


async def remove_rule_tags(
    pool: asyncpg.Pool,
    tenant_id: str,
    segment_id: uuid.UUID,
    tag_id: uuid.UUID,
    *,
    chunk_size: int = APPLY_CHUNK,
) -> int:
    """Remove the tags the (deleted) rule of (segment, tag) set, a chunk per transaction; returns
    how many were removed. Stops if a rule for the pair is created meanwhile (the tags are its)."""

    cursor = ""

    async def chunk(conn: Conn) -> tuple[int, str | None]:
        """Remove the next chunk; returns (removed, the cursor after it or None when done)."""
        if await store.pair_has_rule(conn, tenant_id, segment_id, tag_id):
            return 0, None
        refs = await contacts.lock_tags(conn, tenant_id, [tag_id])
        if tag_id not in refs:
            return 0, None
        euids = await store.owned_by(conn, tenant_id, segment_id, tag_id, cursor, chunk_size)
        triples = [(e, segment_id, tag_id) for e in euids]
        removed = await _release(conn, tenant_id, triples, refs, datetime.now(UTC))
        return removed, euids[-1] if len(euids) == chunk_size else None

    total = 0
    while True:
        removed, after = await _retrying(pool, chunk)
        total += removed
        if after is None:
            return total
        cursor = after


async def _retrying(pool: asyncpg.Pool, work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``work(conn)`` in a transaction, again after a deadlock (the worker may write the same
    contact tags in another order; PostgreSQL aborts one of the two)."""
    for attempt in range(1, _DEADLOCK_RETRIES + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES:
                raise
            log.info("tag rule chunk deadlocked, running it again")
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# The cycle check over the stored graph
# ---------------------------------------------------------------------------------------------


async def check_segment_rule(conn: Conn, tenant_id: str, segment_id: uuid.UUID, rule: Rule) -> None:
    """Raise :class:`RuleCycle` if giving segment ``segment_id`` the rule ``rule`` closes a
    cycle of tag rules. Call it inside the transaction that stores the rule: it holds the
    tenant's rule-graph lock until then."""
    reads = tag_reads(rule)
    if not reads:  # a segment that reads no tag is on no cycle, whatever the rules say
        return
    await store.lock_rule_graph(conn, tenant_id)
    await _refuse_cycle(conn, tenant_id, [segment_id], reads_of={segment_id: reads})


async def check_tag_rename(conn: Conn, tenant_id: str, tag_id: uuid.UUID, name: str) -> None:
    """Raise :class:`RuleCycle` if renaming tag ``tag_id`` to ``name`` closes a cycle (segments
    read tags by name). Call it inside the transaction that renames the tag."""
    await store.lock_rule_graph(conn, tenant_id)
    starts = [s for s, t, _ in await store.graph_rules(conn, tenant_id) if t == tag_id]
    await _refuse_cycle(conn, tenant_id, starts, renamed=(tag_id, name))


async def _refuse_cycle(
    conn: Conn,
    tenant_id: str,
    starts: Sequence[uuid.UUID],
    *,
    extra: RuleEdge | None = None,
    reads_of: Mapping[uuid.UUID, frozenset[str]] | None = None,
    renamed: tuple[uuid.UUID, str] | None = None,
) -> None:
    """Load the tenant's graph with the change applied and raise :class:`RuleCycle` on a cycle
    through any of ``starts`` (the graph was acyclic before, so a new cycle passes there)."""
    edges = [RuleEdge(s, t, n) for s, t, n in await store.graph_rules(conn, tenant_id)]
    if renamed is not None:
        edges = [RuleEdge(e.segment_id, e.tag_id, renamed[1]) if e.tag_id == renamed[0] else e for e in edges]
    if extra is not None:
        edges.append(extra)
    names: dict[uuid.UUID, str] = {}
    reads: dict[uuid.UUID, frozenset[str]] = {}
    for segment_id, name, rule_json in await store.graph_segments(conn, tenant_id):
        names[segment_id] = name
        # Stored rules are canonical and were valid when stored.
        reads[segment_id] = tag_reads(parse_rule(rule_json))
    reads.update(reads_of or {})
    for start in starts:
        cycle = find_cycle(edges, reads, start)
        if cycle is not None:
            raise RuleCycle(
                [CycleStep(e.segment_id, names.get(e.segment_id, ""), e.tag_id, e.tag_name) for e in cycle]
            )
