"""What a rule reads, and assessing a contact: the processor's answers are the engine's."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from tag_svc.processor.model import (
    Cause,
    LiveSegment,
    Transition,
    assess,
    diff,
    exits,
    rule_inputs,
    size_deltas,
    start_of_day,
)
from tag_svc.segments import Fact, FactLine, Profile, RfmThresholds, evaluate, next_change, parse_rule

TODAY = date(2024, 5, 1)
RULES = [
    {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]},
    {"all": [{"tag": "高价值"}]},
    {"attr": "store_id", "eq": "sh-012"},
    {"attr": "first_added_at", "days_since": {"gte": 7, "lte": 14}},
    {"event": "order-placed", "amount": {"gte": "100"}, "within_days": 60, "category": "护肤"},
    {"no_event": "message-sent", "between_days_ago": [3, 10], "kind": "broadcast"},
    {"any": [{"rfm": "重要价值客户"}, {"event": "friend-added", "count": {"gte": 1}, "within_days": 3650}]},
]
RFM = RfmThresholds(30, 2, Decimal("200"))


def segment(rule: dict) -> LiveSegment:
    parsed = parse_rule(rule)
    return LiveSegment(uuid.uuid4(), parsed, 1, rule_inputs(parsed))


def test_rule_inputs_say_what_a_rule_reads():
    orders, tags, attr, first, lines, messages, mixed = (rule_inputs(parse_rule(r)) for r in RULES)
    assert (orders.reads, orders.fact_types, orders.horizon, orders.timed) == (
        {"order-placed"},
        {"order-placed"},
        29,
        True,
    )
    assert (tags.reads, tags.fact_types, tags.timed) == ({"tags"}, frozenset(), False)
    assert (attr.reads, attr.timed) == ({"profile"}, False)
    assert (first.reads, first.timed, first.fact_types) == ({"profile"}, True, frozenset())
    assert (lines.fact_types, lines.lines, lines.horizon) == ({"order-placed", "order-refunded"}, True, 59)
    assert (messages.reads, messages.horizon) == ({"message-sent"}, 10)
    assert (mixed.reads, mixed.rfm, mixed.horizon) == ({"order-placed", "friend-added"}, True, None)


def random_profile(rng: random.Random) -> Profile:
    facts = []
    for n in range(rng.randint(0, 12)):
        kind = rng.choice(["order-placed", "order-refunded", "message-sent", "friend-added"])
        day = TODAY - timedelta(days=rng.randint(-3, 400))
        lines = (FactLine(rng.choice(["护肤", "彩妆"]), "SK", Decimal(rng.choice(["50", "120"]))),)
        sign = -1 if kind == "order-refunded" else 1
        facts.append(
            Fact(
                kind,
                f"k{n}",
                day,
                kind=rng.choice(["broadcast", "private"]) if kind == "message-sent" else None,
                amount=sign * Decimal(rng.choice(["0", "80", "300"]))
                if kind.startswith("order")
                else Decimal(0),
                lines=lines if kind.startswith("order") else (),
            )
        )
    added = TODAY - timedelta(days=rng.randint(0, 20))
    return Profile(
        "t",
        "wm1",
        store_id=rng.choice([None, "sh-012"]),
        tags=frozenset(rng.sample(["高价值", "VIP"], rng.randint(0, 2))),
        first_added_at=datetime.combine(added, datetime.min.time(), tzinfo=UTC),
        first_added_day=added,
        facts=tuple(facts),
    )


def test_assess_agrees_with_the_engine_on_the_whole_profile():
    """Each rule sees only the facts it reads; the answers and the next change stay the engine's."""
    rng = random.Random(4)
    segments = [segment(r) for r in RULES]
    for _ in range(300):
        profile = random_profile(rng)
        result = assess(profile, segments, TODAY, RFM)
        expected = {s.segment_id for s in segments if evaluate(s.rule, profile, TODAY, rfm=RFM)}
        changes = [next_change(s.rule, profile, TODAY, rfm=RFM) for s in segments]
        assert result.members == expected
        assert result.due == min((d for d in changes if d is not None), default=None)


def test_an_erased_contact_is_in_no_segment():
    profile = Profile("t", "wm1", status="erased", tags=frozenset({"高价值"}))
    assert assess(profile, [segment(RULES[1])], TODAY, None).members == set()


def test_transitions_only_where_the_answer_differs_from_the_stored_membership():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cause = Cause("event", datetime(2024, 5, 1, tzinfo=UTC), "e1")
    out = diff("wm1", [a, b, c], now_in={a, c}, stored={b, c, uuid.uuid4()}, cause=cause)
    assert [(t.segment_id, t.change) for t in out] == [(a, "entered"), (b, "exited")]
    ended = exits("wm1", {a, b}, Cause("erased", cause.at))
    assert size_deltas([*out, *ended, Transition(a, "wm2", "entered", cause)]) == {a: (2, 1), b: (0, 2)}


def test_time_driven_changes_happen_at_tenant_midnight():
    assert (
        start_of_day(date(2024, 5, 7), ZoneInfo("Asia/Shanghai")).isoformat() == "2024-05-07T00:00:00+08:00"
    )
