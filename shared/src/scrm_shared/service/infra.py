"""Start-up of the shared infrastructure a process needs: pool + migrations, producer, topics."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from scrm_shared.db.migrations import migrate_service
from scrm_shared.db.pool import create_pool
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import ensure_topics, platform_topics
from scrm_shared.service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Infra:
    pool: asyncpg.Pool
    producer: AIOKafkaProducer

    async def close(self) -> None:
        await self.producer.stop()
        await self.pool.close()


async def start_infra(settings: ServiceSettings, *, service: str, schema: str, migrations: Path) -> Infra:
    """Connect to PostgreSQL (migrating the service schema) and Kafka (creating topics).

    Waits up to ``settings.startup_wait_seconds`` for each, so the local stack can start the
    database, the broker and the services together.
    """
    pool = await create_pool(settings.database_url, schema=schema, wait_seconds=settings.startup_wait_seconds)
    try:
        applied = await migrate_service(pool, schema=schema, directory=migrations)
        if applied:
            log.info("migrations applied", extra={"schema": schema, "applied": applied})
        producer = await _start_producer(settings, client_id=service)
        try:
            await ensure_topics(
                settings.kafka_bootstrap,
                platform_topics(settings.topic_partitions, settings.topic_retention_ms),
            )
        except BaseException:
            await producer.stop()
            raise
    except BaseException:
        await pool.close()
        raise
    return Infra(pool=pool, producer=producer)


async def _start_producer(settings: ServiceSettings, *, client_id: str) -> AIOKafkaProducer:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.startup_wait_seconds
    while True:
        producer = create_producer(settings.kafka_bootstrap, client_id=client_id)
        try:
            await producer.start()
            return producer
        except (KafkaError, OSError):
            await producer.stop()
            if loop.time() >= deadline:
                raise
            log.info("waiting for Kafka", extra={"bootstrap": settings.kafka_bootstrap})
            await asyncio.sleep(1.0)


async def database_ready(pool: asyncpg.Pool, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            return bool(await pool.fetchval("SELECT 1"))
    except Exception:  # readiness reports, it never raises
        return False


async def kafka_ready(producer: AIOKafkaProducer, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            return bool(await producer.client.fetch_all_metadata())
    except Exception:  # readiness reports, it never raises
        return False
