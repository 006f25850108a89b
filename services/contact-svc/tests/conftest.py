"""Fixtures for contact-svc's integration tests: the real app and worker on real infrastructure.

Every test gets its own PostgreSQL schema (``pg_schema``) and its own tenant id, so tests never
see each other's rows even though they share the session's broker and topic names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from contact_svc.config import ContactSettings
from contact_svc.main import SPEC
from contact_svc.stream import BACKGROUND, TOPICS, build_handler
from scrm_shared.kafka.topics import ensure_topics, platform_topics
from scrm_shared.service import create_service_app
from scrm_shared.service.worker import serve_worker
from scrm_shared.testing.plugin import asgi_client, bearer


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def contact_settings(kafka_bootstrap: str, pg_dsn: str, pg_schema: str) -> ContactSettings:
    await ensure_topics(kafka_bootstrap, platform_topics(partitions=3))
    return ContactSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pg_dsn,
        db_schema=pg_schema,
        startup_wait_seconds=5,
        enrichment_interval_seconds=0.2,
    )


@pytest_asyncio.fixture
async def contact_app(contact_settings: ContactSettings) -> AsyncIterator[FastAPI]:
    app = create_service_app(SPEC, contact_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def client(contact_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(contact_app, "contact-svc") as c:
        yield c


@pytest.fixture
def auth(contact_settings: ContactSettings) -> Callable[..., dict[str, str]]:
    """``auth(tenant, role, staff=None)`` -> Authorization header for that principal."""

    def make(tenant: str, role: str = "admin", staff: str | None = None) -> dict[str, str]:
        return bearer(contact_settings, tenant, role, staff)

    return make


@pytest_asyncio.fixture
async def contact_worker(contact_settings: ContactSettings, contact_app: FastAPI) -> AsyncIterator[None]:
    """contact-svc's worker (consume loop, outbox relay, background tasks) in this event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_worker(
            SPEC,
            contact_settings,
            topics=TOPICS,
            build_handler=build_handler,
            stop=stop,
            group_id=f"contact-svc-{uuid.uuid4().hex[:8]}",
            background=BACKGROUND,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
