"""The transactional outbox against real PostgreSQL and a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from scrm_shared.db.migrations import SHARED_MIGRATIONS, migrate
from scrm_shared.db.outbox import (
    NotInTransactionError,
    OutboxRelay,
    enqueue,
    enqueue_event,
    purge_sent,
)
from scrm_shared.db.pool import create_pool
from scrm_shared.kafka.producer import create_producer
from scrm_shared.telemetry import extract_context
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration

NewTopic = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class FakeEvent:
    """Has exactly what enqueue_event relies on: key(), to_bytes() and event_id."""

    subject: str
    seq: int
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def key(self) -> bytes:
        return f"acme:{self.subject}".encode()

    def to_bytes(self) -> bytes:
        return json.dumps({"event_id": str(self.event_id), "subject": self.subject, "seq": self.seq}).encode()


@pytest.fixture
async def pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await migrate(pg_pool, schema=pg_schema, directory=SHARED_MIGRATIONS, track="shared")
    return pg_pool


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = create_producer(kafka_bootstrap)
    await p.start()
    yield p
    await p.stop()


async def add(pool: asyncpg.Pool, topic: str, events: Sequence[FakeEvent]) -> None:
    """Commit ``events`` to the outbox in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue_event(conn, topic, event)


async def unsent(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")


def event_ids(records: Sequence[ConsumerRecord]) -> list[str]:
    return [json.loads(r.value)["event_id"] for r in records]


async def test_enqueue_outside_a_transaction_raises(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(NotInTransactionError):
            await enqueue(conn, topic="t", key=b"k", value=b"v", event_id=uuid.uuid4())
        with pytest.raises(NotInTransactionError):
            await enqueue_event(conn, "t", FakeEvent("c1", 1))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_rolled_back_rows_never_publish(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with pool.acquire() as conn, conn.transaction():
            for seq in range(3):
                await enqueue_event(conn, topic, FakeEvent("c1", seq))
            raise Boom
    committed = FakeEvent("c1", 99)
    await add(pool, topic, [committed])

    relay = OutboxRelay(pool, producer)
    assert await relay.run_once() == 1
    assert await relay.run_once() == 0

    records = await read_topic(kafka_bootstrap, topic, 1, exact=True)
    assert event_ids(records) == [str(committed.event_id)]


async def test_committed_rows_are_published_in_order_with_keys_and_headers(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    headers = [("a", b"\x00\xff binary"), ("a", b"repeated key"), ("source", b"contact-svc")]
    sent: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    for txn in range(4):
        async with pool.acquire() as conn, conn.transaction():
            for i in range(5):
                key = f"acme:c{i % 3}".encode()
                value = f"txn{txn}-row{i}".encode()
                row_headers = headers if i % 2 == 0 else []
                await enqueue(
                    conn, topic=topic, key=key, value=value, event_id=uuid.uuid4(), headers=row_headers
                )
                sent.append((key, value, row_headers))

    relay = OutboxRelay(pool, producer, batch_size=7)
    assert [await relay.run_once() for _ in range(4)] == [7, 7, 6, 0]
    assert await unsent(pool) == 0

    records = await read_topic(kafka_bootstrap, topic, len(sent), exact=True)
    assert [(r.key, r.value, list(r.headers)) for r in records] == sent


async def test_rows_beyond_one_batch_of_a_partition_keep_their_order(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    """A relay round of big rows fills several batches of one partition (256 KiB each): they go
    out one after the other, so the partition holds the rows in id order."""
    topic = await new_topic("outbox")
    async with pool.acquire() as conn, conn.transaction():
        for n in range(40):
            value = f"{n:03d}".encode() + bytes(range(256)) * 40  # ~10 KiB: 400 KiB in all
            await enqueue(conn, topic=topic, key=b"acme:c1", value=value, event_id=uuid.uuid4())

    assert await OutboxRelay(pool, producer, batch_size=100).run_once() == 40

    records = await read_topic(kafka_bootstrap, topic, 40, exact=True)
    assert [r.value[:3] for r in records] == [f"{n:03d}".encode() for n in range(40)]


async def test_enqueue_event_carries_the_active_trace_context(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("handle request") as span:
        await add(pool, topic, [FakeEvent("c1", 1)])
        trace_id = format(span.get_span_context().trace_id, "032x")
    await add(pool, topic, [FakeEvent("c1", 2)])  # no active span: no trace header

    assert await OutboxRelay(pool, producer).run_once() == 2

    traced, untraced = await read_topic(kafka_bootstrap, topic, 2, exact=True)
    traceparent = dict(traced.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id
    assert _trace_id(traced) == trace_id  # what consumers see
    assert "traceparent" not in dict(untraced.headers or ())


def _trace_id(record: ConsumerRecord) -> str:
    span = trace.get_current_span(extract_context(record.headers))
    return format(span.get_span_context().trace_id, "032x")


class CrashAfterAcks(OutboxRelay):
    """Dies like a process killed after the broker acked but before the rows were marked sent."""

    async def mark_sent(self, conn: object, ids: list[int]) -> None:
        raise RuntimeError("crashed between publish and mark")


async def test_crash_between_publish_and_mark_republishes_with_the_same_event_ids(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    events = [FakeEvent(f"c{i % 2}", i) for i in range(6)]
    await add(pool, topic, events)

    with pytest.raises(RuntimeError, match="crashed"):
        await CrashAfterAcks(pool, producer).run_once()
    assert await unsent(pool) == 6
    first = await read_topic(kafka_bootstrap, topic, 6, exact=True)  # acked before the "crash"

    assert await OutboxRelay(pool, producer).run_once() == 6
    assert await unsent(pool) == 0

    # At least once: the topic holds every event twice, with identical event_ids, keys and order.
    records = await read_topic(kafka_bootstrap, topic, 12, exact=True)
    expected = [str(e.event_id) for e in events]
    assert event_ids(first) == expected
    assert event_ids(records) == expected + expected
    assert [r.key for r in records[:6]] == [r.key for r in records[6:]] == [e.key() for e in events]


async def test_while_one_relay_publishes_another_publishes_nothing(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    events = [FakeEvent("c1", i) for i in range(6)]  # one key: order matters
    await add(pool, topic, events)
    entered, release = asyncio.Event(), asyncio.Event()

    class Gated(OutboxRelay):
        async def publish(self, rows: Sequence[asyncpg.Record]) -> None:
            entered.set()
            await release.wait()
            await super().publish(rows)

    first = asyncio.create_task(Gated(pool, producer, batch_size=3).run_once())
    other = OutboxRelay(pool, producer, batch_size=3)
    try:
        await asyncio.wait_for(entered.wait(), 10)
        # Neither the rows the first relay holds, nor the later rows of the same key (publishing
        # those now would put them ahead of the held ones).
        assert await other.run_once() == 0
    finally:
        release.set()
    assert await first == 3
    assert await other.run_once() == 3
    assert await other.run_once() == 0

    records = await read_topic(kafka_bootstrap, topic, 6, exact=True)
    assert event_ids(records) == [str(e.event_id) for e in events]


async def test_two_running_relays_publish_each_row_once_in_key_order(
    pg_dsn: str,
    pg_schema: str,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    new_topic: NewTopic,
) -> None:
    topic = await new_topic("outbox")
    other_pool = await create_pool(pg_dsn, schema=pg_schema, max_size=3)  # a second "process"
    stop = asyncio.Event()
    relays = [
        OutboxRelay(pool, producer, batch_size=10, poll_interval=0.05),
        OutboxRelay(other_pool, producer, batch_size=10, poll_interval=0.05),
    ]
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        # Writers enqueue concurrently while both relays run: 6 subjects x 40 events.
        async def writer(subject: str) -> list[FakeEvent]:
            events = [FakeEvent(subject, seq) for seq in range(40)]
            for chunk in range(0, 40, 4):
                await add(other_pool, topic, events[chunk : chunk + 4])
            return events

        written = await asyncio.gather(*(writer(f"c{n}") for n in range(6)))

        async def all_sent() -> bool:
            return await unsent(pool) == 0

        await wait_for(all_sent)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await other_pool.close()

    total = sum(len(events) for events in written)
    records = await read_topic(kafka_bootstrap, topic, total, exact=True)  # exactly once each
    by_key: dict[bytes, list[str]] = {}
    for record in records:
        assert record.key is not None
        by_key.setdefault(record.key, []).append(json.loads(record.value)["event_id"])
    assert by_key == {events[0].key(): [str(e.event_id) for e in events] for events in written}


async def test_run_wakes_up_on_commit_without_waiting_for_the_poll(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    stop = asyncio.Event()
    relay = OutboxRelay(pool, producer, poll_interval=60.0)
    task = asyncio.create_task(relay.run(stop))

    async def all_sent() -> bool:
        return await unsent(pool) == 0

    try:
        await add(pool, topic, [FakeEvent("c1", 1)])
        await wait_for(all_sent, timeout=10)  # first pass (or the notification) takes it
        await add(pool, topic, [FakeEvent("c1", 2)])
        await wait_for(all_sent, timeout=10)  # relay is idle in a 60 s poll: only NOTIFY wakes it
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)  # stop also ends the idle wait promptly
    await read_topic(kafka_bootstrap, topic, 2, exact=True)


class FlakyProducer:
    """The real producer behind two failures: a refused batch, then a failed ack."""

    def __init__(self, inner: AIOKafkaProducer) -> None:
        self.inner = inner
        self.calls = 0

    def create_batch(self) -> BatchBuilder:
        return self.inner.create_batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return await self.inner.partitions_for(topic)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[object]:
        self.calls += 1
        if self.calls == 1:
            raise KafkaConnectionError("broker unreachable")
        if self.calls == 2:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("no ack"))
            return failed
        return await self.inner.send_batch(batch, topic, partition=partition)


async def test_run_survives_broker_errors_and_retries(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox", partitions=2)
    # Keys of both partitions (0 and 1): two batches a pass, c3's first.
    events = [FakeEvent("c3", 1), FakeEvent("c1", 2)]
    await add(pool, topic, events)
    flaky = FlakyProducer(producer)
    stop = asyncio.Event()
    relay = OutboxRelay(pool, flaky, poll_interval=0.05, backoff=(0.01, 0.05))  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run(stop))

    async def all_sent() -> bool:
        assert not task.done(), "the relay must keep running through broker errors"
        return await unsent(pool) == 0

    try:
        await wait_for(all_sent)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    # Pass 1: the first batch is refused. Pass 2: its ack fails, the second batch did go out.
    # Pass 3: both go out. At least once: 3 records, nothing lost.
    assert flaky.calls == 5
    records = await read_topic(kafka_bootstrap, topic, 3, exact=True)
    assert set(event_ids(records)) == {str(e.event_id) for e in events}  # nothing lost
    # c3's batch was lost once (sent again), c1's went out twice.
    assert Counter(event_ids(records)) == {str(events[0].event_id): 1, str(events[1].event_id): 2}


async def test_purge_deletes_only_rows_sent_long_enough_ago(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    old, recent = FakeEvent("c1", 1), FakeEvent("c1", 2)
    await add(pool, topic, [old, recent])
    assert await OutboxRelay(pool, producer).run_once() == 2
    pending = FakeEvent("c1", 3)
    await add(pool, topic, [pending])
    await pool.execute(
        "UPDATE outbox SET sent_at = now() - interval '48 hours' WHERE event_id = $1", old.event_id
    )
    await pool.execute(
        "UPDATE outbox SET created_at = now() - interval '72 hours' WHERE event_id = $1", pending.event_id
    )

    assert await purge_sent(pool, timedelta(hours=24)) == 1
    assert await purge_sent(pool, timedelta(hours=24)) == 0

    left = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}
    assert left == {recent.event_id, pending.event_id}
