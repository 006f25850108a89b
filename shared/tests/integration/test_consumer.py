"""The batch consume loop against a real broker: validation, dead-lettering, commit-after-apply."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from scrm_shared.events import OrderPlacedEvent, new_event, parse_event
from scrm_shared.kafka.consumer import BatchConsumer, Consumed
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration


def order(order_id: str, amount: str = "128.50", tenant: str = "acme") -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id=tenant,
        source="pos-sh-012",
        data={
            "order_id": order_id,
            "channel": "pos",
            "store_id": "sh-012",
            "customer": {"external_userid": "wmAbc123"},
            "items": [
                {"sku": "SK-FTE-230", "category": "护肤", "quantity": 1, "unit_price": Decimal(amount)}
            ],
            "total_amount": Decimal(amount),
            "currency": "CNY",
            "placed_at": datetime.now(UTC),
        },
    )


@pytest.fixture
async def producer(kafka_bootstrap: str):
    p = create_producer(kafka_bootstrap)
    await p.start()
    yield p
    await p.stop()


def make_consumer(
    kafka_bootstrap: str, topic: str, dlq: str, producer: AIOKafkaProducer, handler, group: str | None = None
) -> BatchConsumer:
    return BatchConsumer(
        bootstrap=kafka_bootstrap,
        group_id=group or f"g-{uuid.uuid4().hex[:8]}",
        topics=[topic],
        handler=handler,
        producer=producer,
        service="test-svc",
        dead_letter_topic=dlq,
        topic_contracts={topic: "order-placed"},
        retry_backoff=(0.01, 0.05),
    )


async def test_bad_messages_are_dead_lettered_and_good_ones_still_processed(
    kafka_bootstrap, new_topic, producer
):
    topic, dlq = await new_topic("orders"), await new_topic("dlq")
    good1, good2 = order("A-1"), order("A-2")
    friend_payload = json.loads(good1.to_bytes())
    friend_payload["type"] = "friend-added"
    missing = json.loads(good1.to_bytes())
    del missing["data"]["items"]
    float_money = json.loads(good1.to_bytes())
    float_money["data"]["total_amount"] = 128.5
    float_money["data"]["items"][0]["unit_price"] = 128.5
    garbage = b"\xff\xfe not json at all"
    values = [
        garbage,
        good1.to_bytes(),
        json.dumps(friend_payload).encode(),
        json.dumps(missing).encode(),
        json.dumps(float_money).encode(),
        good2.to_bytes(),
    ]
    sent_from = datetime.now(UTC).timestamp()
    for v in values:
        await producer.send_and_wait(
            topic, v, key=b"acme:A", headers=[("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01")]
        )

    handled: list[Consumed] = []

    async def handler(batch: Sequence[Consumed]) -> None:
        handled.extend(batch)

    consumer = make_consumer(kafka_bootstrap, topic, dlq, producer, handler)
    await consumer.start()
    try:

        async def all_seen() -> bool:
            await consumer.poll_once()
            return consumer.stats.consumed + consumer.stats.dead_lettered >= len(values)

        await wait_for(all_seen, timeout=30)
        committed = await consumer.consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()

    assert [c.event.data.order_id for c in handled] == ["A-1", "A-2"]
    # Each event carries its record's Kafka timestamp (the producer's send time here).
    assert all(
        c.timestamp_ms is not None and sent_from - 5 <= c.timestamp_ms / 1000 <= sent_from + 60
        for c in handled
    )
    assert committed == len(values)
    labels = {"service": "test-svc", "topic": topic}
    assert REGISTRY.get_sample_value("scrm_consumer_lag", {**labels, "partition": "0"}) == 0
    assert REGISTRY.get_sample_value("scrm_events_consumed_total", labels) == 2
    dead_kinds = ("undecodable", "invalid")
    assert (
        sum(
            REGISTRY.get_sample_value("scrm_events_dead_lettered_total", {**labels, "kind": k}) or 0
            for k in dead_kinds
        )
        == 4
    )

    dead = await read_topic(kafka_bootstrap, dlq, 4)
    records = [parse_event("dead-letter", r.value) for r in dead]
    assert [d.data.offset for d in records] == [0, 2, 3, 4]
    assert [d.data.error_kind for d in records] == ["undecodable", "invalid", "invalid", "invalid"]
    assert base64.b64decode(records[0].data.value_b64) == garbage
    assert all(d.data.topic == topic and d.data.consumer_group == consumer.group_id for d in records)
    assert "items" in records[2].data.error
    assert "total_amount" in records[3].data.error or "unit_price" in records[3].data.error
    assert records[0].tenant_id == "acme"
    assert dict(dead[0].headers)["traceparent"].startswith(b"00-")


async def test_a_handler_failure_on_one_event_dead_letters_only_that_event(
    kafka_bootstrap, new_topic, producer
):
    topic, dlq = await new_topic("orders"), await new_topic("dlq")
    events = [order(f"B-{i}") for i in range(5)]
    for e in events:
        await producer.send_and_wait(topic, e.to_bytes(), key=e.key())

    applied: list[str] = []

    async def handler(batch: Sequence[Consumed]) -> None:
        if any(c.event.data.order_id == "B-3" for c in batch):
            raise ValueError("constraint violated")
        applied.extend(c.event.data.order_id for c in batch)

    consumer = make_consumer(kafka_bootstrap, topic, dlq, producer, handler)
    await consumer.start()
    try:

        async def done() -> bool:
            await consumer.poll_once()
            return len(applied) + consumer.stats.dead_lettered >= 5

        await wait_for(done, timeout=30)
    finally:
        await consumer.stop()
    assert sorted(applied) == ["B-0", "B-1", "B-2", "B-4"]
    dead = await read_topic(kafka_bootstrap, dlq, 1)
    record = parse_event("dead-letter", dead[0].value)
    assert record.data.error_kind == "handler"
    assert record.data.offset == 3
    assert "ValueError" in record.data.error


async def test_an_outage_is_retried_not_dead_lettered(kafka_bootstrap, new_topic, producer):
    topic, dlq = await new_topic("orders"), await new_topic("dlq")
    await producer.send_and_wait(topic, order("C-1").to_bytes(), key=b"acme:C-1")
    calls = 0
    applied: list[str] = []

    async def handler(batch: Sequence[Consumed]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionRefusedError("database down")
        applied.extend(c.event.data.order_id for c in batch)

    consumer = make_consumer(kafka_bootstrap, topic, dlq, producer, handler)
    await consumer.start()
    try:

        async def done() -> bool:
            await consumer.poll_once()
            return bool(applied)

        await wait_for(done, timeout=30)
    finally:
        await consumer.stop()
    assert applied == ["C-1"]
    assert calls == 4
    assert consumer.stats.dead_lettered == 0


class Crash(BaseException):
    """Stands for the process dying mid-batch (not an Exception: nothing may catch it)."""


async def test_offsets_are_committed_only_after_the_handler_applied_the_batch(
    kafka_bootstrap, new_topic, producer
):
    topic, dlq = await new_topic("orders"), await new_topic("dlq")
    for i in range(3):
        await producer.send_and_wait(topic, order(f"D-{i}").to_bytes(), key=b"acme:D")
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def crashing(batch: Sequence[Consumed]) -> None:
        raise Crash

    first = make_consumer(kafka_bootstrap, topic, dlq, producer, crashing, group=group)
    await first.start()
    try:
        with pytest.raises(Crash):

            async def never() -> bool:
                await first.poll_once()
                return False

            await wait_for(never, timeout=30)
        assert await first.consumer.committed(TopicPartition(topic, 0)) is None
    finally:
        await first.stop()

    applied: list[str] = []

    async def handler(batch: Sequence[Consumed]) -> None:
        applied.extend(c.event.data.order_id for c in batch)

    second = make_consumer(kafka_bootstrap, topic, dlq, producer, handler, group=group)
    await second.start()
    try:

        async def done() -> bool:
            await second.poll_once()
            return len(applied) >= 3

        await wait_for(done, timeout=30)
        assert await second.consumer.committed(TopicPartition(topic, 0)) == 3
    finally:
        await second.stop()
    assert applied == ["D-0", "D-1", "D-2"]
