"""The behaviour profile segments are evaluated over: one contact's attributes and day-bucketed facts.

A profile is what tag-svc knows about one (tenant, external_userid): a few attributes (from
friend-added / friend-deleted / contact-updated / contact-tagged) and one :class:`Fact` per
behaviour event (an order, a refund, a message, a friend-add). Facts are bucketed by the *day* on
which they happened in the tenant's timezone, because every window in the rule language is a whole
number of calendar days; keeping the day (not the instant) is what lets the Python evaluator and
the SQL compiler agree exactly, with no timezone arithmetic in either engine.

Why one fact per *event* (plus its item lines), not pre-aggregated daily counters:

- "count orders with a skincare line" must count an order once even when three of its lines are
  skincare; a per-(day, category) counter cannot tell one order with three lines from three orders.
- the fact's natural key (order_id, refund_id, message_id, ...) makes applying an event idempotent
  (insert-if-absent), whatever event_id a producer's retry carries.
- a refund is its own fact, dated on its *order's* day and carrying the order's channel and store,
  so "amount" over any window and any filter is a plain signed sum.

The same layout is the ``profile_facts`` / ``profile_fact_lines`` tables of migration 0002.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from scrm_shared.events.contacts import FriendAdded
from scrm_shared.events.messages import MessageSent
from scrm_shared.events.orders import OrderPlaced, OrderRefunded

__all__ = [
    "DEFAULT_TZ",
    "ContactStatus",
    "DaySeries",
    "Fact",
    "FactLine",
    "FactType",
    "Profile",
    "day_in",
    "friend_added_fact",
    "message_sent_fact",
    "order_placed_fact",
    "order_refunded_fact",
]

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
"""A tenant's timezone unless configured otherwise."""

FactType = Literal["order-placed", "order-refunded", "message-sent", "friend-added"]
ContactStatus = Literal["active", "lost", "erased"]
"""As contact-svc: active (followed by at least one staff member), lost (no active follow), erased."""

ZERO = Decimal("0.00")


def day_in(moment: datetime, tz: ZoneInfo = DEFAULT_TZ) -> date:
    """The calendar day on which ``moment`` falls in ``tz`` (the tenant's timezone).

    The one place an instant becomes a day: facts, ``first_added_day`` and "today" all go through
    it, so 23:30 in Shanghai is the same day for every window.
    """
    if moment.utcoffset() is None:
        raise ValueError("day_in needs an aware datetime")
    return moment.astimezone(tz).date()


