"""The live membership processor on the real broker and PostgreSQL: orders in, members and
segment-changed events out, exactly once; pending orders; tags; erasure."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from scrm_shared.testing.plugin import wait_for
from tag_svc.processor.schedule import SegmentScheduler

pytestmark = pytest.mark.integration

TWO_ORDERS_IN_30_DAYS = {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]}


def euid() -> str:
    return f"wm{uuid.uuid4().hex[:16]}"


async def test_two_orders_in_30_days_enter_once_under_redelivery(
    seg_worker,
    seg_api,
    seg_events,
    seg_send,
    seg_published,
    seg_pool,
    seg_assigned_consumer,
    seg_consume_until_idle,
):
    segment = await seg_api.create(TWO_ORDERS_IN_30_DAYS)
    await seg_api.wait_live(segment)
    buyer, other = euid(), euid()
    first, second = seg_events.order(external_userid=buyer), seg_events.order(external_userid=buyer)
    await seg_send(first, seg_events.order(external_userid=other))
    await wait_for(lambda: _facts(seg_pool, 2))
    assert await seg_api.members(segment) == []

    await seg_send(second)
    await seg_api.wait_members(segment, {buyer})
    (entered,) = await seg_published()
    assert entered["segment_id"] == segment
    assert entered["external_userid"] == buyer
    assert (entered["change"], entered["cause"], entered["cause_event_id"]) == (
        "entered",
        "event",
        str(second.event_id),
    )

    # The same events again (a producer retry), the same order under a new event_id (a re-send),
    # and then a whole second pass over the topics from the start (a new consumer group).
    await seg_send(first, second, seg_events.order(order_id=second.data.order_id, external_userid=buyer))
    await wait_for(lambda: _claimed(seg_pool, 4))
    again = await seg_assigned_consumer()
    try:
        await seg_consume_until_idle(again)
    finally:
        await again.stop()

    assert await seg_api.members(segment) == [buyer]
    assert len(await seg_published()) == 1
    assert await seg_pool.fetchval("SELECT count(*) FROM profile_facts") == 3
    assert (await seg_api.get(segment))["size"] == 1


async def _facts(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM profile_facts") == n


async def _claimed(pool: asyncpg.Pool, n: int) -> bool:
    return (
        await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'tag-svc:segments'") == n
    )


async def test_pending_order_and_refund_apply_when_the_contact_is_identified(
    seg_worker, seg_api, seg_events, seg_send, seg_published, seg_pool
):
    any_order = await seg_api.create(
        {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 30}]}
    )
    big_spender = await seg_api.create(
        {"all": [{"event": "order-placed", "amount": {"gte": "100"}, "within_days": 30}]}
    )
    member = euid()
    order = seg_events.order(member_id="M-1", amount="128.50")
    await seg_send(order, seg_events.refund(order.data.order_id, "50.00"))

    async def pending() -> bool:
        return (
            await seg_pool.fetchval(
                "SELECT (SELECT count(*) FROM pending_orders) + (SELECT count(*) FROM pending_refunds)"
            )
            == 2
        )

    await wait_for(pending)
    identified = seg_events.identified(member, member_id="M-1")
    await seg_send(identified)
    await seg_api.wait_members(any_order, {member})
    assert await seg_api.members(big_spender) == []  # 128.50 - 50.00: the refund came with it
    (entered,) = await seg_published()
    assert (entered["segment_id"], entered["cause_event_id"]) == (any_order, str(identified.event_id))
    assert await seg_pool.fetchval("SELECT count(*) FROM pending_orders") == 0
    assert await seg_pool.fetchval("SELECT count(*) FROM pending_refunds") == 0

    # Later orders with only the member id resolve at once.
    await seg_send(seg_events.order(member_id="M-1", amount="30.00"))
    await seg_api.wait_members(big_spender, {member})


async def test_tag_segment_follows_contact_tagged(seg_worker, seg_api, seg_events, seg_send, seg_published):
    segment = await seg_api.create({"all": [{"tag": "高价值"}]})
    contact = euid()
    await seg_send(
        seg_events.tagged(contact, "高价值", tag_id="t1"), seg_events.tagged(contact, "高价值", tag_id="t2")
    )
    await seg_api.wait_members(segment, {contact})
    # The name stays while a tag of that name (in another group) stays.
    await seg_send(seg_events.tagged(contact, "高价值", "removed", tag_id="t1"))
    await seg_send(seg_events.tagged(contact, "高价值", "removed", tag_id="t2"))
    await seg_api.wait_members(segment, set())
    assert [(e["change"], e["cause"]) for e in await seg_published()] == [
        ("entered", "event"),
        ("exited", "event"),
    ]


async def test_exit_when_the_window_passes(
    seg_worker, seg_api, seg_events, seg_send, seg_published, seg_clock, seg_pool
):
    segment = await seg_api.create(
        {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 7}]}
    )
    contact = euid()
    # 1 May 18:00 in Shanghai; the first order on 30 April leaves the 7-day window on 7 May.
    await seg_send(
        seg_events.order(seg_clock.now - timedelta(days=1), external_userid=contact),
        seg_events.order(external_userid=contact),
    )
    await seg_api.wait_members(segment, {contact})
    assert str(await seg_pool.fetchval("SELECT due_day FROM segment_schedule")) == "2024-05-07"

    seg_clock.advance(days=5)  # 6 May: nothing changes
    assert await seg_worker.scheduler.run_once() == 0
    delays_before = _delays("time")
    seg_clock.advance(hours=6, seconds=30)  # 7 May 00:00:30 in Shanghai
    await seg_api.wait_members(segment, set())
    exited = (await seg_published())[-1]
    assert (exited["change"], exited["cause"], exited["at"]) == (
        "exited",
        "time",
        "2024-05-07T00:00:00+08:00",
    )
    # One order left: the answer can never change again without a new event, so nothing is due.
    assert await seg_pool.fetchval("SELECT count(*) FROM segment_schedule") == 0
    # Operators see how long after its moment the time-driven change was applied: 30 s here.
    assert _delays("time") == (delays_before[0] + 1, delays_before[1] + 30.0)


def _delays(cause: str) -> tuple[float, float]:
    """(count, sum) of the processor's apply delays for ``cause`` so far."""
    labels = {"cause": cause}
    return (
        REGISTRY.get_sample_value("scrm_segment_apply_delay_seconds_count", labels) or 0.0,
        REGISTRY.get_sample_value("scrm_segment_apply_delay_seconds_sum", labels) or 0.0,
    )


