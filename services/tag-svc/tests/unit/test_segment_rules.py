"""The segment rule language: every valid form parses to typed nodes and round-trips through its
canonical JSON; every fault is reported with its JSON path, all faults at once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from tag_svc.segments import InvalidRule, parse_rule, rule_errors
from tag_svc.segments.rules import (
    AllOf,
    AttrCondition,
    Comparison,
    EventCondition,
    Filters,
    FirstAddedCondition,
    NoEventCondition,
    TagCondition,
    Window,
)


def errors(data: Any) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in rule_errors(data)]


# ---------------------------------------------------------------------------------------------
# Valid forms
# ---------------------------------------------------------------------------------------------


def test_acceptance_forms_parse_to_typed_nodes():
    count = parse_rule({"all": [{"event": "order-placed", "count": {"gte": 3}, "within_days": 7}]})
    assert count == AllOf(
        (EventCondition("order-placed", "count", Comparison((("gte", 3),)), Window.within_days(7)),)
    )
    assert parse_rule({"all": [{"tag": "高价值"}]}) == AllOf((TagCondition("高价值"),))


VALID = [
    {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 60}]},
    {"all": [{"tag": "VIP"}]},
    # "bought skincare twice in 60 days"
    {"event": "order-placed", "count": {"gte": 2}, "within_days": 60, "category": "护肤"},
    # "spent 500+ in 90 days and no order for 30 days"
    {
        "all": [
            {"event": "order-placed", "amount": {"gte": "500"}, "within_days": 90},
            {"no_event": "order-placed", "within_days": 30},
        ]
    },
    # "added at store 12's poster"
    {"attr": "state", "eq": "poster-sh012"},
    # "days since first added between 7 and 14"
    {"attr": "first_added_at", "days_since": {"gte": 7, "lte": 14}},
    {"attr": "first_added_at", "within_days": 7},
    {"rfm": "重要价值客户"},
    {"any": [{"attr": "store_id", "in": ["sh-012", "sh-013"]}, {"attr": "staff_id", "neq": "zhangsan"}]},
    {"not": {"attr": "gender", "eq": 2}},
    {"attr": "status", "eq": "active"},
    {"event": "message-sent", "distinct_days": {"gt": 1, "lt": 5}, "between_days_ago": [7, 14]},
    {"event": "message-sent", "count": {"eq": 0}, "within_days": 3650, "kind": ["broadcast", "welcome"]},
    {"event": "friend-added", "count": {"gte": 1}, "within_days": 3650, "state": "poster-sh012"},
    {"event": "order-placed", "amount": {"gt": "99.90"}, "within_days": 30, "sku": "SK-1", "channel": "pos"},
    {"no_event": "message-sent", "between_days_ago": [0, 6], "campaign_id": "c-1"},
]


@pytest.mark.parametrize("data", VALID)
def test_valid_rules_round_trip_through_canonical_json(data):
    rule = parse_rule(data)
    canonical = rule.to_json()
    assert parse_rule(canonical) == rule
    assert parse_rule(canonical).to_json() == canonical


def test_canonical_json_keeps_the_spelling_of_windows_and_amounts():
    rule = parse_rule({"event": "order-placed", "amount": {"gte": 500}, "between_days_ago": [7, 14]})
    assert rule.to_json() == {"event": "order-placed", "amount": {"gte": "500"}, "between_days_ago": [7, 14]}
    assert rule == EventCondition(
        "order-placed", "amount", Comparison((("gte", Decimal("500")),)), Window.between_days_ago(7, 14)
    )


def test_filters_take_one_value_or_a_list():
    rule = parse_rule(
        {"event": "order-placed", "count": {"gte": 1}, "within_days": 1, "category": ["护肤", "彩妆"]}
    )
    assert isinstance(rule, EventCondition)
    assert rule.filters == Filters(category=("护肤", "彩妆"))
    single = parse_rule({"no_event": "order-placed", "within_days": 1, "store_id": "s1"})
    assert single == NoEventCondition("order-placed", Window.within_days(1), Filters(store_id=("s1",)))


def test_first_added_within_days_is_days_since_zero_to_n_minus_one():
    rule = parse_rule({"attr": "first_added_at", "within_days": 7})
    assert rule == FirstAddedCondition(Comparison((("gte", 0), ("lte", 6))), 7)


def test_attr_in_keeps_every_value():
    rule = parse_rule({"attr": "gender", "in": [1, 2]})
    assert rule == AttrCondition("gender", "in", (1, 2))


def test_window_bounds_count_today_as_day_zero():
    today = date(2024, 5, 1)
    assert Window.within_days(1).bounds(today) == (today, today)
    assert Window.within_days(30).bounds(today) == (date(2024, 4, 2), today)
    assert Window.between_days_ago(7, 14).bounds(today) == (date(2024, 4, 17), date(2024, 4, 24))


def test_limits_are_inclusive():
    nested: dict[str, Any] = {"tag": "x"}
    for _ in range(7):  # the tag is the 8th level
        nested = {"not": nested}
    parse_rule(nested)
    parse_rule({"any": [{"tag": f"t{i}"} for i in range(50)]})
    parse_rule({"event": "order-placed", "count": {"gte": 1}, "within_days": 3650})
    parse_rule({"event": "order-placed", "count": {"gte": 1}, "between_days_ago": [0, 3649]})


# ---------------------------------------------------------------------------------------------
# Errors: (rule, path, a phrase of the message)
# ---------------------------------------------------------------------------------------------

E = {"event": "order-placed", "count": {"gte": 1}, "within_days": 30}

ERRORS = [
    ([], "$", "expected a rule object"),
    ({}, "$", "empty rule object"),
    ({"all": []}, "$.all", "at least one rule"),
    ({"all": {"tag": "x"}}, "$.all", "expected an array of rules"),
    ({"all": [{"tag": "x"}], "any": [{"tag": "y"}]}, "$", "one object holds one rule"),
    ({"alll": [{"tag": "x"}]}, "$.alll", "did you mean 'all'"),
    ({"all": [E, {"tag": "x", "grup": "g"}]}, "$.all[1].grup", "unknown key 'grup'"),
    ({"all": [E], "name": "x"}, "$.name", "unknown key 'name'"),
    ({"not": [{"tag": "x"}]}, "$.not", "expected a rule object"),
    ({"all": [{**E, "count": {"gte": -1}}]}, "$.all[0].count.gte", "whole numbers from 0"),
    ({"all": [{**E, "count": {"gte": 1.5}}]}, "$.all[0].count.gte", "whole numbers"),
    ({"all": [{**E, "count": {"gte": True}}]}, "$.all[0].count.gte", "got a boolean"),
    ({**E, "count": {"gtee": 1}}, "$.count.gtee", "did you mean 'gte'"),
    ({**E, "count": {}}, "$.count", "at least one of gte"),
    ({**E, "count": 2}, "$.count", "at least one of gte"),
    ({**E, "cuont": {"gte": 1}}, "$.cuont", "did you mean 'count'"),
    ({**E, "within_days": 0}, "$.within_days", "from 1 to 3650"),
    ({**E, "within_days": 3651}, "$.within_days", "from 1 to 3650"),
    ({**E, "within_days": "30"}, "$.within_days", "got a string"),
    ({"event": "order-placed", "count": {"gte": 1}}, "$", "needs a window"),
    ({**E, "between_days_ago": [0, 7]}, "$", "not both"),
    (
        {"event": "order-placed", "count": {"gte": 1}, "between_days_ago": [5, 2]},
        "$.between_days_ago",
        "must not exceed",
    ),
    (
        {"event": "order-placed", "count": {"gte": 1}, "between_days_ago": [0, 3650]},
        "$.between_days_ago[1]",
        "0 to 3649",
    ),
    (
        {"event": "order-placed", "count": {"gte": 1}, "between_days_ago": [7]},
        "$.between_days_ago",
        "[nearest, farthest]",
    ),
    ({"event": "message-sent", "amount": {"gte": 1}, "within_days": 30}, "$.amount", "order-placed only"),
    ({"event": "order-placed", "amount": {"gte": 12.5}, "within_days": 30}, "$.amount.gte", "decimal string"),
    (
        {"event": "order-placed", "amount": {"gte": "12.345"}, "within_days": 30},
        "$.amount.gte",
        "decimal string",
    ),
    ({"event": "order-placed", "amount": {"lt": "1e3"}, "within_days": 30}, "$.amount.lt", "decimal string"),
    (
        {**E, "count": {"gte": 1}, "amount": {"gte": 1}},
        "$",
        "exactly one of: count, amount, distinct_days; found count, amount",
    ),
    ({"event": "order-placed", "within_days": 30}, "$", "exactly one of: count, amount, distinct_days"),
    ({**E, "kind": "broadcast"}, "$.kind", "does not apply to order-placed; it filters message-sent"),
    ({**E, "channel": "POS"}, "$.channel", "expected one of: pos, mall, mini-program, third-party"),
    ({**E, "channel": "mal"}, "$.channel", "did you mean 'mall'"),
    ({**E, "category": []}, "$.category", "non-empty array"),
    ({**E, "category": ["护肤", 1]}, "$.category[1]", "non-empty string"),
    ({**E, "sku": ""}, "$.sku", "non-empty string"),
    ({**E, "store_id": "s" * 257}, "$.store_id", "at most 256"),
    ({**E, "category": [f"c{i}" for i in range(101)]}, "$.category", "at most 100"),
    (
        {"event": "message-sent", "count": {"gte": 1}, "within_days": 1, "kind": "sms"},
        "$.kind",
        "expected one of: private",
    ),
    (
        {"no_event": "order-placed", "within_days": 30, "count": {"gte": 1}},
        "$.count",
        "no_event takes no 'count'",
    ),
    (
        {"event": "order_placed", "count": {"gte": 1}, "within_days": 1},
        "$.event",
        "did you mean 'order-placed'",
    ),
    ({"no_event": "order", "within_days": 1}, "$.no_event", "expected one of: order-placed"),
    ({"attr": "stor_id", "eq": "x"}, "$.attr", "did you mean 'store_id'"),
    ({"attr": "state"}, "$", "exactly one of: eq, neq, in"),
    ({"attr": "state", "eq": "a", "neq": "b"}, "$", "found eq, neq"),
    ({"attr": "state", "eq": 1}, "$.eq", "non-empty string"),
    ({"attr": "store_id", "in": "sh-012"}, "$.in", "non-empty array"),
    ({"attr": "store_id", "in": ["ok", None]}, "$.in[1]", "got null"),
    ({"attr": "gender", "eq": 3}, "$.eq", "gender is 0 (unknown), 1 (male) or 2 (female)"),
    ({"attr": "gender", "eq": True}, "$.eq", "gender is 0"),
    ({"attr": "status", "eq": "deleted"}, "$.eq", "expected one of: active, lost, erased"),
    ({"attr": "state", "eq": "x", "within_days": 7}, "$.within_days", "does not apply to attr 'state'"),
    ({"attr": "first_added_at", "eq": "x"}, "$.eq", "does not apply to attr 'first_added_at'"),
    ({"attr": "first_added_at"}, "$", "exactly one of: within_days, days_since"),
    ({"attr": "first_added_at", "days_since": {"gte": 7, "lte": "14"}}, "$.days_since.lte", "whole numbers"),
    ({"attr": "first_added_at", "within_days": 0}, "$.within_days", "from 1 to 3650"),
    ({"attr": "first_added_at", "days_since": {"lte": 3651}}, "$.days_since.lte", "from 0 to 3650"),
    ({**E, "count": {"lte": 1_000_000_001}}, "$.count.lte", "from 0 to 1000000000"),
    ({"tag": ""}, "$.tag", "non-empty string"),
    ({"tag": ["VIP"]}, "$.tag", "got an array"),
    ({"rfm": "重要价值"}, "$.rfm", "did you mean '重要价值客户'"),
    ({"rfm": 1}, "$.rfm", "expected one of the RFM classes"),
    ({"tag": "x", "my key": 1}, '$["my key"]', "unknown key 'my key'"),
    ({"count": {"gte": 1}}, "$", "a rule object needs one of: all, any, not"),
]


@pytest.mark.parametrize(("data", "path", "phrase"), ERRORS)
def test_each_fault_is_reported_at_its_json_path(data, path, phrase):
    found = errors(data)
    assert any(p == path and phrase in m for p, m in found), found
    with pytest.raises(InvalidRule):
        parse_rule(data)


def test_every_fault_is_reported_not_only_the_first():
    data = {
        "all": [
            {"event": "order-placed", "cuont": {"gte": 2}, "within_days": 30},
            {"tag": 1},
            {"any": [{"attr": "gender", "eq": 5}, {"rfm": "x"}]},
        ],
        "x": 1,
    }
    paths = [p for p, _ in errors(data)]
    assert paths == [
        "$.x",
        "$.all[0].cuont",
        "$.all[0]",
        "$.all[1].tag",
        "$.all[2].any[0].eq",
        "$.all[2].any[1].rfm",
    ]


def test_invalid_rule_lists_errors_in_the_api_shape():
    with pytest.raises(InvalidRule) as caught:
        parse_rule({"all": [{"tag": ""}]})
    assert caught.value.as_list() == [
        {"path": "$.all[0].tag", "message": "expected a non-empty string, got a blank string"}
    ]
    assert "$.all[0].tag" in str(caught.value)


def test_nesting_deeper_than_eight_levels_is_refused_at_the_ninth():
    nested: dict[str, Any] = {"tag": "x"}
    for _ in range(8):
        nested = {"not": nested}
    assert errors(nested) == [("$" + ".not" * 8, "rules nest at most 8 levels deep")]


def test_more_than_fifty_conditions_are_refused():
    data = {
        "any": [{"tag": f"t{i}"} for i in range(26)]
        + [{"not": {"all": [{"tag": f"u{i}"} for i in range(25)]}}]
    }
    assert errors(data) == [("$", "a rule holds at most 50 conditions; this one holds 51")]


def test_messages_never_echo_values():
    # A rule may carry ids; messages describe types and paths only.
    found = errors({"attr": "state", "eq": ["secret-poster"]})
    assert found == [("$.eq", "expected a non-empty string, got an array")]
