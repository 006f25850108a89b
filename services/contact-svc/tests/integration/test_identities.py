"""Identity resolution: links learned from events and from the API, announced once on Kafka."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from scrm_shared.events import (
    ContactUpdatedEvent,
    FriendAddedEvent,
    OrderPlacedEvent,
    new_event,
)
from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
PHONE_HASH = hashlib.sha256(b"+8613912345678").hexdigest()


async def produce(bootstrap: str, *events: EventEnvelope) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(e.type, e.to_bytes(), key=e.key())
    finally:
        await producer.stop()


def added(tenant: str, euid: str, staff: str = "guide-1", **data) -> FriendAddedEvent:
    return new_event(
        FriendAddedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={"external_userid": euid, "staff_id": staff, "added_at": T0, **data},
    )


def updated(tenant: str, euid: str, **data) -> ContactUpdatedEvent:
    return new_event(
        ContactUpdatedEvent,
        tenant_id=tenant,
        source="enrichment",
        data={"external_userid": euid, "updated_at": T0 + timedelta(minutes=1), **data},
    )


def order(tenant: str, **customer) -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id=tenant,
        source="pos-sh-012",
        data={
            "order_id": f"o-{uuid.uuid4().hex[:8]}",
            "channel": "pos",
            "customer": customer,
            "items": [{"sku": "SK-1", "category": "护肤", "quantity": 1, "unit_price": "128.50"}],
            "total_amount": "128.50",
            "placed_at": T0 + timedelta(hours=1),
        },
    )


async def consumed(client: httpx.AsyncClient, headers: dict[str, str], expected: dict[str, int]) -> None:
    async def done() -> bool:
        body = (await client.get("/v1/ingest/stats", headers=headers)).json()
        counts = {t["event_type"]: t["consumed"] for t in body["topics"]}
        return all(counts.get(k, 0) == v for k, v in expected.items())

    await wait_for(done, timeout=30, interval=0.1)


async def identified(bootstrap: str, pool, tenant: str) -> list[dict]:
    """Every contact-identified of ``tenant`` on Kafka, once the outbox has relayed all it holds."""

    async def relayed() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

    await wait_for(relayed, timeout=30, interval=0.05)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition("contact-identified", p)
            for p in consumer.partitions_for_topic("contact-identified")
        ]
        total = sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
    records = await read_topic(bootstrap, "contact-identified", total, exact=True) if total else []
    return [json.loads(r.value) for r in records if r.key.startswith(f"{tenant}:".encode())]


def _conflicts(source: str, kind: str) -> float:
    return (
        REGISTRY.get_sample_value("scrm_contact_identity_conflicts_total", {"source": source, "kind": kind})
        or 0.0
    )


async def test_links_learned_from_events_are_announced_exactly_once(
    client, auth, contact_worker, contact_app, tenant, kafka_bootstrap
):
    admin = auth(tenant, "admin")
    first = added(tenant, "wm-1", unionid="ou-1")
    await produce(
        kafka_bootstrap,
        first,
        first,  # a redelivery
        added(tenant, "wm-2"),
        updated(tenant, "wm-1", changed=["unionid"], unionid="ou-1"),  # known already
        updated(tenant, "wm-2", changed=["unionid"], unionid="ou-2"),
        order(tenant, external_userid="wm-1", member_id="m-1"),
    )
    await consumed(client, admin, {"friend-added": 2, "contact-updated": 2, "order-placed": 1})

    conflicts_before = _conflicts("order", "member_id")
    # Orders travel keyed by order id, so these two wait for the link above to be known.
    await produce(
        kafka_bootstrap,
        order(tenant, member_id="m-1", phone_hash=PHONE_HASH),  # m-1 is wm-1's: learn the phone
        order(tenant, member_id="m-1", phone_hash=PHONE_HASH),  # nothing new
        order(tenant, external_userid="wm-2", member_id="m-1"),  # m-1 is wm-1's: a conflict
        order(tenant, member_id="m-9", phone_hash=hashlib.sha256(b"+8613000000000").hexdigest()),  # unknown
    )
    await consumed(client, admin, {"order-placed": 5})

    events = await identified(kafka_bootstrap, contact_app.state.pool, tenant)
    got = sorted(
        (
            (d["external_userid"], d["source"], d["unionid"], d["member_id"], d["phone_hash"])
            for d in (e["data"] for e in events)
        ),
        key=str,
    )
    # ou-1 came twice (friend-added, then contact-updated, on two topics): whichever was
    # consumed first taught it, and it was announced once.
    (first_source,) = [g[1] for g in got if g[2] == "ou-1"]
    assert first_source in ("friend-added", "contact-updated")
    assert got == sorted(
        [
            ("wm-1", first_source, "ou-1", None, None),
            ("wm-1", "order", None, "m-1", None),
            ("wm-1", "order", None, None, PHONE_HASH),
            ("wm-2", "contact-updated", "ou-2", None, None),
        ],
        key=str,
    )
    assert all(e["type"] == "contact-identified" and e["version"] == 1 for e in events)
    assert _conflicts("order", "member_id") == conflicts_before + 1

    item = (await client.get("/v1/contacts", params={"external_userid": "wm-1"}, headers=admin)).json()[
        "items"
    ][0]
    detail = (await client.get(f"/v1/contacts/{item['contact_id']}", headers=admin)).json()
    assert detail["identities"] == ["member_id", "phone_hash", "unionid"]
    assert detail["unionid"] == "ou-1"


async def test_api_links_identities_once_and_refuses_raw_phones_and_conflicts(
    client, auth, contact_worker, contact_app, tenant, kafka_bootstrap
):
    admin = auth(tenant, "operator")
    await produce(
        kafka_bootstrap, added(tenant, "wm-a", staff="guide-a"), added(tenant, "wm-b", staff="guide-b")
    )
    await consumed(client, admin, {"friend-added": 2})
    ids = {}
    for euid in ("wm-a", "wm-b"):
        resp = await client.get("/v1/contacts", params={"external_userid": euid}, headers=admin)
        ids[euid] = resp.json()["items"][0]["contact_id"]
    url_a = f"/v1/contacts/{ids['wm-a']}/identities"

    raw = await client.post(url_a, json={"phone_hash": "+86 139 1234 5678"}, headers=admin)
    assert raw.status_code == 422
    assert "raw phone number" in raw.text and "sha256" in raw.text and "E.164" in raw.text
    assert "1234" not in raw.text  # the phone is never echoed
    upper = await client.post(url_a, json={"phone_hash": PHONE_HASH.upper()}, headers=admin)
    assert upper.status_code == 422 and "lowercase" in upper.text
    assert (await client.post(url_a, json={}, headers=admin)).status_code == 422
    assert (await client.post(url_a, json={"phone": "139"}, headers=admin)).status_code == 422

    body = {"member_id": "m-api", "phone_hash": PHONE_HASH}
    created = await client.post(url_a, json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "contact_id": ids["wm-a"],
        "external_userid": "wm-a",
        "linked": ["member_id", "phone_hash"],
        "already_linked": [],
    }
    again = await client.post(url_a, json=body, headers=admin)
    assert again.status_code == 200
    assert again.json()["linked"] == [] and again.json()["already_linked"] == ["member_id", "phone_hash"]

    conflict = await client.post(
        f"/v1/contacts/{ids['wm-b']}/identities",
        json={"member_id": "m-api", "unionid": "ou-b"},
        headers=admin,
    )
    assert conflict.status_code == 409
    assert conflict.json()["type"] == "urn:scrm:problem:identity-conflict"
    assert conflict.json()["kinds"] == ["member_id"]
    assert "m-api" not in conflict.text
    detail_b = (await client.get(f"/v1/contacts/{ids['wm-b']}", headers=admin)).json()
    assert detail_b["identities"] == []  # all or nothing: the unionid was not linked either

    # a guide links ids of their own customers only; another tenant's contact does not exist
    guide_b = auth(tenant, "guide", staff="guide-b")
    assert (await client.post(url_a, json={"member_id": "x"}, headers=guide_b)).status_code == 404
    guide_a = auth(tenant, "guide", staff="guide-a")
    assert (await client.post(url_a, json={"unionid": "ou-a"}, headers=guide_a)).status_code == 201
    assert (
        await client.post(url_a, json={"member_id": "y"}, headers=auth("other-tenant"))
    ).status_code == 404
    missing = f"/v1/contacts/{uuid.uuid4()}/identities"
    assert (await client.post(missing, json={"member_id": "y"}, headers=admin)).status_code == 404

    events = await identified(kafka_bootstrap, contact_app.state.pool, tenant)
    api_events = [e["data"] for e in events if e["data"]["source"] == "api"]
    assert sorted(((d["member_id"], d["phone_hash"], d["unionid"]) for d in api_events), key=str) == sorted(
        [(None, None, "ou-a"), ("m-api", PHONE_HASH, None)], key=str
    )
    assert {d["external_userid"] for d in api_events} == {"wm-a"}
    # the operator's unionid completes the contact
    assert (await client.get(f"/v1/contacts/{ids['wm-a']}", headers=admin)).json()["unionid"] == "ou-a"
