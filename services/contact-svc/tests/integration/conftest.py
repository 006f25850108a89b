"""Helpers that contact-svc's integration tests share, handed out as fixtures.

Tests run with ``--import-mode=importlib``, where a test module cannot import a sibling module;
fixtures need no import, so the helpers live here:

- ``events``: builders of the events contact-svc consumes, for this test's tenant.
- ``broker``: produce events to their topics and read back what this tenant has on a topic.
- ``api``: wait on the ingest tally, fetch one contact, wait until a contact is visible.
- ``standin``, ``migrated``, ``wecom_corp``: WeCom's stand-in, a migrated schema without the
  app, and a corp on the stand-in with the tenant's WeCom settings pointing at it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from contact_svc.config import ContactSettings
from contact_svc.main import SPEC
from contact_svc.store import wecom as wecom_store
from contact_svc.wecom.standin import Corp, Directory, StandInServer
from scrm_shared.db.migrations import migrate_service
from scrm_shared.events import (
    ContactUpdatedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    OrderPlacedEvent,
    new_event,
)
from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.plugin import read_topic, wait_for

WECOM_SECRET = "app-secret-1"
"""The app secret of every corp ``wecom_corp`` adds to the stand-in."""

SELECT_UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Events:
    """Events of one tenant as WeCom's callback (or a shop, for orders) sends them; ``data``
    adds or overrides payload fields."""

    tenant: str

    def added(self, euid: str, staff: str, when: datetime, **data: Any) -> FriendAddedEvent:
        return new_event(
            FriendAddedEvent,
            tenant_id=self.tenant,
            source="wecom-callback",
            data={"external_userid": euid, "staff_id": staff, "added_at": when, **data},
        )

    def deleted(
        self, euid: str, staff: str, when: datetime, by: str = "customer", **data: Any
    ) -> FriendDeletedEvent:
        return new_event(
            FriendDeletedEvent,
            tenant_id=self.tenant,
            source="wecom-callback",
            data={"external_userid": euid, "staff_id": staff, "deleted_by": by, "deleted_at": when, **data},
        )

    def updated(self, euid: str, when: datetime, **data: Any) -> ContactUpdatedEvent:
        return new_event(
            ContactUpdatedEvent,
            tenant_id=self.tenant,
            source="wecom-callback",
            data={"external_userid": euid, "updated_at": when, **data},
        )

    def order(self, when: datetime, **customer: str) -> OrderPlacedEvent:
        """A one-line POS order placed at ``when`` by the customer with these ids."""
        return new_event(
            OrderPlacedEvent,
            tenant_id=self.tenant,
            source="pos-sh-012",
            data={
                "order_id": f"o-{uuid.uuid4().hex[:8]}",
                "channel": "pos",
                "customer": customer,
                "items": [{"sku": "SK-1", "category": "护肤", "quantity": 1, "unit_price": "128.50"}],
                "total_amount": "128.50",
                "placed_at": when,
            },
        )


@pytest.fixture
def events(tenant: str) -> Events:
    return Events(tenant)


# --- the broker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """The session's broker as one test's tenant sees it (topics are shared by all tests, so
    records are told apart by their ``<tenant>:`` key)."""

    bootstrap: str
    tenant: str

    async def produce(self, *events: EventEnvelope) -> None:
        """Send ``events`` in order to the topics named by their types, each one acknowledged."""
        producer = create_producer(self.bootstrap)
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(e.type, e.to_bytes(), key=e.key())
        finally:
            await producer.stop()

    async def end_total(self, topic: str) -> int:
        """How many records ``topic`` holds now (the sum of its partitions' end offsets)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    async def read(self, topic: str) -> list[dict[str, Any]]:
        """Every event of this tenant on ``topic`` so far, as JSON."""
        total = await self.end_total(topic)
        records = await read_topic(self.bootstrap, topic, total) if total else []
        return [json.loads(r.value) for r in records if r.key.startswith(f"{self.tenant}:".encode())]

    async def published(self, pool: asyncpg.Pool, topic: str) -> list[dict[str, Any]]:
        """:meth:`read`, once the outbox of ``pool``'s schema has relayed all it holds."""

        async def relayed() -> bool:
            return await pool.fetchval(SELECT_UNSENT) == 0

        await wait_for(relayed, timeout=30, interval=0.05)
        return await self.read(topic)


@pytest.fixture
def broker(kafka_bootstrap: str, tenant: str) -> Broker:
    return Broker(kafka_bootstrap, tenant)


# --- the API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactsApi:
    """Reads of contact-svc's HTTP API that tests wait on."""

    client: httpx.AsyncClient

    async def consumed(self, headers: dict[str, str], expected: dict[str, int]) -> None:
        """Wait until the worker applied ``expected`` distinct events per type for the tenant of
        ``headers`` (the ingest tally is written in the read model's transaction)."""

        async def done() -> bool:
            body = (await self.client.get("/v1/ingest/stats", headers=headers)).json()
            counts = {t["event_type"]: t["consumed"] for t in body["topics"]}
            assert all(counts.get(k, 0) <= v for k, v in expected.items()), counts
            return all(counts.get(k, 0) == v for k, v in expected.items())

        await wait_for(done, timeout=30, interval=0.1)

    async def contact(self, headers: dict[str, str], euid: str) -> dict[str, Any]:
        """The one contact with external_userid ``euid``, as GET /v1/contacts lists it."""
        resp = await self.client.get("/v1/contacts", params={"external_userid": euid}, headers=headers)
        assert resp.status_code == 200, resp.text
        (item,) = resp.json()["items"]
        return item

    async def wait_visible(self, headers: dict[str, str], euid: str) -> None:
        """Wait until GET /v1/contacts finds the contact ``euid``."""

        async def visible() -> bool:
            resp = await self.client.get("/v1/contacts", params={"external_userid": euid}, headers=headers)
            return resp.status_code == 200 and len(resp.json()["items"]) == 1

        await wait_for(visible, timeout=30, interval=0.05)


@pytest.fixture
def api(client: httpx.AsyncClient) -> ContactsApi:
    return ContactsApi(client)


# --- WeCom and setup rows --------------------------------------------------------------------


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[StandInServer]:
    """WeCom's API stand-in on a free port of 127.0.0.1, with an empty directory."""
    async with StandInServer(Directory()) as server:
        yield server


@pytest_asyncio.fixture
async def migrated(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    """``pg_pool`` on this test's schema, migrated (for tests that run without the app)."""
    await migrate_service(pg_pool, schema=pg_schema, directory=SPEC.migrations)
    return pg_pool


@pytest.fixture
def wecom_corp(standin: StandInServer, pg_pool: asyncpg.Pool) -> Callable[..., Awaitable[Corp]]:
    """``await wecom_corp(tenant, stored_secret=WECOM_SECRET)``: the corp ``ww-<tenant>`` on the
    stand-in (app secret :data:`WECOM_SECRET`) and the tenant's ``wecom_config`` row naming it
    with ``stored_secret``. The schema must be migrated by then."""

    async def make(tenant: str, stored_secret: str = WECOM_SECRET) -> Corp:
        corp = standin.directory.add_corp(f"ww-{tenant}", WECOM_SECRET)
        await wecom_store.upsert_config(
            pg_pool,
            ContactSettings().secret_box,
            tenant_id=tenant,
            corp_id=corp.corp_id,
            token="tok",
            encoding_aes_key="a" * 43,
            agent_id=None,
            secret=stored_secret,
            set_agent_id=False,
            set_secret=True,
        )
        return corp

    return make
