"""RFM layering: the 8 classes, threshold edges, metrics over facts, and median-derived defaults."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from tag_svc.segments import Fact, Profile, evaluate, parse_rule
from tag_svc.segments.rfm import (
    CLASS_LEVELS,
    DEFAULT_RFM_THRESHOLDS,
    RFM_CLASSES,
    RFM_HORIZON_DAYS,
    RfmHistory,
    RfmMetrics,
    RfmThresholds,
    classify,
    derive_thresholds,
    rfm_metrics,
    thresholds_from_medians,
)

TODAY = date(2024, 5, 1)
T = RfmThresholds(
    recent_within_days=30, frequent_min_orders=3, monetary_min=Decimal("1000.00"), window_days=365
)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def order(days_ago: int, amount: str, key: str | None = None) -> Fact:
    return Fact("order-placed", key or f"o{days_ago}-{amount}", ago(days_ago), amount=Decimal(amount))


def refund(days_ago: int, amount: str, key: str) -> Fact:
    return Fact("order-refunded", key, ago(days_ago), amount=-Decimal(amount))


def test_there_are_eight_classes_one_per_combination_of_levels():
    assert len(RFM_CLASSES) == 8
    assert len(set(CLASS_LEVELS.values())) == 8
    assert CLASS_LEVELS["重要价值客户"] == (True, True, True)
    assert CLASS_LEVELS["一般挽留客户"] == (False, False, False)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (RfmMetrics(10, 5, Decimal("2000")), "重要价值客户"),
        (RfmMetrics(10, 1, Decimal("2000")), "重要发展客户"),
        (RfmMetrics(90, 5, Decimal("2000")), "重要保持客户"),
        (RfmMetrics(90, 1, Decimal("2000")), "重要挽留客户"),
        (RfmMetrics(10, 5, Decimal("10")), "一般价值客户"),
        (RfmMetrics(10, 1, Decimal("10")), "一般发展客户"),
        (RfmMetrics(90, 5, Decimal("10")), "一般保持客户"),
        (RfmMetrics(90, 1, Decimal("10")), "一般挽留客户"),
    ],
)
def test_classify(metrics, expected):
    assert classify(metrics, T) == expected


def test_thresholds_themselves_count_as_high():
    assert classify(RfmMetrics(30, 3, Decimal("1000.00")), T) == "重要价值客户"
    assert classify(RfmMetrics(31, 2, Decimal("999.99")), T) == "一般挽留客户"


def test_metrics_over_facts():
    facts = [
        order(2, "300.00", "a"),
        order(40, "900.00", "b"),
        refund(40, "200.00", "r"),  # a refund sits on its order's day
        order(400, "5000.00", "old"),  # outside the 365-day window
        order(-3, "50.00", "future"),  # not placed yet as of today
    ]
    assert rfm_metrics(facts, TODAY) == RfmMetrics(recency_days=2, frequency=2, monetary=Decimal("1000.00"))
    assert RfmHistory(facts).class_at(TODAY, T) == "重要发展客户"
    assert rfm_metrics(facts, TODAY, window_days=30) == RfmMetrics(2, 1, Decimal("300.00"))


def test_no_order_within_the_horizon_means_no_class():
    assert rfm_metrics([], TODAY) is None
    assert rfm_metrics([refund(1, "10", "r")], TODAY) is None
    assert rfm_metrics([order(RFM_HORIZON_DAYS - 1, "1")], TODAY) is not None
    assert rfm_metrics([order(RFM_HORIZON_DAYS, "1")], TODAY) is None


def test_change_days_include_recency_window_and_horizon():
    history = RfmHistory([order(10, "100")])
    days = history.change_days(T)
    assert ago(10) + timedelta(days=31) in days  # recency 31 > 30
    assert ago(10) + timedelta(days=365) in days  # leaves the F/M window
    assert ago(10) + timedelta(days=RFM_HORIZON_DAYS) in days


def test_rfm_rule_uses_the_thresholds_given():
    p = Profile("acme", "wm1", facts=(order(5, "1200.00", "a"), order(6, "10", "b"), order(7, "10", "c")))
    assert evaluate(parse_rule({"rfm": "重要价值客户"}), p, TODAY, rfm=T)
    stricter = RfmThresholds(30, 4, Decimal("1000.00"), 365)
    assert evaluate(parse_rule({"rfm": "重要发展客户"}), p, TODAY, rfm=stricter)


def test_derive_thresholds_from_lower_medians():
    samples = [
        RfmMetrics(5, 1, Decimal("100.00")),
        RfmMetrics(20, 1, Decimal("300.00")),
        RfmMetrics(40, 2, Decimal("800.00")),
        RfmMetrics(90, 4, Decimal("2000.00")),
    ]
    # lower medians: recency 20, frequency 1, monetary 300
    assert derive_thresholds(samples) == RfmThresholds(20, 2, Decimal("300.00"), 365)
    assert derive_thresholds(samples, window_days=180).window_days == 180


def test_derive_thresholds_without_buyers_falls_back():
    assert derive_thresholds([]) == DEFAULT_RFM_THRESHOLDS
    assert derive_thresholds([], window_days=90) == RfmThresholds(
        DEFAULT_RFM_THRESHOLDS.recent_within_days,
        DEFAULT_RFM_THRESHOLDS.frequent_min_orders,
        DEFAULT_RFM_THRESHOLDS.monetary_min,
        90,
    )


def test_thresholds_from_medians_keep_levels_meaningful():
    t = thresholds_from_medians(5000, 0, Decimal("0.00"))
    assert t.recent_within_days == RFM_HORIZON_DAYS - 1
    assert t.frequent_min_orders == 1
    assert t.monetary_min == Decimal("0.01")  # a zero amount is never "high"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recent_within_days": -1},
        {"recent_within_days": RFM_HORIZON_DAYS},
        {"frequent_min_orders": 0},
        {"monetary_min": Decimal("-1")},
        {"monetary_min": Decimal("NaN")},
        {"window_days": 0},
        {"window_days": RFM_HORIZON_DAYS + 1},
    ],
)
def test_thresholds_are_validated(kwargs):
    base = {
        "recent_within_days": 30,
        "frequent_min_orders": 2,
        "monetary_min": Decimal("1"),
        "window_days": 365,
    }
    with pytest.raises(ValueError):
        RfmThresholds(**(base | kwargs))
