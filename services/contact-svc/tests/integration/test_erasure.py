"""PIPL erasure: personal fields go everywhere in contact-svc, the tombstone is published once,
and later events never bring the personal data back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from scrm_shared.events import ContactUpdatedEvent, FriendAddedEvent, OrderPlacedEvent, new_event
from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def produce(bootstrap: str, *events: EventEnvelope) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(e.type, e.to_bytes(), key=e.key())
    finally:
        await producer.stop()


def added(tenant: str, euid: str, staff: str, when: datetime, **data) -> FriendAddedEvent:
    return new_event(
        FriendAddedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={"external_userid": euid, "staff_id": staff, "added_at": when, **data},
    )


def updated(tenant: str, euid: str, when: datetime, **data) -> ContactUpdatedEvent:
    return new_event(
        ContactUpdatedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={"external_userid": euid, "updated_at": when, **data},
    )


def order(tenant: str, **customer) -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id=tenant,
        source="mall",
        data={
            "order_id": f"o-{uuid.uuid4().hex[:8]}",
            "channel": "mall",
            "customer": customer,
            "items": [{"sku": "SK-1", "category": "护肤", "quantity": 2, "unit_price": "50.00"}],
            "total_amount": "100.00",
            "placed_at": T0,
        },
    )


async def consumed(client: httpx.AsyncClient, headers: dict[str, str], expected: dict[str, int]) -> None:
    async def done() -> bool:
        body = (await client.get("/v1/ingest/stats", headers=headers)).json()
        counts = {t["event_type"]: t["consumed"] for t in body["topics"]}
        return all(counts.get(k, 0) == v for k, v in expected.items())

    await wait_for(done, timeout=30, interval=0.1)


async def published(bootstrap: str, pool, topic: str, tenant: str) -> list[dict]:
    """Every event of ``tenant`` on ``topic``, once the outbox has relayed all it holds."""

    async def relayed() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

    await wait_for(relayed, timeout=30, interval=0.05)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        total = sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
    records = await read_topic(bootstrap, topic, total, exact=True) if total else []
    return [json.loads(r.value) for r in records if r.key.startswith(f"{tenant}:".encode())]


async def test_erasure_removes_personal_data_publishes_once_and_stays_erased(
    client, auth, contact_worker, contact_app, tenant, kafka_bootstrap
):
    admin = auth(tenant, "admin")
    pool = contact_app.state.pool
    await produce(
        kafka_bootstrap,
        added(
            tenant, "wm-e", "guide-1", T0, name="陈小姐", avatar="https://img/e.png", unionid="ou-e", gender=2
        ),
        added(tenant, "wm-keep", "guide-1", T0, name="留下"),
        updated(
            tenant,
            "wm-e",
            T0 + timedelta(minutes=1),
            staff_id="guide-1",
            changed=["remark", "description"],
            remark="138 0013 8000 陈",
            description="喜欢红色",
        ),
        order(tenant, external_userid="wm-e", member_id="m-e"),
    )
    await consumed(client, admin, {"friend-added": 2, "contact-updated": 1, "order-placed": 1})
    # what the WeCom callback archived about this customer (and about another one)
    await pool.execute(
        "INSERT INTO callback_archive (tenant_id, payload_hash, external_userid, payload) "
        "VALUES ($1, 'h1', 'wm-e', '<xml>陈小姐</xml>'), ($1, 'h2', 'wm-keep', '<xml>留下</xml>')",
        tenant,
    )
    item = (await client.get("/v1/contacts", params={"external_userid": "wm-e"}, headers=admin)).json()[
        "items"
    ][0]
    url = f"/v1/contacts/{item['contact_id']}"
    assert item["name"] == "陈小姐"

    assert (await client.delete(url, headers=auth(tenant, "operator"))).status_code == 403
    assert (await client.delete(url, headers=auth(tenant, "guide", staff="guide-1"))).status_code == 403
    erased = await client.delete(url, headers=admin)
    assert erased.status_code == 204 and erased.content == b""
    assert (await client.delete(url, headers=admin)).status_code == 204  # idempotent

    detail = (await client.get(url, headers=admin)).json()
    assert detail["status"] == "erased"
    assert (detail["name"], detail["avatar"], detail["unionid"]) == (None, None, None)
    assert detail["identities"] == []
    (follow,) = detail["follows"]  # the relation (a count) stays, its remark goes
    assert follow["status"] == "active" and follow["remark"] is None
    row = await pool.fetchrow(
        "SELECT c.erased_at, f.description FROM contacts c JOIN follows f USING (tenant_id, external_userid) "
        "WHERE c.tenant_id = $1 AND c.external_userid = 'wm-e'",
        tenant,
    )
    assert row["erased_at"] is not None and row["description"] is None
    archive = dict(
        await pool.fetch("SELECT external_userid, payload FROM callback_archive WHERE tenant_id = $1", tenant)
    )
    assert archive == {"wm-e": "", "wm-keep": "<xml>留下</xml>"}
    keep = (await client.get("/v1/contacts", params={"external_userid": "wm-keep"}, headers=admin)).json()[
        "items"
    ][0]
    assert keep["name"] == "留下"
    staff = (await client.get("/v1/staff", headers=admin)).json()
    assert staff[0]["followers"] == 2  # counts stay

    (tombstone,) = await published(kafka_bootstrap, pool, "contact-erased", tenant)
    assert tombstone["data"]["external_userid"] == "wm-e"
    assert tombstone["data"]["contact_id"] == item["contact_id"]
    before = await published(kafka_bootstrap, pool, "contact-identified", tenant)

    # Later events about the erased customer do not bring personal data back.
    await produce(
        kafka_bootstrap,
        updated(
            tenant,
            "wm-e",
            T0 + timedelta(days=1),
            changed=["profile", "unionid"],
            name="陈小姐",
            avatar="https://img/e2.png",
            unionid="ou-e",
        ),
        updated(tenant, "wm-e", T0 + timedelta(days=1), staff_id="guide-1", changed=["remark"], remark="陈"),
        added(tenant, "wm-e", "guide-2", T0 + timedelta(days=2), name="陈小姐", unionid="ou-e2"),
        order(tenant, external_userid="wm-e", member_id="m-e", phone_hash="a" * 64),
    )
    await consumed(client, admin, {"friend-added": 3, "contact-updated": 3, "order-placed": 2})
    detail = (await client.get(url, headers=admin)).json()
    assert detail["status"] == "erased"
    assert (detail["name"], detail["avatar"], detail["unionid"]) == (None, None, None)
    assert detail["identities"] == []
    assert {f["staff_id"]: (f["status"], f["remark"]) for f in detail["follows"]} == {
        "guide-1": ("active", None),
        "guide-2": ("active", None),
    }
    assert await published(kafka_bootstrap, pool, "contact-identified", tenant) == before
    assert len(await published(kafka_bootstrap, pool, "contact-erased", tenant)) == 1
