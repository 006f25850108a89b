"""The in-memory engine: window edges in the tenant's timezone, refunds, filters, recency,
attributes, and ``next_change`` (exact: checked by a property test over random rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrm_shared.events.contacts import FriendAdded
from scrm_shared.events.messages import MessageSent
from scrm_shared.events.orders import OrderPlaced, OrderRefunded
from tag_svc.segments import (
    Fact,
    FactLine,
    MissingRfmThresholds,
    Profile,
    RfmThresholds,
    day_in,
    evaluate,
    friend_added_fact,
    message_sent_fact,
    next_change,
    order_placed_fact,
    order_refunded_fact,
    parse_rule,
)
from tag_svc.segments.evaluator import assess_rules, compile_rule

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2024, 5, 1)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def order(
    order_id: str,
    placed_at: str,
    lines: list[tuple[str, str, int, str]] | None = None,
    **extra: Any,
) -> OrderPlaced:
    items = [
        {"sku": sku, "category": cat, "quantity": qty, "unit_price": price}
        for cat, sku, qty, price in (lines or [("护肤", "SK-1", 1, "100.00")])
    ]
    total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in items) - Decimal(
        extra.get("discount_amount", "0")
    )
    return OrderPlaced.model_validate(
        {
            "order_id": order_id,
            "channel": "pos",
            "store_id": "sh-012",
            "customer": {"external_userid": "wm1"},
            "items": items,
            "total_amount": f"{total:.2f}",
            "placed_at": placed_at,
            **extra,
        }
    )


def refund(
    refund_id: str, order_id: str, amount: str, items: list[tuple[str, str, int, str]] | None = None
) -> OrderRefunded:
    return OrderRefunded.model_validate(
        {
            "refund_id": refund_id,
            "order_id": order_id,
            "amount": amount,
            "refunded_at": "2024-05-01T09:00:00+08:00",
            "items": None
            if items is None
            else [{"sku": s, "category": c, "quantity": q, "unit_price": p} for c, s, q, p in items],
        }
    )


def profile(*facts: Fact, **attrs: Any) -> Profile:
    return Profile(tenant_id="acme", external_userid="wm1", facts=facts, **attrs)


def fact(event_type: str, day: date, key: str | None = None, **fields: Any) -> Fact:
    return Fact(event_type=event_type, key=key or f"{event_type}-{day}-{len(fields)}", day=day, **fields)  # type: ignore[arg-type]


def holds(rule: dict[str, Any], p: Profile, today: date = TODAY, **kw: Any) -> bool:
    return evaluate(parse_rule(rule), p, today, **kw)


COUNT_ORDERS = {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 1}]}

# ---------------------------------------------------------------------------------------------
# Days in the tenant's timezone
# ---------------------------------------------------------------------------------------------


def test_an_order_late_in_the_evening_utc_is_the_next_day_in_shanghai():
    late = order("o1", "2024-04-30T16:30:00Z")  # 00:30 on 1 May in Shanghai
    assert day_in(late.placed_at, SHANGHAI) == date(2024, 5, 1)
    assert day_in(late.placed_at, ZoneInfo("UTC")) == date(2024, 4, 30)
    in_shanghai = profile(order_placed_fact(late, SHANGHAI))
    in_utc = profile(order_placed_fact(late, ZoneInfo("UTC")))
    assert holds(COUNT_ORDERS, in_shanghai)  # "today" is 1 May in both tenants
    assert not holds(COUNT_ORDERS, in_utc)
    two_days = {"event": "order-placed", "count": {"gte": 1}, "within_days": 2}
    assert holds(two_days, in_utc)


def test_the_last_minute_of_a_shanghai_day_stays_in_that_day():
    p = profile(order_placed_fact(order("o1", "2024-04-30T23:59:59+08:00"), SHANGHAI))
    assert not holds(COUNT_ORDERS, p)
    assert holds(COUNT_ORDERS, p, today=date(2024, 4, 30))


def test_day_in_refuses_naive_times():
    with pytest.raises(ValueError, match="aware"):
        day_in(datetime(2024, 5, 1, 12, 0), SHANGHAI)


# ---------------------------------------------------------------------------------------------
# Window edges
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("days_ago", "inside"), [(-1, False), (0, True), (29, True), (30, False)])
def test_within_days_is_the_d_days_ending_today(days_ago, inside):
    p = profile(fact("order-placed", ago(days_ago)))
    assert holds({"event": "order-placed", "count": {"gte": 1}, "within_days": 30}, p) is inside


@pytest.mark.parametrize(("days_ago", "inside"), [(6, False), (7, True), (14, True), (15, False)])
def test_between_days_ago_includes_both_ends(days_ago, inside):
    p = profile(fact("message-sent", ago(days_ago)))
    assert holds({"event": "message-sent", "count": {"gte": 1}, "between_days_ago": [7, 14]}, p) is inside


def test_acceptance_count_form():
    rule = {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 7}]}
    one = profile(fact("order-placed", ago(0), "a"), fact("order-placed", ago(7), "b"))
    two = profile(fact("order-placed", ago(0), "a"), fact("order-placed", ago(6), "b"))
    assert not holds(rule, one)
    assert holds(rule, two)
    assert not holds(rule, profile())


def test_comparisons_combine_as_a_range():
    p = profile(*(fact("order-placed", ago(i), f"o{i}") for i in range(3)))
    assert holds({"event": "order-placed", "count": {"gte": 2, "lte": 3}, "within_days": 30}, p)
    assert not holds({"event": "order-placed", "count": {"gt": 3}, "within_days": 30}, p)
    assert holds({"event": "order-placed", "count": {"eq": 3}, "within_days": 30}, p)
    assert holds({"event": "order-placed", "count": {"lt": 4}, "within_days": 30}, p)


def test_distinct_days_counts_days_not_events():
    p = profile(
        fact("order-placed", ago(1), "a"),
        fact("order-placed", ago(1), "b"),
        fact("order-placed", ago(3), "c"),
    )
    assert holds({"event": "order-placed", "distinct_days": {"eq": 2}, "within_days": 7}, p)
    assert holds({"event": "order-placed", "count": {"eq": 3}, "within_days": 7}, p)


# ---------------------------------------------------------------------------------------------
# Orders: lines, filters, refunds
# ---------------------------------------------------------------------------------------------


def test_an_order_counts_once_however_many_of_its_lines_match():
    two_lines = order(
        "o1", "2024-04-30T10:00:00+08:00", [("护肤", "A", 1, "100.00"), ("护肤", "B", 2, "50.00")]
    )
    p = profile(order_placed_fact(two_lines))
    skincare_twice = {"event": "order-placed", "count": {"gte": 2}, "within_days": 60, "category": "护肤"}
    assert not holds(skincare_twice, p)
    second = order("o2", "2024-04-01T10:00:00+08:00", [("护肤", "C", 1, "10.00"), ("彩妆", "D", 1, "10.00")])
    assert holds(skincare_twice, profile(order_placed_fact(two_lines), order_placed_fact(second)))


def test_amount_sums_matching_lines_or_the_paid_total():
    o = order(
        "o1",
        "2024-04-30T10:00:00+08:00",
        [("护肤", "A", 2, "100.00"), ("彩妆", "B", 1, "80.00")],
        discount_amount="30.00",
    )
    p = profile(order_placed_fact(o))
    assert holds({"event": "order-placed", "amount": {"eq": "250.00"}, "within_days": 7}, p)  # paid: 280 - 30
    assert holds({"event": "order-placed", "amount": {"eq": 200}, "within_days": 7, "category": "护肤"}, p)
    assert holds({"event": "order-placed", "amount": {"eq": 80}, "within_days": 7, "sku": "B"}, p)
    # category and sku must match on the same line
    assert holds(
        {"event": "order-placed", "amount": {"eq": 0}, "within_days": 7, "category": "护肤", "sku": "B"}, p
    )
    assert not holds(
        {"event": "order-placed", "count": {"gte": 1}, "within_days": 7, "category": "护肤", "sku": "B"}, p
    )


def test_a_refund_lowers_the_amount_of_its_orders_day_not_the_refund_day():
    o = order("o1", "2024-03-20T10:00:00+08:00", [("护肤", "A", 3, "100.00")])  # 42 days before TODAY
    placed = order_placed_fact(o)
    refunded = order_refunded_fact(refund("r1", "o1", "100.00"), placed)  # refunded "today"
    assert refunded.day == placed.day and refunded.amount == Decimal("-100.00")
    p = profile(placed, refunded)
    assert holds({"event": "order-placed", "amount": {"eq": 200}, "within_days": 60}, p)
    # the refund happened inside the last 30 days but belongs to a day outside them
    assert holds({"event": "order-placed", "amount": {"eq": 0}, "within_days": 30}, p)
    # counts do not change: the order was placed
    assert holds({"event": "order-placed", "count": {"eq": 1}, "within_days": 60}, p)


def test_refunded_lines_lower_category_amounts_a_bare_refund_does_not():
    placed = order_placed_fact(
        order("o1", "2024-04-30T10:00:00+08:00", [("护肤", "A", 2, "100.00"), ("彩妆", "B", 1, "80.00")])
    )
    with_lines = order_refunded_fact(refund("r1", "o1", "100.00", [("护肤", "A", 1, "100.00")]), placed)
    bare = order_refunded_fact(refund("r2", "o1", "50.00"), placed)
    skincare = {"event": "order-placed", "amount": {"eq": 100}, "within_days": 7, "category": "护肤"}
    assert holds(skincare, profile(placed, with_lines))
    assert not holds(skincare, profile(placed, bare))
    assert holds(
        {"event": "order-placed", "amount": {"eq": 130}, "within_days": 7}, profile(placed, with_lines, bare)
    )


def test_a_refund_keeps_its_orders_channel_and_store():
    placed = order_placed_fact(order("o1", "2024-04-30T10:00:00+08:00", channel="mall", store_id="s9"))
    p = profile(placed, order_refunded_fact(refund("r1", "o1", "40.00"), placed))
    assert holds(
        {
            "event": "order-placed",
            "amount": {"eq": 60},
            "within_days": 7,
            "channel": "mall",
            "store_id": "s9",
        },
        p,
    )
    assert holds({"event": "order-placed", "amount": {"eq": 0}, "within_days": 7, "channel": "pos"}, p)


def test_a_refund_needs_its_own_orders_fact():
    placed = order_placed_fact(order("o1", "2024-04-30T10:00:00+08:00"))
    with pytest.raises(ValueError, match="order the refund refers to"):
        order_refunded_fact(refund("r1", "o2", "1.00"), placed)


def test_order_filters_channel_and_store():
    p = profile(
        order_placed_fact(order("o1", "2024-04-30T10:00:00+08:00", channel="pos", store_id="sh-012")),
        order_placed_fact(order("o2", "2024-04-29T10:00:00+08:00", channel="mini-program", store_id=None)),
    )
    assert holds({"event": "order-placed", "count": {"eq": 1}, "within_days": 7, "channel": "pos"}, p)
    assert holds(
        {"event": "order-placed", "count": {"eq": 2}, "within_days": 7, "channel": ["pos", "mini-program"]}, p
    )
    assert holds({"event": "order-placed", "count": {"eq": 1}, "within_days": 7, "store_id": "sh-012"}, p)


def test_message_and_friend_added_filters():
    sent = MessageSent.model_validate(
        {
            "message_id": "m1",
            "external_userid": "wm1",
            "staff_id": "zhang",
            "campaign_id": "c-9",
            "kind": "broadcast",
            "content_ref": "tpl-1",
            "sent_at": "2024-04-30T20:00:00+08:00",
        }
    )
    added = FriendAdded.model_validate(
        {
            "external_userid": "wm1",
            "staff_id": "zhang",
            "state": "poster-sh012",
            "store_id": "sh-012",
            "added_at": "2024-04-01T10:00:00+08:00",
        }
    )
    p = profile(message_sent_fact(sent), friend_added_fact(added))
    assert holds(
        {
            "event": "message-sent",
            "count": {"eq": 1},
            "within_days": 7,
            "kind": "broadcast",
            "campaign_id": "c-9",
        },
        p,
    )
    assert holds({"event": "message-sent", "count": {"eq": 0}, "within_days": 7, "kind": "private"}, p)
    assert holds(
        {"event": "friend-added", "count": {"eq": 1}, "within_days": 3650, "state": "poster-sh012"}, p
    )
    assert holds({"event": "friend-added", "count": {"eq": 0}, "within_days": 3650, "store_id": "sh-013"}, p)


def test_friend_added_key_does_not_depend_on_the_offset_spelling():
    a = {"external_userid": "wm1", "staff_id": "z", "added_at": "2024-04-01T10:00:00+08:00"}
    b = {**a, "added_at": "2024-04-01T02:00:00Z"}
    assert (
        friend_added_fact(FriendAdded.model_validate(a)).key
        == friend_added_fact(FriendAdded.model_validate(b)).key
    )
    assert friend_added_fact(FriendAdded.model_validate(a)).state is None  # no channel code


def test_profile_with_facts_deduplicates_by_natural_key():
    placed = order_placed_fact(order("o1", "2024-04-30T10:00:00+08:00"))
    p = profile().with_facts([placed, placed]).with_facts([placed])
    assert p.facts == (placed,)


# ---------------------------------------------------------------------------------------------
# Recency, attributes, tags, first added
# ---------------------------------------------------------------------------------------------

SPENT_AND_DORMANT = {
    "all": [
        {"event": "order-placed", "amount": {"gte": 500}, "within_days": 90},
        {"no_event": "order-placed", "within_days": 30},
    ]
}


def test_spent_500_in_90_days_and_no_order_for_30_days():
    dormant = profile(fact("order-placed", ago(45), amount=Decimal("600.00")))
    recent = profile(
        fact("order-placed", ago(45), "a", amount=Decimal("600.00")), fact("order-placed", ago(29), "b")
    )
    assert holds(SPENT_AND_DORMANT, dormant)
    assert not holds(SPENT_AND_DORMANT, recent)
    assert holds({"no_event": "order-placed", "within_days": 30}, profile())  # no history at all
    assert holds({"no_event": "order-placed", "within_days": 30, "category": "护肤"}, recent)


def test_attributes_and_missing_values():
    p = profile(
        state="poster-sh012", store_id=None, staff_ids=frozenset({"zhang", "li"}), gender=None, status="lost"
    )
    assert holds({"attr": "state", "eq": "poster-sh012"}, p)
    assert not holds({"attr": "store_id", "eq": "sh-012"}, p)
    assert holds({"attr": "store_id", "neq": "sh-012"}, p)  # missing differs from every value
    assert not holds({"attr": "store_id", "in": ["sh-012"]}, p)
    assert holds({"not": {"attr": "store_id", "eq": "sh-012"}}, p)
    assert holds({"attr": "staff_id", "eq": "li"}, p)
    assert holds({"attr": "staff_id", "in": ["wang", "zhang"]}, p)
    assert holds({"attr": "staff_id", "neq": "wang"}, p)
    assert not holds({"attr": "staff_id", "neq": "li"}, p)
    assert not holds({"attr": "gender", "in": [0, 1, 2]}, p)
    assert holds({"attr": "gender", "neq": 1}, p)
    assert holds({"attr": "status", "eq": "lost"}, p)


def test_tags_match_by_name():
    p = profile(tags=frozenset({"VIP", "护肤达人"}))
    assert holds({"all": [{"tag": "VIP"}]}, p)
    assert not holds({"all": [{"tag": "vip"}]}, p)
    assert holds({"any": [{"tag": "x"}, {"tag": "护肤达人"}]}, p)


@pytest.mark.parametrize(("added_days_ago", "inside"), [(6, False), (7, True), (14, True), (15, False)])
def test_days_since_first_added_between_7_and_14(added_days_ago, inside):
    p = profile(first_added_day=ago(added_days_ago))
    assert holds({"attr": "first_added_at", "days_since": {"gte": 7, "lte": 14}}, p) is inside


def test_first_added_within_days_and_never_added():
    assert holds({"attr": "first_added_at", "within_days": 7}, profile(first_added_day=ago(6)))
    assert not holds({"attr": "first_added_at", "within_days": 7}, profile(first_added_day=ago(7)))
    assert not holds({"attr": "first_added_at", "days_since": {"gte": 0}}, profile())
    assert holds({"not": {"attr": "first_added_at", "days_since": {"gte": 0}}}, profile())


def test_rfm_conditions_need_the_tenants_thresholds():
    with pytest.raises(MissingRfmThresholds):
        holds({"rfm": "重要价值客户"}, profile())
    thresholds = RfmThresholds(30, 2, Decimal("100"), 365)
    assert not holds({"rfm": "一般挽留客户"}, profile(), rfm=thresholds)  # never bought: no class
    p = profile(
        fact("order-placed", ago(3), "a", amount=Decimal("80")),
        fact("order-placed", ago(40), "b", amount=Decimal("80")),
    )
    assert holds({"rfm": "重要价值客户"}, p, rfm=thresholds)


# ---------------------------------------------------------------------------------------------
# next_change
# ---------------------------------------------------------------------------------------------


def nc(rule: dict[str, Any], p: Profile, **kw: Any) -> date | None:
    return next_change(parse_rule(rule), p, TODAY, **kw)


def test_next_change_when_an_order_slides_out_of_the_window():
    rule = {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]}
    p = profile(fact("order-placed", ago(5), "a"), fact("order-placed", ago(20), "b"))
    assert nc(rule, p) == TODAY + timedelta(days=10)  # ago(20) is in the window through day +9


def test_next_change_when_no_order_for_30_days_becomes_true():
    p = profile(fact("order-placed", ago(10)))
    assert nc({"no_event": "order-placed", "within_days": 30}, p) == TODAY + timedelta(days=20)
    assert nc({"no_event": "order-placed", "within_days": 30}, profile()) is None


def test_next_change_for_days_since_thresholds():
    rule = {"attr": "first_added_at", "days_since": {"gte": 7, "lte": 14}}
    assert nc(rule, profile(first_added_day=ago(3))) == TODAY + timedelta(days=4)
    assert nc(rule, profile(first_added_day=ago(10))) == TODAY + timedelta(days=5)  # day 15: out
    assert nc(rule, profile(first_added_day=ago(20))) is None
    assert nc(rule, profile()) is None


def test_next_change_for_a_future_dated_order_and_between_windows():
    future = profile(fact("order-placed", TODAY + timedelta(days=2)))
    assert nc({"event": "order-placed", "count": {"gte": 1}, "within_days": 30}, future) == TODAY + timedelta(
        days=2
    )
    p = profile(fact("message-sent", ago(1)))
    assert nc(
        {"event": "message-sent", "count": {"gte": 1}, "between_days_ago": [7, 14]}, p
    ) == TODAY + timedelta(days=6)


def test_next_change_is_none_for_rules_time_cannot_change():
    p = profile(fact("order-placed", ago(1)), tags=frozenset({"VIP"}))
    assert nc({"all": [{"tag": "VIP"}]}, p) is None
    # the window will pass, but "any" stays true through the tag
    assert (
        nc({"any": [{"tag": "VIP"}, {"event": "order-placed", "count": {"gte": 1}, "within_days": 7}]}, p)
        is None
    )


def test_next_change_for_rfm_recency():
    thresholds = RfmThresholds(30, 1, Decimal("10"), 365)
    p = profile(fact("order-placed", ago(10), amount=Decimal("20")))
    assert nc({"rfm": "重要价值客户"}, p, rfm=thresholds) == TODAY + timedelta(days=21)  # recency 31


# ---------------------------------------------------------------------------------------------
# Property: next_change is exact
# ---------------------------------------------------------------------------------------------

CATS, SKUS, STORES, CAMPAIGNS, STATES = ["护肤", "彩妆"], ["A", "B"], ["s1", "s2"], ["c1", "c2"], ["p1", "p2"]


def _filters(event: str) -> st.SearchStrategy[dict[str, Any]]:
    options = {
        "order-placed": {"channel": ["pos", "mall"], "store_id": STORES, "category": CATS, "sku": SKUS},
        "message-sent": {"kind": ["private", "broadcast"], "campaign_id": CAMPAIGNS},
        "friend-added": {"store_id": STORES, "state": STATES},
    }[event]
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in options.items()})


_windows = st.one_of(
    st.builds(lambda d: {"within_days": d}, st.integers(1, 20)),
    st.builds(lambda a, b: {"between_days_ago": sorted([a, b])}, st.integers(0, 20), st.integers(0, 20)),
)


def _comparison(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(["gte", "gt", "lte", "lt", "eq"]), values, min_size=1, max_size=2)


@st.composite
def _event_rule(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(["order-placed", "message-sent", "friend-added"]))
    filters = draw(_filters(event))
    window = draw(_windows)
    if draw(st.booleans()):
        return {"no_event": event, **window, **filters}
    metrics = ["count", "distinct_days", "amount"] if event == "order-placed" else ["count", "distinct_days"]
    metric = draw(st.sampled_from(metrics))
    bounds = st.sampled_from(["0", "50", "100", "150"]) if metric == "amount" else st.integers(0, 3)
    return {"event": event, metric: draw(_comparison(bounds)), **window, **filters}


_leaves = st.one_of(
    _event_rule(),
    st.builds(lambda c: {"attr": "first_added_at", "days_since": c}, _comparison(st.integers(0, 12))),
    st.builds(lambda d: {"attr": "first_added_at", "within_days": d}, st.integers(1, 12)),
    st.sampled_from(
        [{"tag": "VIP"}, {"attr": "store_id", "eq": "s1"}, {"rfm": "重要价值客户"}, {"rfm": "一般挽留客户"}]
    ),
)
_rules = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda rs: {"all": rs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda rs: {"any": rs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda r: {"not": r}, inner),
    ),
    max_leaves=5,
)


@st.composite
def _profiles(draw: st.DrawFn) -> Profile:
    facts = []
    for i in range(draw(st.integers(0, 6))):
        event_type = draw(st.sampled_from(["order-placed", "order-refunded", "message-sent", "friend-added"]))
        day = TODAY + timedelta(days=draw(st.integers(-25, 3)))
        is_order = event_type in ("order-placed", "order-refunded")
        sign = -1 if event_type == "order-refunded" else 1
        lines = tuple(
            FactLine(
                draw(st.sampled_from(CATS)),
                draw(st.sampled_from(SKUS)),
                sign * Decimal(draw(st.sampled_from(["30", "50"]))),
            )
            for _ in range(draw(st.integers(0, 2)) if is_order else 0)
        )
        facts.append(
            Fact(
                event_type=event_type,
                key=f"k{i}",
                day=day,
                channel=draw(st.sampled_from(["pos", "mall"])) if is_order else None,
                store_id=draw(st.sampled_from([*STORES, None])) if event_type != "message-sent" else None,
                state=draw(st.sampled_from(STATES)) if event_type == "friend-added" else None,
                kind=draw(st.sampled_from(["private", "broadcast"]))
                if event_type == "message-sent"
                else None,
                campaign_id=draw(st.sampled_from([*CAMPAIGNS, None]))
                if event_type == "message-sent"
                else None,
                amount=sum((line.amount for line in lines), Decimal(0)) if is_order else Decimal(0),
                lines=lines,
            )
        )
    first = draw(st.one_of(st.none(), st.integers(-20, 2).map(lambda d: TODAY + timedelta(days=d))))
    return Profile(
        tenant_id="acme",
        external_userid="wm1",
        store_id=draw(st.sampled_from(["s1", None])),
        tags=draw(st.sampled_from([frozenset(), frozenset({"VIP"})])),
        first_added_day=first,
        facts=tuple(facts),
    )


PROPERTY_THRESHOLDS = RfmThresholds(
    recent_within_days=5, frequent_min_orders=2, monetary_min=Decimal("60"), window_days=10
)


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(rule=_rules, p=_profiles())
def test_next_change_is_the_first_day_the_answer_differs(rule, p):
    parsed = parse_rule(rule)
    start = evaluate(parsed, p, TODAY, rfm=PROPERTY_THRESHOLDS)
    change = next_change(parsed, p, TODAY, rfm=PROPERTY_THRESHOLDS)
    # Every step of these rules lies within ~50 days, except RFM's 3650-day horizon.
    probes = set(range(1, 60)) | {3640, 3650, 3660, 4000}
    if change is not None:
        offset = (change - TODAY).days
        assert offset > 0
        probes |= {offset - 1, offset}
        assert evaluate(parsed, p, change, rfm=PROPERTY_THRESHOLDS) != start
    for offset in sorted(probes):
        day = TODAY + timedelta(days=offset)
        if change is not None and day >= change:
            break
        assert evaluate(parsed, p, day, rfm=PROPERTY_THRESHOLDS) == start, day


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(rules=st.lists(_rules, min_size=1, max_size=5), p=_profiles())
def test_assessing_many_rules_at_once_equals_each_alone(rules, p):
    # The processor's hot path shares series and atoms across a contact's rules and stops at the
    # first flip of any rule: it must give each rule's own answer, and the earliest next change.
    parsed = [parse_rule(r) for r in rules]
    values, due = assess_rules(p, [compile_rule(r) for r in parsed], TODAY, rfm=PROPERTY_THRESHOLDS)
    assert values == [evaluate(r, p, TODAY, rfm=PROPERTY_THRESHOLDS) for r in parsed]
    changes = [d for r in parsed if (d := next_change(r, p, TODAY, rfm=PROPERTY_THRESHOLDS)) is not None]
    assert due == (min(changes) if changes else None)


def test_today_is_the_tenants_date_not_utcs():
    # The processor's "today" comes from day_in(now, tz) as well.
    now = datetime(2024, 4, 30, 16, 30, tzinfo=UTC)
    assert day_in(now, SHANGHAI) == TODAY