@dataclass(frozen=True, slots=True)
class FactLine:
    """One item line of an order or refund fact. ``amount`` is signed: refund lines are negative."""

    category: str
    sku: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Fact:
    """One behaviour event of a contact, bucketed by day in the tenant's timezone.

    ``key`` is the event's natural id (order_id, refund_id, message_id, friend-add key): unique per
    (tenant, event_type), so applying an event twice changes nothing. Only the dimensions that
    apply to the type are set (channel/store_id for orders and refunds, kind/campaign_id for
    messages, store_id/state for friend-adds). ``amount`` is signed: an order's paid total, a
    refund's refunded amount negated, 0 for the other types.
    """

    event_type: FactType
    key: str
    day: date
    channel: str | None = None
    store_id: str | None = None
    state: str | None = None
    kind: str | None = None
    campaign_id: str | None = None
    amount: Decimal = ZERO
    lines: tuple[FactLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything segments may look at for one contact of one tenant.

    - ``state`` / ``store_id``: the channel code state and store of the friendship that first
      brought the contact (acquisition channel); every friend-add is also a fact, filterable by
      ``state`` and ``store_id``.
    - ``staff_ids``: staff members who currently follow the contact.
    - ``gender``: as WeCom reports it (0 unknown, 1 male, 2 female), ``None`` when never reported.
    - ``first_added_day``: the day (tenant timezone, see :func:`day_in`) of ``first_added_at``;
      rules read only the day.
    - ``tags``: names of the tags the contact carries (a tag condition matches a name in any group).
    """

    tenant_id: str
    external_userid: str
    state: str | None = None
    store_id: str | None = None
    staff_ids: frozenset[str] = frozenset()
    gender: int | None = None
    status: ContactStatus = "active"
    first_added_at: datetime | None = None
    first_added_day: date | None = None
    tags: frozenset[str] = frozenset()
    facts: tuple[Fact, ...] = field(default=())

    def with_facts(self, facts: Iterable[Fact]) -> Profile:
        """A copy holding ``facts`` (deduplicated by (event_type, key), first wins, like the table)."""
        seen: dict[tuple[str, str], Fact] = {}
        for fact in (*self.facts, *facts):
            seen.setdefault((fact.event_type, fact.key), fact)
        return replace(self, facts=tuple(seen.values()))


class DaySeries:
    """Per-day totals of one measure with prefix sums: any window's total costs O(log n).

    Both the evaluator and RFM ask "total over days [first, last]" many times per contact when
    looking for the next change, so the prefix sums pay off quickly.
    """

    __slots__ = ("_prefix", "days")

    def __init__(self, totals: Mapping[date, int] | Mapping[date, Decimal], zero: int | Decimal = 0) -> None:
        self.days: list[date] = sorted(totals)
        prefix: list[int | Decimal] = [zero]
        running: int | Decimal = zero
        for day in self.days:
            running = running + totals[day]
            prefix.append(running)
        self._prefix = prefix

    def total(self, first: date, last: date) -> int | Decimal:
        """Sum over the days ``first..last`` (both included)."""
        lo = bisect_left(self.days, first)
        hi = bisect_right(self.days, last)
        if hi <= lo:
            return self._prefix[0]
        return self._prefix[hi] - self._prefix[lo]

    def last_on_or_before(self, day: date) -> date | None:
        """The latest day with a total that is not after ``day``."""
        i = bisect_right(self.days, day)
        return self.days[i - 1] if i else None


# ---------------------------------------------------------------------------------------------
# Facts from events. The processor applies these; tests use them to build realistic profiles.
# ---------------------------------------------------------------------------------------------


def order_placed_fact(order: OrderPlaced, tz: ZoneInfo = DEFAULT_TZ) -> Fact:
    """The fact of an order: dated by ``placed_at`` in ``tz``; amount is what the customer paid.

    Lines carry their undiscounted totals (quantity × unit_price): an order-level discount is not
    attributable to a category, so a category-filtered amount is a list-price amount.
    """
    return Fact(
        event_type="order-placed",
        key=order.order_id,
        day=day_in(order.placed_at, tz),
        channel=order.channel,
        store_id=order.store_id,
        amount=order.total_amount,
        lines=tuple(FactLine(line.category, line.sku, line.line_total) for line in order.items),
    )


def order_refunded_fact(refund: OrderRefunded, order: Fact) -> Fact:
    """The fact of a refund of ``order`` (the order's own fact).

    Dated on the order's day with the order's channel and store, so a refund lowers the amount
    exactly where the order raised it (whatever window and filters a rule uses). ``amount`` is
    the refunded amount negated; the refunded lines, when given, are negated line totals. A
    refund without lines lowers unfiltered amounts only: it cannot be attributed to a category.
    """
    if order.event_type != "order-placed" or order.key != refund.order_id:
        raise ValueError("order_refunded_fact needs the fact of the order the refund refers to")
    return Fact(
        event_type="order-refunded",
        key=refund.refund_id,
        day=order.day,
        channel=order.channel,
        store_id=order.store_id,
        amount=-refund.amount,
        lines=tuple(FactLine(line.category, line.sku, -line.line_total) for line in refund.items or ()),
    )


def message_sent_fact(message: MessageSent, tz: ZoneInfo = DEFAULT_TZ) -> Fact:
    """The fact of a message delivered to the contact, dated by ``sent_at``."""
    return Fact(
        event_type="message-sent",
        key=message.message_id,
        day=day_in(message.sent_at, tz),
        kind=message.kind,
        campaign_id=message.campaign_id,
    )


def friend_added_fact(added: FriendAdded, tz: ZoneInfo = DEFAULT_TZ) -> Fact:
    """The fact of a friend-add, keyed by (staff member, UTC time): re-adding later is a new fact.

    An empty ``state`` (not added through a channel code) becomes ``None``, as in the profile.
    """
    return Fact(
        event_type="friend-added",
        key=f"{added.staff_id}@{added.added_at.astimezone(UTC).isoformat()}",
        day=day_in(added.added_at, tz),
        store_id=added.store_id,
        state=added.state or None,
    )
