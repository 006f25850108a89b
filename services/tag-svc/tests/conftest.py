"""Fixtures for tag-svc's integration tests: the real app and worker on real infrastructure.

Every test gets its own PostgreSQL schema (``pg_schema``) and its own tenant id, so tests never
see each other's rows even though they share the session's broker and topic names; events are
read back filtered by tenant (:func:`published`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import ensure_topics, platform_topics
from scrm_shared.service import create_service_app
from scrm_shared.service.worker import serve_worker
from scrm_shared.testing.plugin import asgi_client, bearer, wait_for
from tag_svc.config import TagSettings
from tag_svc.main import SPEC
from tag_svc.stream import TOPICS, build_handler
from tag_svc.tags.jobs import run_tag_jobs
from tag_svc.tags.pushes import push_task
from tag_svc.tags.wecom import RecordingAdapter

Published = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def tag_settings(kafka_bootstrap: str, pg_dsn: str, pg_schema: str) -> TagSettings:
    await ensure_topics(kafka_bootstrap, platform_topics(partitions=3))
    return TagSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pg_dsn,
        db_schema=pg_schema,
        startup_wait_seconds=5,
        tag_job_poll_seconds=0.05,
        tag_wecom_push_poll_seconds=0.05,
        tag_wecom_push_retry_base_seconds=0,
    )


@pytest_asyncio.fixture
async def tag_app(tag_settings: TagSettings) -> AsyncIterator[FastAPI]:
    app = create_service_app(SPEC, tag_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def pool(tag_app: FastAPI) -> asyncpg.Pool:
    """The app's pool (search_path: the test's schema)."""
    return tag_app.state.pool  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def client(tag_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(tag_app, "tag-svc") as c:
        yield c


@pytest.fixture
def auth(tag_settings: TagSettings) -> Callable[..., dict[str, str]]:
    """``auth(tenant, role, staff=None)`` -> Authorization header for that principal."""

    def make(tenant: str, role: str = "admin", staff: str | None = None) -> dict[str, str]:
        return bearer(tag_settings, tenant, role, staff, subject=f"{role}-user")

    return make


@pytest.fixture
def wecom() -> RecordingAdapter:
    """The WeCom stand-in the worker's pusher pushes through."""
    return RecordingAdapter()


@pytest_asyncio.fixture
async def tag_worker(
    tag_settings: TagSettings, tag_app: FastAPI, wecom: RecordingAdapter
) -> AsyncIterator[None]:
    """tag-svc's worker (consume loop, outbox relay, job runner, pusher via ``wecom``) in this
    event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_worker(
            SPEC,
            tag_settings,
            topics=TOPICS,
            build_handler=build_handler,
            stop=stop,
            group_id=f"tag-svc-{uuid.uuid4().hex[:8]}",
            background=(run_tag_jobs, push_task(wecom)),
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
def send(kafka_bootstrap: str) -> Callable[..., Awaitable[None]]:
    """``await send(*events)``: produce events to their topics, keyed as producers key them."""

    async def produce(*events: EventEnvelope) -> None:
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(e.type, e.to_bytes(), key=e.key())
        finally:
            await producer.stop()

    return produce


@pytest.fixture
def published(kafka_bootstrap: str, pool: asyncpg.Pool) -> Published:
    """``await published(topic, tenant)``: every event of ``tenant`` on ``topic``, once the app's
    outbox has relayed all it holds (so the count is exact, not "at least")."""

    async def read(topic: str, tenant: str) -> list[dict[str, Any]]:
        async def relayed() -> bool:
            return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

        await wait_for(relayed, timeout=30)
        records = await _read_to_end(kafka_bootstrap, topic)
        values = [json.loads(r) for r in records]
        return [v for v in values if v["tenant_id"] == tenant]

    return read


async def _read_to_end(bootstrap: str, topic: str) -> list[bytes]:
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
            positions = [await consumer.position(tp) for tp in tps]
            return all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True))

        await wait_for(caught_up, timeout=30, interval=0)
        return out
    finally:
        await consumer.stop()
