"""RFM layering (用户分层): recency, frequency and monetary value into the 8 classic classes.

For a contact on a given day (all counted over the contact's facts, see :mod:`.profile`):

- **R**ecency: days since the last order placed on or before that day;
- **F**requency: orders placed in the last ``window_days`` days (the day included);
- **M**onetary: net amount in the same window (orders minus refunds, refunds dated on their
  order's day).

Each is *high* or *low* against the tenant's :class:`RfmThresholds`, and the three levels name
the class (重要价值客户 = R, F and M all high; 一般挽留客户 = all low; see :data:`CLASS_LEVELS`).
A contact without an order in the last :data:`RFM_HORIZON_DAYS` days has no class: RFM describes
buyers, and the horizon equals the longest rule window, so facts older than that may be pruned
without changing any segment.

Default thresholds come from the tenant's own buyers (:func:`derive_thresholds`, medians).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from statistics import median_low
from typing import Literal

from tag_svc.segments.profile import ZERO, DaySeries, Fact

__all__ = [
    "CLASS_LEVELS",
    "DEFAULT_RFM_THRESHOLDS",
    "RFM_CLASSES",
    "RFM_HORIZON_DAYS",
    "MissingRfmThresholds",
    "RfmClass",
    "RfmHistory",
    "RfmMetrics",
    "RfmThresholds",
    "classify",
    "derive_thresholds",
    "rfm_metrics",
    "thresholds_from_medians",
]

RfmClass = Literal[
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
]

CLASS_LEVELS: dict[RfmClass, tuple[bool, bool, bool]] = {
    # class: (R high, F high, M high). M splits 重要 from 一般; R and F split 价值/发展/保持/挽留.
    "重要价值客户": (True, True, True),
    "重要发展客户": (True, False, True),
    "重要保持客户": (False, True, True),
    "重要挽留客户": (False, False, True),
    "一般价值客户": (True, True, False),
    "一般发展客户": (True, False, False),
    "一般保持客户": (False, True, False),
    "一般挽留客户": (False, False, False),
}
RFM_CLASSES: tuple[RfmClass, ...] = tuple(CLASS_LEVELS)
_CLASS_BY_LEVELS: dict[tuple[bool, bool, bool], RfmClass] = {v: k for k, v in CLASS_LEVELS.items()}

RFM_HORIZON_DAYS = 3650
"""A contact whose last order is more than this many days ago (3650 or more) has no RFM class."""


class MissingRfmThresholds(ValueError):
    """A rule has an ``rfm`` condition but no tenant thresholds were given to the engine."""


@dataclass(frozen=True, slots=True)
class RfmThresholds:
    """Where high turns into low, per tenant.

    - R is high when the days since the last order are ``<= recent_within_days``;
    - F is high when the orders in the window are ``>= frequent_min_orders``;
    - M is high when the net amount in the window is ``>= monetary_min``;
    - the window for F and M is the last ``window_days`` days, today included.
    """

    recent_within_days: int
    frequent_min_orders: int
    monetary_min: Decimal
    window_days: int = 365

    def __post_init__(self) -> None:
        if not 0 <= self.recent_within_days < RFM_HORIZON_DAYS:
            raise ValueError(f"recent_within_days must be in 0..{RFM_HORIZON_DAYS - 1}")
        if self.frequent_min_orders < 1:
            raise ValueError("frequent_min_orders must be at least 1")
        if not self.monetary_min.is_finite() or self.monetary_min < 0:
            raise ValueError("monetary_min must be a non-negative amount")
        if not 1 <= self.window_days <= RFM_HORIZON_DAYS:
            raise ValueError(f"window_days must be in 1..{RFM_HORIZON_DAYS}")


DEFAULT_RFM_THRESHOLDS = RfmThresholds(
    recent_within_days=90, frequent_min_orders=2, monetary_min=Decimal("500.00"), window_days=365
)
"""Used by :func:`derive_thresholds` for a tenant that has no buyers yet."""


@dataclass(frozen=True, slots=True)
class RfmMetrics:
    """One contact's R, F and M on one day."""

    recency_days: int
    frequency: int
    monetary: Decimal


def classify(metrics: RfmMetrics, thresholds: RfmThresholds) -> RfmClass:
    """The class of ``metrics`` under ``thresholds``."""
    levels = (
        metrics.recency_days <= thresholds.recent_within_days,
        metrics.frequency >= thresholds.frequent_min_orders,
        metrics.monetary >= thresholds.monetary_min,
    )
    return _CLASS_BY_LEVELS[levels]


