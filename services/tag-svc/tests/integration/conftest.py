"""Fixtures for the live segment tests: an app serving the segment routes and a worker running
the segment processor, the schedule and the backfill, on real PostgreSQL and the real broker.

Names start with ``seg_`` so they never shadow the tag tests' fixtures (tests/conftest.py), whose
``tenant``, ``tag_settings`` and ``auth`` they build on.

- ``seg_clock``: the "now" of the processor, schedule, backfill and API; tests move it forward
  instead of waiting for days to pass.
- ``seg_topics``: uuid-named input topics of this test (the contracts they carry as keys); the
  processor reads them from the start without seeing other tests' events.
- ``seg_app`` / ``seg_client`` / ``seg_pool``: the service's app (``tag_app``), ``app.state.clock`` set.
- ``seg_worker``: the processor's consume loop (partitions assigned directly: no group join
  wait), the schedule and the backfill, all on the app's pool and producer.
- ``seg_events``, ``seg_send``, ``seg_published``: build, produce and read back events.

And, for the HTTP adapter's tests (corp tag sync, pushes), ``wecom_server``: WeCom's token and
corp tag APIs on a real socket (:mod:`wecom_standin`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from scrm_shared.events import (
    ContactErasedEvent,
    ContactIdentifiedEvent,
    ContactTaggedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    MessageSentEvent,
    OrderPlacedEvent,
    OrderRefundedEvent,
    new_event,
)
from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.kafka.consumer import BatchConsumer
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import TopicSpec, ensure_topics
from scrm_shared.service.worker import WorkerDeps
from scrm_shared.testing.plugin import wait_for
from tag_svc.config import TagSettings
from tag_svc.processor import TOPICS, SegmentBackfiller, SegmentScheduler, build_segment_handler

from .wecom_standin import WeComServer, serving

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # 18:00 on 1 May in Shanghai
SELECT_UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


@dataclass
class SettableClock:
    """A clock tests move: ``clock.now = ...`` or ``clock.advance(days=6)``."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def seg_clock() -> SettableClock:
    return SettableClock()


@pytest_asyncio.fixture
async def seg_topics(kafka_bootstrap: str) -> dict[str, str]:
    """contract -> this test's topic carrying it."""
    names = {contract: f"{contract}-{uuid.uuid4().hex[:10]}" for contract in TOPICS}
    await ensure_topics(kafka_bootstrap, [TopicSpec(n, partitions=2) for n in names.values()])
    return names


@pytest.fixture
def seg_app(tag_app: FastAPI, seg_clock: SettableClock) -> FastAPI:
    """The service's app (``tag_app``) with the settable clock: one app, one pool per test."""
    tag_app.state.clock = seg_clock
    return tag_app


@pytest.fixture
def seg_pool(pool: asyncpg.Pool) -> asyncpg.Pool:
    return pool


@pytest.fixture
def seg_client(seg_app: FastAPI, client: httpx.AsyncClient) -> httpx.AsyncClient:
    return client


@pytest.fixture
def seg_deps(seg_app: FastAPI, tag_settings: TagSettings) -> WorkerDeps:
    return WorkerDeps(
        pool=seg_app.state.pool, producer=seg_app.state.producer, settings=tag_settings, service="tag-svc"
    )


async def assigned_consumer(
    bootstrap: str, topics: dict[str, str], deps: WorkerDeps, clock: SettableClock
) -> BatchConsumer:
    """The processor's consume loop on this test's topics, partitions assigned directly."""
    group_id = f"seg-{uuid.uuid4().hex[:8]}"
    raw = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    consumer = BatchConsumer(
        bootstrap=bootstrap,
        group_id=group_id,
        topics=list(topics.values()),
        handler=build_segment_handler(deps, clock=clock),
        producer=deps.producer,
        service="tag-svc",
        topic_contracts={name: contract for contract, name in topics.items()},
        consumer=raw,
    )
    await consumer.start()
    await raw.topics()
    raw.assign(
        [TopicPartition(t, p) for t in topics.values() for p in sorted(raw.partitions_for_topic(t) or {0})]
    )
    return consumer