async def test_the_delay_from_kafka_to_the_commit_is_measured_per_event(
    seg_worker, seg_api, seg_events, seg_send
):
    segment = await seg_api.create(TWO_ORDERS_IN_30_DAYS)
    await seg_api.wait_live(segment)
    count, total = _delays("event")
    buyer = euid()
    await seg_send(seg_events.order(external_userid=buyer), seg_events.order(external_userid=buyer))
    await seg_api.wait_members(segment, {buyer})

    async def observed() -> bool:
        return _delays("event")[0] == count + 2

    await wait_for(observed)
    # Wall-clock seconds from the records' timestamps (the test clock stands in 2024: a delay
    # measured against it would be years).
    assert 0 <= _delays("event")[1] - total < 30


async def test_erasure_ends_memberships_for_good(
    seg_worker, seg_api, seg_events, seg_send, seg_published, seg_pool
):
    segment = await seg_api.create(
        {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 30}]}
    )
    contact = euid()
    await seg_send(seg_events.added(contact, gender=2), seg_events.order(external_userid=contact))
    await seg_api.wait_members(segment, {contact})

    await seg_send(seg_events.erased(contact), seg_events.order(external_userid=contact))
    await seg_api.wait_members(segment, set())
    await wait_for(lambda: _claimed(seg_pool, 4))
    assert [(e["change"], e["cause"]) for e in await seg_published()] == [
        ("entered", "event"),
        ("exited", "erased"),
    ]
    row = await seg_pool.fetchrow("SELECT status, gender, staff_ids FROM profiles")
    assert dict(row) == {"status": "erased", "gender": None, "staff_ids": []}
    assert await seg_pool.fetchval("SELECT count(*) FROM profile_facts") == 0


async def test_pending_orders_of_identities_that_never_link_expire(
    seg_worker, seg_events, seg_send, seg_pool
):
    old, fresh = seg_events.order(member_id="M-old"), seg_events.order(member_id="M-new")
    await seg_send(old, seg_events.refund(old.data.order_id, "10.00"), fresh)

    async def queued() -> bool:
        return await seg_pool.fetchval("SELECT count(*) FROM pending_orders") == 2

    await wait_for(queued)
    await wait_for(lambda: _pending_refunds(seg_pool, 1))
    await seg_pool.execute(
        "UPDATE pending_orders SET received_at = now() - interval '181 days' WHERE order_id = $1",
        old.data.order_id,
    )
    await seg_pool.execute("UPDATE pending_refunds SET received_at = now() - interval '181 days'")

    scheduler = SegmentScheduler(seg_pool, pending_ttl=timedelta(days=180), purge_every=3600)
    assert await scheduler.purge_if_due() == (1, 1)
    assert await seg_pool.fetch("SELECT order_id FROM pending_orders") == [(fresh.data.order_id,)]
    assert await seg_pool.fetchval("SELECT count(*) FROM pending_refunds") == 0
    # Once an hour: the next round does not scan again.
    assert await scheduler.purge_if_due() is None


async def _pending_refunds(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM pending_refunds") == n