class RfmHistory:
    """A contact's orders and refunds, ready to answer R, F, M and the class on any day.

    Built once per contact; :meth:`change_days` lists every day on which the class may change
    without a new event, so the processor can schedule the next re-evaluation.
    """

    __slots__ = ("_amounts", "_change_days", "_orders")

    def __init__(self, facts: Iterable[Fact]) -> None:
        orders: dict[date, int] = defaultdict(int)
        amounts: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for fact in facts:
            if fact.event_type == "order-placed":
                orders[fact.day] += 1
                amounts[fact.day] += fact.amount
            elif fact.event_type == "order-refunded":
                amounts[fact.day] += fact.amount
        self._orders = DaySeries(orders)
        self._amounts = DaySeries(amounts, ZERO)
        self._change_days: dict[RfmThresholds, list[date]] = {}

    def metrics_at(self, day: date, window_days: int) -> RfmMetrics | None:
        """R, F and M as of ``day``, or ``None`` when the contact is no buyer on that day."""
        last = self._orders.last_on_or_before(day)
        if last is None or (day - last).days >= RFM_HORIZON_DAYS:
            return None
        first = day - timedelta(days=window_days - 1)
        return RfmMetrics(
            recency_days=(day - last).days,
            frequency=int(self._orders.total(first, day)),
            monetary=Decimal(self._amounts.total(first, day)),
        )

    def class_at(self, day: date, thresholds: RfmThresholds) -> RfmClass | None:
        """The class as of ``day`` (``None``: no order in the horizon)."""
        metrics = self.metrics_at(day, thresholds.window_days)
        return None if metrics is None else classify(metrics, thresholds)

    def change_days(self, thresholds: RfmThresholds) -> list[date]:
        """Every day on which :meth:`class_at` may differ from the day before (a superset), in
        increasing order without repeats.

        Computed once per thresholds: every ``rfm`` condition of a contact's rules shares it."""
        cached = self._change_days.get(thresholds)
        if cached is not None:
            return cached
        days: set[date] = set()
        recent = thresholds.recent_within_days
        window = thresholds.window_days
        for day in self._orders.days:
            days.update(
                (
                    day,  # the order comes into view (a future-dated order)
                    day + timedelta(days=recent + 1),  # R turns low
                    day + timedelta(days=RFM_HORIZON_DAYS),  # no longer a buyer
                )
            )
        for day in self._amounts.days:  # order and refund days: F and M windows slide
            days.update((day, day + timedelta(days=window)))
        ordered = self._change_days[thresholds] = sorted(days)
        return ordered


def rfm_metrics(facts: Iterable[Fact], today: date, window_days: int = 365) -> RfmMetrics | None:
    """R, F and M of one contact's ``facts`` as of ``today`` (``None``: not a buyer)."""
    return RfmHistory(facts).metrics_at(today, window_days)


def thresholds_from_medians(
    recency_median: int, frequency_median: int, monetary_median: Decimal, window_days: int = 365
) -> RfmThresholds:
    """Default thresholds from the medians of a tenant's buyers (lower medians, exact values).

    - R high: at most the median days since the last order (ties count as recent);
    - F high: *more* orders than the median. F is a small integer whose median is usually 1;
      "at least the median" would make every buyer frequent;
    - M high: at least the median net amount, and never for a zero amount.
    """
    return RfmThresholds(
        recent_within_days=min(max(recency_median, 0), RFM_HORIZON_DAYS - 1),
        frequent_min_orders=max(frequency_median, 0) + 1,
        monetary_min=max(monetary_median, Decimal("0.01")),
        window_days=window_days,
    )


def derive_thresholds(
    samples: Iterable[RfmMetrics],
    window_days: int = 365,
    fallback: RfmThresholds = DEFAULT_RFM_THRESHOLDS,
) -> RfmThresholds:
    """Thresholds from the tenant's own distribution: one :class:`RfmMetrics` per buyer.

    The medians are *lower* medians (``statistics.median_low``; SQL ``percentile_disc(0.5)``): an
    actual value of the distribution, so Python and PostgreSQL derive identical thresholds.
    Without buyers the ``fallback`` (with this ``window_days``) applies.
    """
    metrics = list(samples)
    if not metrics:
        return RfmThresholds(
            fallback.recent_within_days, fallback.frequent_min_orders, fallback.monetary_min, window_days
        )
    return thresholds_from_medians(
        median_low(m.recency_days for m in metrics),
        median_low(m.frequency for m in metrics),
        median_low(m.monetary for m in metrics),
        window_days,
    )