@dataclass
class SegmentWorker:
    """The running worker parts, for tests that drive or inspect them."""

    consumer: BatchConsumer
    scheduler: SegmentScheduler
    backfiller: SegmentBackfiller
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@pytest_asyncio.fixture
async def seg_worker(
    kafka_bootstrap: str, seg_topics: dict[str, str], seg_deps: WorkerDeps, seg_clock: SettableClock
) -> AsyncIterator[SegmentWorker]:
    consumer = await assigned_consumer(kafka_bootstrap, seg_topics, seg_deps, seg_clock)
    worker = SegmentWorker(
        consumer,
        SegmentScheduler(seg_deps.pool, clock=seg_clock, interval=0.05),
        SegmentBackfiller(seg_deps.pool, clock=seg_clock, chunk_size=2, poll=0.05),
    )
    stop = asyncio.Event()
    worker.tasks = [
        asyncio.create_task(consumer.run(stop)),
        asyncio.create_task(worker.scheduler.run(stop)),
        asyncio.create_task(worker.backfiller.run(stop)),
    ]
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*worker.tasks), 20)
        await consumer.stop()


@pytest.fixture
def seg_headers(auth: Callable[..., dict[str, str]], tenant: str) -> dict[str, str]:
    return auth(tenant, "operator")


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentEvents:
    """Events of one tenant as their producers send them; times default to the clock's now."""

    tenant: str
    clock: SettableClock

    def _new(self, cls: type[EventEnvelope], source: str, data: dict[str, Any]) -> Any:
        return new_event(cls, tenant_id=self.tenant, source=source, data=data, occurred_at=self.clock())

    def order(
        self,
        when: datetime | None = None,
        *,
        order_id: str | None = None,
        amount: str = "128.50",
        **customer: str,
    ) -> OrderPlacedEvent:
        return self._new(
            OrderPlacedEvent,
            "pos-sh-012",
            {
                "order_id": order_id or f"o-{uuid.uuid4().hex[:10]}",
                "channel": "pos",
                "store_id": "sh-012",
                "customer": customer,
                "items": [{"sku": "SK-1", "category": "护肤", "quantity": 1, "unit_price": amount}],
                "total_amount": amount,
                "placed_at": when or self.clock(),
            },
        )

    def refund(self, order_id: str, amount: str, when: datetime | None = None) -> OrderRefundedEvent:
        return self._new(
            OrderRefundedEvent,
            "pos-sh-012",
            {
                "refund_id": f"r-{uuid.uuid4().hex[:10]}",
                "order_id": order_id,
                "amount": amount,
                "refunded_at": when or self.clock(),
            },
        )

    def added(
        self, euid: str, staff: str = "zhang.wei", when: datetime | None = None, **data: Any
    ) -> FriendAddedEvent:
        return self._new(
            FriendAddedEvent,
            "wecom-callback",
            {"external_userid": euid, "staff_id": staff, "added_at": when or self.clock(), **data},
        )

    def deleted(
        self, euid: str, staff: str = "zhang.wei", when: datetime | None = None
    ) -> FriendDeletedEvent:
        return self._new(
            FriendDeletedEvent,
            "wecom-callback",
            {
                "external_userid": euid,
                "staff_id": staff,
                "deleted_by": "customer",
                "deleted_at": when or self.clock(),
            },
        )

    def tagged(
        self, euid: str, name: str, change: str = "added", tag_id: str | None = None
    ) -> ContactTaggedEvent:
        return self._new(
            ContactTaggedEvent,
            "tag-svc",
            {
                "external_userid": euid,
                "tag_id": tag_id or f"tag-{name}",
                "tag_name": name,
                "change": change,
                "by": "operator",
                "tagged_at": self.clock(),
            },
        )

    def identified(self, euid: str, **ids: str) -> ContactIdentifiedEvent:
        return self._new(
            ContactIdentifiedEvent,
            "contact-svc",
            {"external_userid": euid, "source": "api", "identified_at": self.clock(), **ids},
        )

    def erased(self, euid: str) -> ContactErasedEvent:
        return self._new(
            ContactErasedEvent,
            "contact-svc",
            {"external_userid": euid, "contact_id": f"c-{euid}", "erased_at": self.clock()},
        )

    def message(self, euid: str, when: datetime | None = None) -> MessageSentEvent:
        return self._new(
            MessageSentEvent,
            "campaign-svc",
            {
                "message_id": f"m-{uuid.uuid4().hex[:10]}",
                "external_userid": euid,
                "staff_id": "zhang.wei",
                "kind": "private",
                "content_ref": "tpl-1",
                "sent_at": when or self.clock(),
            },
        )


@pytest.fixture
def seg_events(tenant: str, seg_clock: SettableClock) -> SegmentEvents:
    return SegmentEvents(tenant, seg_clock)


