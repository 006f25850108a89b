"""The machine's limit for our events: produce rate and raw consume (+ decode, + validation).

Every processor benchmark reports its throughput as a ratio to ``consume_validate_per_s``, the
rate at which one asyncio process can consume order-placed events with aiokafka, decode the JSON
and validate them against the contract: no processor that validates can beat it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import BenchContext, Figure
from scrm_shared.events import OrderPlacedEvent, new_event, parse_event
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import TopicSpec, ensure_topics

EVENTS = 200_000
PARTITIONS = 6
NAME = "limits"


def sample_events(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """``n`` realistic order-placed events as (key, value) bytes."""
    rng = random.Random(seed)
    skus = [
        ("SK-FTE-230", "护肤", Decimal("1540.00")),
        ("MAC-RB-CHL", "彩妆", Decimal("190.00")),
        ("FEI-A2-900", "母婴", Decimal("328.00")),
        ("LJ-MQ-250", "茶饮", Decimal("588.00")),
    ]
    out = []
    for i in range(n):
        sku, category, price = rng.choice(skus)
        qty = rng.choice([1, 2])
        event = new_event(
            OrderPlacedEvent,
            tenant_id=rng.choice(["demo", "lotus-baby", "west-lake-tea"]),
            source="pos-sh-012",
            data={
                "order_id": f"ORD{i:010d}",
                "channel": "pos",
                "store_id": "sh-012",
                "staff_id": "zhang.wei",
                "customer": {"external_userid": f"wm{uuid.UUID(int=rng.getrandbits(128)).hex}"},
                "items": [{"sku": sku, "category": category, "quantity": qty, "unit_price": price}],
                "total_amount": price * qty,
                "currency": "CNY",
                "placed_at": datetime.now(UTC),
            },
        )
        out.append((event.key(), event.to_bytes()))
    return out


async def _consume_all(ctx: BenchContext, topic: str, work) -> float:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=ctx.bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < EVENTS:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for r in records:
                    work(r.value)
                seen += sum(len(v) for v in batch.values())
        return EVENTS / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def run(ctx: BenchContext) -> list[Figure]:
    events = sample_events(EVENTS)
    avg_size = sum(len(v) for _, v in events) / len(events)
    topic = f"bench-order-placed-{uuid.uuid4().hex[:8]}"
    await ensure_topics(ctx.bootstrap, [TopicSpec(topic, partitions=PARTITIONS)])

    producer = create_producer(ctx.bootstrap, client_id="bench")
    await producer.start()
    try:
        started = time.perf_counter()
        for key, value in events:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
        produce_rate = EVENTS / (time.perf_counter() - started)
    finally:
        await producer.stop()

    raw = await _consume_all(ctx, topic, lambda v: None)
    decoded = await _consume_all(ctx, topic, json.loads)
    validated = await _consume_all(ctx, topic, lambda v: parse_event("order-placed", v))
    return [
        Figure(NAME, "event_bytes", avg_size, "bytes/event"),
        Figure(NAME, "produce_per_s", produce_rate, "events/s", "idempotent, acks=all, lz4"),
        Figure(NAME, "consume_raw_per_s", raw, "events/s"),
        Figure(NAME, "consume_decode_per_s", decoded, "events/s", "json.loads"),
        Figure(NAME, "consume_validate_per_s", validated, "events/s", "the limit processors compare to"),
    ]
