"""The pure parts of rule-based tagging: the cycle check over tag rules and segment rules, what a
batch of segment changes means for tags, and the worker's wiring to segment-changed."""

from __future__ import annotations

import uuid

from tag_svc.segments import parse_rule
from tag_svc.stream import TOPICS
from tag_svc.tags.rules import (
    CycleStep,
    RuleCycle,
    RuleEdge,
    SegmentRule,
    find_cycle,
    plan_changes,
    rule_actor,
    tag_reads,
)


def ids(n: int) -> list[uuid.UUID]:
    # Sorted, so "the lowest segment" in a test is the first one.
    return sorted(uuid.uuid4() for _ in range(n))


S1, S2, S3, S4 = ids(4)
T1, T2, T3, T4 = ids(4)


def edge(segment: uuid.UUID, tag: uuid.UUID, name: str) -> RuleEdge:
    return RuleEdge(segment, tag, name)


def test_tag_reads_are_every_tag_condition_negated_or_not():
    rule = parse_rule(
        {
            "all": [
                {"tag": "VIP"},
                {"not": {"any": [{"tag": "流失"}, {"attr": "status", "eq": "active"}]}},
                {"event": "order-placed", "count": {"gte": 1}, "within_days": 30},
            ]
        }
    )
    assert tag_reads(rule) == {"VIP", "流失"}
    assert tag_reads(parse_rule({"attr": "status", "eq": "active"})) == frozenset()


def test_a_segment_adding_a_tag_it_reads_is_a_cycle():
    rule = edge(S1, T1, "VIP")
    assert find_cycle([rule], {S1: {"VIP"}}, S1) == (rule,)


def test_a_two_segment_chain_through_tags_is_a_cycle_listed_from_the_start():
    # S1 adds T1, S2 reads T1; S2 adds T2, S1 reads T2.
    first, second = edge(S1, T1, "A"), edge(S2, T2, "B")
    reads = {S1: {"B"}, S2: {"A"}}
    assert find_cycle([second, first], reads, S1) == (first, second)
    assert find_cycle([first, second], reads, S2) == (second, first)


def test_a_chain_that_does_not_come_back_is_no_cycle():
    # S1 -> T1 read by S2 -> T2 read by S3, which adds nothing anyone reads.
    rules = [edge(S1, T1, "A"), edge(S2, T2, "B"), edge(S3, T3, "C")]
    reads = {S1: {"Z"}, S2: {"A"}, S3: {"B"}, S4: {"C"}}
    for start in (S1, S2, S3, S4):
        assert find_cycle(rules, reads, start) is None


def test_tags_are_matched_by_name_across_groups():
    # S1 adds a "VIP" of one group; S2 reads "VIP" (any group) and adds another group's "VIP",
    # which S1 reads: a cycle although the two tags are different tags.
    rules = [edge(S1, T1, "VIP"), edge(S2, T2, "VIP")]
    assert find_cycle(rules, {S1: {"VIP"}, S2: {"VIP"}}, S1) == (edge(S1, T1, "VIP"),)
    assert find_cycle(rules, {S1: set(), S2: {"VIP"}}, S1) is None
    # Only S1 reads VIP: S2's rule leads into S1's loop, but nothing leads back to S2.
    assert find_cycle(rules, {S1: {"VIP"}, S2: set()}, S2) is None


def test_a_cycle_that_does_not_pass_through_start_is_not_reported_from_there():
    # S2 <-> S3 cycle; S1 feeds into it but is not on it.
    rules = [edge(S1, T1, "A"), edge(S2, T2, "B"), edge(S3, T3, "C")]
    reads = {S2: {"A", "C"}, S3: {"B"}}
    assert find_cycle(rules, reads, S1) is None
    assert find_cycle(rules, reads, S2) == (edge(S2, T2, "B"), edge(S3, T3, "C"))


def test_the_shortest_cycle_is_found_whatever_the_input_order():
    # Two ways back to S1: directly through S2, or through S2 and S3.
    rules = [edge(S1, T1, "A"), edge(S2, T2, "B"), edge(S3, T3, "C"), edge(S2, T4, "D")]
    reads = {S1: {"B", "C"}, S2: {"A"}, S3: {"D"}}
    expected = (edge(S1, T1, "A"), edge(S2, T2, "B"))
    assert find_cycle(rules, reads, S1) == expected
    assert find_cycle(list(reversed(rules)), reads, S1) == expected


def test_a_long_chain_is_followed_to_the_end():
    segments = ids(30)
    tags = ids(30)
    rules = [edge(s, t, f"n{i}") for i, (s, t) in enumerate(zip(segments, tags, strict=True))]
    reads = {segments[i + 1]: {f"n{i}"} for i in range(29)}
    assert find_cycle(rules, reads, segments[0]) is None
    reads[segments[0]] = {"n29"}
    cycle = find_cycle(rules, reads, segments[0])
    assert cycle is not None and [c.segment_id for c in cycle] == segments


def test_a_rule_cycle_describes_itself_with_names_only():
    steps = [CycleStep(S1, "高价值", T1, "VIP"), CycleStep(S2, "沉睡", T2, "唤醒")]
    text = RuleCycle(steps).describe()
    assert text == (
        "segment '高价值' adds tag 'VIP'; segment '沉睡' adds tag '唤醒', which segment '高价值' "
        "reads: its members would enter and exit forever"
    )


def rule(segment: uuid.UUID, tag: uuid.UUID, remove_on_exit: bool = True) -> SegmentRule:
    return SegmentRule(uuid.uuid4(), segment, tag, remove_on_exit)


def test_members_get_every_rule_tag_and_leavers_lose_those_removed_on_exit():
    rules = [rule(S1, T1), rule(S1, T2, remove_on_exit=False), rule(S2, T3)]
    touched = [("wm-in", S1), ("wm-out", S1), ("wm-out", S2), ("wm-x", S3)]
    plan = plan_changes(touched, {("wm-in", S1)}, rules)
    assert plan.add == {S1: [("wm-in", T1), ("wm-in", T2)]}
    # wm-out left S1 (T1 goes, T2 stays: not removed on exit) and is not in S2 (T3 goes);
    # S3 has no rules.
    assert plan.release == [("wm-out", S1, T1), ("wm-out", S2, T3)]
    assert plan.tag_ids() == sorted([T1, T2, T3])


def test_the_stored_membership_decides_not_the_event():
    # However many entered/exited events named the pair, it is planned once, by membership.
    rules = [rule(S1, T1)]
    touched = [("wm-1", S1), ("wm-1", S1), ("wm-1", S1)]
    assert plan_changes(touched, {("wm-1", S1)}, rules).add == {S1: [("wm-1", T1)]}
    plan = plan_changes(touched, set(), rules)
    assert plan.add == {} and plan.release == [("wm-1", S1, T1)]


def test_rule_changes_are_by_rule_with_the_segment_as_actor_and_no_staff():
    actor = rule_actor(S1)
    assert (actor.by, actor.actor_id, actor.staff_id) == ("rule", str(S1), None)


def test_the_tag_worker_consumes_segment_changed():
    assert "segment-changed" in TOPICS