@pytest.fixture
def seg_send(kafka_bootstrap: str, seg_topics: dict[str, str]) -> Callable[..., Awaitable[None]]:
    """``await seg_send(*events)``: produce to this test's topic of each event's type."""

    async def send(*events: EventEnvelope) -> None:
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(seg_topics[e.type], e.to_bytes(), key=e.key())
        finally:
            await producer.stop()

    return send


@pytest.fixture
def seg_published(
    kafka_bootstrap: str, seg_pool: asyncpg.Pool, tenant: str
) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """``await seg_published()``: this tenant's segment-changed events' ``data``, once the outbox
    relayed all it holds (so the list is exact, not "at least")."""

    async def read() -> list[dict[str, Any]]:
        async def relayed() -> bool:
            return await seg_pool.fetchval(SELECT_UNSENT) == 0

        await wait_for(relayed, timeout=30)
        values = [json.loads(v) for v in await read_to_end(kafka_bootstrap, "segment-changed")]
        return [v["data"] for v in values if v["tenant_id"] == tenant]

    return read


async def read_to_end(bootstrap: str, topic: str) -> list[bytes]:
    """Every record of ``topic`` up to its end offsets now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[bytes] = []

        async def caught_up() -> bool:
            for records in (await consumer.getmany(*tps, timeout_ms=100, max_records=50_000)).values():
                out.extend(r.value for r in records)
            return all([await consumer.position(tp) >= ends[tp] for tp in tps])

        await wait_for(caught_up, timeout=30, interval=0)
        return out
    finally:
        await consumer.stop()


@pytest.fixture
def seg_api(seg_client: httpx.AsyncClient, seg_headers: dict[str, str]) -> SegmentsApi:
    return SegmentsApi(seg_client, seg_headers)


@dataclass(frozen=True)
class SegmentsApi:
    """The calls tests make, as the acceptance checks make them."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def create(self, rule: dict[str, Any], name: str | None = None) -> str:
        resp = await self.client.post(
            "/v1/segments",
            json={"name": name or f"s-{uuid.uuid4().hex[:6]}", "rule": rule},
            headers=self.headers,
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["segment_id"])

    async def get(self, segment_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/segments/{segment_id}", headers=self.headers)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def members(self, segment_id: str) -> list[str]:
        out: list[str] = []
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else {}
            resp = await self.client.get(
                f"/v1/segments/{segment_id}/members", params=params, headers=self.headers
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            out += [m["external_userid"] for m in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return out

    async def wait_members(self, segment_id: str, expected: set[str], timeout: float = 30) -> None:
        async def there() -> bool:
            return set(await self.members(segment_id)) == expected

        await wait_for(there, timeout=timeout)

    async def wait_live(self, segment_id: str) -> dict[str, Any]:
        async def live() -> bool:
            return (await self.get(segment_id))["status"] == "live"

        await wait_for(live, timeout=30)
        return await self.get(segment_id)


async def consume_until_idle(consumer: BatchConsumer) -> None:
    """Drive ``consumer`` (not running in a task) until it has read its partitions to the end."""
    raw = consumer.consumer

    async def done() -> bool:
        await consumer.poll_once()
        tps = list(raw.assignment())
        ends = await raw.end_offsets(tps)
        return all([await raw.position(tp) >= ends[tp] for tp in tps])

    await wait_for(done, timeout=30, interval=0)


@pytest.fixture
def seg_consume_until_idle() -> Callable[[BatchConsumer], Awaitable[None]]:
    return consume_until_idle


@pytest.fixture
def seg_assigned_consumer(
    kafka_bootstrap: str, seg_topics: dict[str, str], seg_deps: WorkerDeps, seg_clock: SettableClock
) -> Callable[[], Awaitable[BatchConsumer]]:
    """``await seg_assigned_consumer()``: another consume loop over this test's topics, in a new
    group (reads everything again: a full redelivery), not started as a task."""

    async def make() -> BatchConsumer:
        return await assigned_consumer(kafka_bootstrap, seg_topics, seg_deps, seg_clock)

    return make


@pytest_asyncio.fixture
async def wecom_server() -> AsyncIterator[WeComServer]:
    """A WeCom stand-in on a free local port, its library empty: tests seed ``wecom_server.library``
    and point the HTTP adapter at ``wecom_server.base_url``."""
    async with serving(WeComServer()) as wecom:
        yield wecom
