"""The pure part of rule-based tagging (no I/O): who a rule's changes are by, what a batch of
segment changes means for tags, and the cycle check over tag rules and segment rules. See
:mod:`tag_svc.tags.rules`.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tag_svc.segments import Rule
from tag_svc.segments.rules import TagCondition, conditions
from tag_svc.tags.domain import Actor

__all__ = [
    "CycleStep",
    "DuplicateRule",
    "RuleCycle",
    "RuleEdge",
    "RulePlan",
    "SegmentRule",
    "UnknownSegment",
    "UnknownTag",
    "find_cycle",
    "plan_changes",
    "rule_actor",
    "tag_reads",
]


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """A rule as applying it needs it."""

    rule_id: uuid.UUID
    segment_id: uuid.UUID
    tag_id: uuid.UUID
    remove_on_exit: bool


class UnknownSegment(Exception):
    """The segment does not exist for the tenant."""


class UnknownTag(Exception):
    """The tag does not exist (or was deleted) for the tenant."""


class DuplicateRule(Exception):
    """The segment has a rule for this tag already."""

    def __init__(self, rule_id: uuid.UUID) -> None:
        super().__init__(str(rule_id))
        self.rule_id = rule_id


@dataclass(frozen=True, slots=True)
class RuleEdge:
    """A rule as the cycle check sees it: segment ``segment_id`` adds a tag named ``tag_name``."""

    segment_id: uuid.UUID
    tag_id: uuid.UUID
    tag_name: str


@dataclass(frozen=True, slots=True)
class CycleStep:
    """One rule of a cycle: ``segment`` adds ``tag``, which the next step's segment reads (the
    last step's tag is read by the first step's segment)."""

    segment_id: uuid.UUID
    segment_name: str
    tag_id: uuid.UUID
    tag_name: str


class RuleCycle(Exception):
    """The change would close a cycle of tag rules; ``steps`` is one such cycle."""

    def __init__(self, steps: Sequence[CycleStep]) -> None:
        self.steps = tuple(steps)
        super().__init__(self.describe())

    def describe(self) -> str:
        """The cycle in words (segment and tag names only)."""
        parts = [f"segment '{s.segment_name}' adds tag '{s.tag_name}'" for s in self.steps]
        first = self.steps[0].segment_name if self.steps else ""
        return "; ".join(parts) + f", which segment '{first}' reads: its members would enter and exit forever"


def rule_actor(segment_id: uuid.UUID | str) -> Actor:
    """Who a rule's changes are by. No staff member: the pusher picks whom to push as."""
    return Actor("rule", actor_id=str(segment_id))


def tag_reads(rule: Rule) -> frozenset[str]:
    """The tag names a segment rule reads (under ``not`` too: a negated read flaps as well)."""
    return frozenset(c.tag for c in conditions(rule) if isinstance(c, TagCondition))


def find_cycle(
    rules: Iterable[RuleEdge], reads: Mapping[uuid.UUID, Collection[str]], start: uuid.UUID
) -> tuple[RuleEdge, ...] | None:
    """A shortest chain of rules from segment ``start`` back to it, or ``None``.

    Rule ``r`` leads from its segment to every segment whose rule reads a tag named like
    ``r``'s tag (names, because segment rules match tags by name across groups). In the chain,
    each rule's tag is read by the next rule's segment, and the last rule's by ``start``.
    Breadth-first over sorted input, so the answer does not depend on input order.
    """
    by_segment: dict[uuid.UUID, list[RuleEdge]] = {}
    for r in sorted(rules, key=lambda r: (r.segment_id, r.tag_name, r.tag_id)):
        by_segment.setdefault(r.segment_id, []).append(r)
    readers: dict[str, list[uuid.UUID]] = {}
    for segment_id in sorted(reads):
        for name in reads[segment_id]:
            readers.setdefault(name, []).append(segment_id)
    came_from: dict[uuid.UUID, tuple[uuid.UUID, RuleEdge]] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        segment_id = queue.popleft()
        for rule in by_segment.get(segment_id, ()):
            for reader in readers.get(rule.tag_name, ()):
                if reader == start:
                    chain = [rule]
                    at = segment_id
                    while at != start:
                        at, edge = came_from[at]
                        chain.append(edge)
                    return tuple(reversed(chain))
                if reader not in seen:
                    seen.add(reader)
                    came_from[reader] = (segment_id, rule)
                    queue.append(reader)
    return None


@dataclass(slots=True)
class RulePlan:
    """What a batch of segment changes means for tags.

    ``add``: per segment, the (external_userid, tag_id) pairs its rules add; ``release``:
    (external_userid, segment_id, tag_id) to remove if that segment's rule set the tag.
    """

    add: dict[uuid.UUID, list[tuple[str, uuid.UUID]]] = field(default_factory=dict)
    release: list[tuple[str, uuid.UUID, uuid.UUID]] = field(default_factory=list)

    def tag_ids(self) -> list[uuid.UUID]:
        found = {t for pairs in self.add.values() for _, t in pairs} | {t for _, _, t in self.release}
        return sorted(found)


def plan_changes(
    touched: Iterable[tuple[str, uuid.UUID]],
    members: Collection[tuple[str, uuid.UUID]],
    rules: Iterable[SegmentRule],
) -> RulePlan:
    """The tag changes for the (external_userid, segment_id) pairs some event named, given the
    pairs that are memberships now: members get every rule's tag, the others lose those of the
    rules that remove on exit. Each pair counts once, however many events named it."""
    by_segment: dict[uuid.UUID, list[SegmentRule]] = {}
    for r in rules:
        by_segment.setdefault(r.segment_id, []).append(r)
    plan = RulePlan()
    for euid, segment_id in dict.fromkeys(touched):
        for rule in by_segment.get(segment_id, ()):
            if (euid, segment_id) in members:
                plan.add.setdefault(segment_id, []).append((euid, rule.tag_id))
            elif rule.remove_on_exit:
                plan.release.append((euid, segment_id, rule.tag_id))
    return plan
