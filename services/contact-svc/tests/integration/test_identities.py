"""Identity resolution: links learned from events and from the API, announced once on Kafka."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
UPDATED_AT = T0 + timedelta(minutes=1)
PLACED_AT = T0 + timedelta(hours=1)
PHONE_HASH = hashlib.sha256(b"+8613912345678").hexdigest()


def _conflicts(source: str, kind: str) -> float:
    return (
        REGISTRY.get_sample_value("scrm_contact_identity_conflicts_total", {"source": source, "kind": kind})
        or 0.0
    )


async def test_links_learned_from_events_are_announced_exactly_once(
    client, auth, contact_worker, contact_app, tenant, events, broker, api
):
    admin = auth(tenant, "admin")
    first = events.added("wm-1", "guide-1", T0, unionid="ou-1")
    await broker.produce(
        first,
        first,  # a redelivery
        events.added("wm-2", "guide-1", T0),
        events.updated("wm-1", UPDATED_AT, changed=["unionid"], unionid="ou-1"),  # known already
        events.updated("wm-2", UPDATED_AT, changed=["unionid"], unionid="ou-2"),
        events.order(PLACED_AT, external_userid="wm-1", member_id="m-1"),
    )
    await api.consumed(admin, {"friend-added": 2, "contact-updated": 2, "order-placed": 1})

    conflicts_before = _conflicts("order", "member_id")
    # Orders travel keyed by order id, so these two wait for the link above to be known.
    unknown_phone = hashlib.sha256(b"+8613000000000").hexdigest()
    await broker.produce(
        events.order(PLACED_AT, member_id="m-1", phone_hash=PHONE_HASH),  # m-1 is wm-1's: learn the phone
        events.order(PLACED_AT, member_id="m-1", phone_hash=PHONE_HASH),  # nothing new
        events.order(PLACED_AT, external_userid="wm-2", member_id="m-1"),  # m-1 is wm-1's: a conflict
        events.order(PLACED_AT, member_id="m-9", phone_hash=unknown_phone),  # unknown
    )
    await api.consumed(admin, {"order-placed": 5})

    identified = await broker.published(contact_app.state.pool, "contact-identified")
    got = sorted(
        (
            (d["external_userid"], d["source"], d["unionid"], d["member_id"], d["phone_hash"])
            for d in (e["data"] for e in identified)
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
    assert all(e["type"] == "contact-identified" and e["version"] == 1 for e in identified)
    assert _conflicts("order", "member_id") == conflicts_before + 1

    item = await api.contact(admin, "wm-1")
    detail = (await client.get(f"/v1/contacts/{item['contact_id']}", headers=admin)).json()
    assert detail["identities"] == ["member_id", "phone_hash", "unionid"]
    assert detail["unionid"] == "ou-1"


async def test_api_links_identities_once_and_refuses_raw_phones_and_conflicts(
    client, auth, contact_worker, contact_app, tenant, events, broker, api
):
    admin = auth(tenant, "operator")
    await broker.produce(events.added("wm-a", "guide-a", T0), events.added("wm-b", "guide-b", T0))
    await api.consumed(admin, {"friend-added": 2})
    ids = {euid: (await api.contact(admin, euid))["contact_id"] for euid in ("wm-a", "wm-b")}
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

    identified = await broker.published(contact_app.state.pool, "contact-identified")
    api_events = [e["data"] for e in identified if e["data"]["source"] == "api"]
    assert sorted(((d["member_id"], d["phone_hash"], d["unionid"]) for d in api_events), key=str) == sorted(
        [(None, None, "ou-a"), ("m-api", PHONE_HASH, None)], key=str
    )
    assert {d["external_userid"] for d in api_events} == {"wm-a"}
    # the operator's unionid completes the contact
    assert (await client.get(f"/v1/contacts/{ids['wm-a']}", headers=admin)).json()["unionid"] == "ou-a"
