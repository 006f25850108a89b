"""Crashes and concurrent writers: a batch that fails leaves nothing behind, two processors or
two schedules racing on the same contacts write each transition once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from scrm_shared.kafka.consumer import Consumed
from scrm_shared.testing.plugin import wait_for
from tag_svc.processor import SegmentBackfiller, SegmentScheduler, build_segment_handler
from tag_svc.processor import evaluate as evaluate_module
from tag_svc.processor.store import catalog
from tag_svc.processor.store import members as member_store

pytestmark = pytest.mark.integration

TWO_IN_7_DAYS = {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 7}]}
COUNT_OUTBOX = "SELECT count(*) FROM outbox WHERE topic = 'segment-changed'"


def consumed(*events) -> list[Consumed]:  # type: ignore[no-untyped-def]
    return [Consumed(e, e.type, 0, n, e.key(), ()) for n, e in enumerate(events)]


async def test_a_batch_that_fails_midway_leaves_nothing_and_applies_once_on_redelivery(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock, monkeypatch
):
    segment = await seg_api.create(TWO_IN_7_DAYS)
    handle = build_segment_handler(seg_deps, clock=seg_clock)
    batch = consumed(seg_events.order(external_userid="wm1"), seg_events.order(external_userid="wm1"))

    async def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("worker killed while publishing")

    with monkeypatch.context() as patch:
        patch.setattr(evaluate_module, "publish", crash)
        with pytest.raises(RuntimeError):
            await handle(batch)
    for table in (
        "processed_events",
        "profiles",
        "profile_facts",
        "segment_members",
        "segment_schedule",
        "outbox",
    ):
        assert await seg_pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table

    await handle(batch)
    await handle(batch)  # delivered again after the commit
    assert await seg_api.members(segment) == ["wm1"]
    assert await seg_pool.fetchval(COUNT_OUTBOX) == 1


async def test_two_processors_racing_on_one_contact_see_each_others_orders(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock
):
    segment = await seg_api.create(TWO_IN_7_DAYS)
    # Known contacts (a new one's profile insert alone would make the second writer wait).
    await seg_pool.execute(
        "INSERT INTO profiles (tenant_id, external_userid) SELECT $1, 'wm' || g FROM generate_series(0, 9) g",
        seg_events.tenant,
    )
    one, two = (
        build_segment_handler(seg_deps, clock=seg_clock),
        build_segment_handler(seg_deps, clock=seg_clock),
    )
    for n in range(10):
        contact = f"wm{n}"
        # Orders are keyed by order id: one contact's orders may be on two partitions, consumed
        # by two workers at the same time.
        await asyncio.gather(
            one(consumed(seg_events.order(external_userid=contact))),
            two(consumed(seg_events.order(external_userid=contact))),
        )
    assert len(await seg_api.members(segment)) == 10
    assert await seg_pool.fetchval(COUNT_OUTBOX) == 10
    assert (await seg_api.get(segment))["size"] == 10


async def test_two_schedules_apply_each_time_driven_exit_once(seg_api, seg_deps, seg_pool, seg_clock, tenant):
    segment = await seg_api.create(TWO_IN_7_DAYS)
    await seg_pool.execute(
        "INSERT INTO profiles (tenant_id, external_userid) SELECT $1, 'wm' || g FROM generate_series(1, 60) g",
        tenant,
    )
    await seg_pool.execute(
        """INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, amount)
           SELECT $1, 'order-placed', 'o' || g || '-' || d, 'wm' || g, date '2024-05-01' - d, 10
           FROM generate_series(1, 60) g, generate_series(0, 1) d""",
        tenant,
    )
    await SegmentBackfiller(seg_pool, clock=seg_clock).run_once()
    assert (await seg_api.get(segment))["size"] == 60
    seg_clock.advance(days=6)  # 7 May, 16:00 in Shanghai: the 30 April orders left the window
    first, second = (SegmentScheduler(seg_pool, clock=seg_clock, batch_size=7) for _ in range(2))
    while await seg_pool.fetchval("SELECT count(*) FROM segment_schedule WHERE due_day <= '2024-05-07'"):
        await asyncio.gather(first.run_once(), second.run_once())
    assert (await seg_api.get(segment))["size"] == 0
    rows = await seg_pool.fetch("SELECT value FROM outbox WHERE topic = 'segment-changed' ORDER BY id")
    assert len(rows) == 120  # 60 entries (backfill) and 60 exits, none twice
    assert str(uuid.UUID(segment)) in rows[-1]["value"].decode()


THREE_IN_30_DAYS = {"all": [{"event": "order-placed", "count": {"gte": 3}, "within_days": 30}]}


async def test_a_cached_history_is_not_used_after_another_processor_wrote_the_contact(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock
):
    segment = await seg_api.create(THREE_IN_30_DAYS)
    one, two = (
        build_segment_handler(seg_deps, clock=seg_clock),
        build_segment_handler(seg_deps, clock=seg_clock),
    )
    await one(consumed(seg_events.order(external_userid="wm1")))  # `one` caches wm1's history
    await two(consumed(seg_events.order(external_userid="wm1")))  # written behind `one`'s back
    assert await seg_api.members(segment) == []
    await one(consumed(seg_events.order(external_userid="wm1")))
    # `one` must count the order `two` recorded: three orders, a member.
    assert await seg_api.members(segment) == ["wm1"]


async def test_a_batch_in_two_lanes_applies_every_contact_once(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock
):
    segment = await seg_api.create(TWO_IN_7_DAYS)
    handle = build_segment_handler(seg_deps, clock=seg_clock, lanes=2)
    contacts = [f"wm{n:02d}" for n in range(40)]
    batch = consumed(*(seg_events.order(external_userid=c) for c in contacts for _ in range(2)))
    await handle(batch)
    await handle(batch)  # redelivered: claims nothing
    assert sorted(await seg_api.members(segment)) == contacts
    assert await seg_pool.fetchval(COUNT_OUTBOX) == 40
    assert (await seg_api.get(segment))["size"] == 40


def blocked_by(pool, pid: int):  # type: ignore[no-untyped-def]
    """A predicate: some session waits for a lock ``pid`` holds."""

    async def waits() -> bool:
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
        return bool(await pool.fetchval(blocked, pid))

    return waits


async def test_writers_of_one_segment_wait_for_each_other_only_over_its_size(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock, tenant
):
    """The processor's lanes (and two workers) write members of the same segments side by side;
    only the size update, the last statement before a commit, makes one wait for the other."""
    segment = await seg_api.create(TWO_IN_7_DAYS)
    segment_id = uuid.UUID(segment)
    handle = build_segment_handler(seg_deps, clock=seg_clock)
    async with seg_pool.acquire() as other:
        other_pid = await other.fetchval("SELECT pg_backend_pid()")
        async with other.transaction():
            # Another writer in the middle of its transaction: its segments locked, members written.
            await member_store.lock_segments(other, tenant, [segment_id])
            await asyncio.wait_for(
                handle(
                    consumed(seg_events.order(external_userid="wm1"), seg_events.order(external_userid="wm1"))
                ),
                timeout=30,
            )
            assert await seg_api.members(segment) == ["wm1"]
            # The other writer reaches its sizes: the next writer of this segment waits for its commit.
            await member_store.apply_sizes(other, tenant, seg_clock().date(), {segment_id: (0, 0)})
            second = asyncio.create_task(
                handle(
                    consumed(seg_events.order(external_userid="wm2"), seg_events.order(external_userid="wm2"))
                )
            )
            await wait_for(blocked_by(seg_pool, other_pid), timeout=30)
            assert not second.done()
        await asyncio.wait_for(second, timeout=30)
    assert sorted(await seg_api.members(segment)) == ["wm1", "wm2"]
    assert (await seg_api.get(segment))["size"] == 2


async def test_a_segment_deleted_while_a_batch_evaluates_it_gets_no_members_and_no_events(
    seg_api, seg_deps, seg_events, seg_pool, seg_clock, tenant
):
    kept = await seg_api.create(TWO_IN_7_DAYS)
    doomed = await seg_api.create(TWO_IN_7_DAYS)
    handle = build_segment_handler(seg_deps, clock=seg_clock)
    await handle(consumed(seg_events.order(external_userid="wm0")))  # the segments are in its view
    async with seg_pool.acquire() as deleting:
        deleting_pid = await deleting.fetchval("SELECT pg_backend_pid()")
        async with deleting.transaction():
            assert await catalog.delete_segment(deleting, tenant, uuid.UUID(doomed)) is not None
            batch = asyncio.create_task(handle(consumed(seg_events.order(external_userid="wm0"))))
            await wait_for(blocked_by(seg_pool, deleting_pid), timeout=30)
        # Deleted: the batch's member rows of that segment cannot be written; it evaluates again.
        await asyncio.wait_for(batch, timeout=30)
    assert await seg_api.members(kept) == ["wm0"]
    assert (
        await seg_pool.fetchval(
            "SELECT count(*) FROM segment_members WHERE segment_id = $1", uuid.UUID(doomed)
        )
        == 0
    )
    values = [
        r["value"] for r in await seg_pool.fetch("SELECT value FROM outbox WHERE topic = 'segment-changed'")
    ]
    assert len(values) == 1 and kept.encode() in values[0]
