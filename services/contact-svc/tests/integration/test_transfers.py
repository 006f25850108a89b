"""Transfers (在职/离职继承) through the API, on follows built by the real worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scrm_shared.events import TransferFailedEvent, new_event

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def by_staff(contact: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["staff_id"]: f for f in contact["follows"]}


async def test_transfer_moves_follows_records_and_publishes(
    client, auth, contact_worker, contact_app, tenant, events, broker, api
):
    operator = auth(tenant, "operator")
    await broker.produce(
        events.added("wm-1", "giver", T0, state="poster-1"),
        events.added("wm-2", "giver", T0),
        events.added("wm-3", "giver", T0),
        events.updated(
            "wm-1", T0 + timedelta(minutes=1), staff_id="giver", changed=["remark"], remark="VIP 老客"
        ),
    )
    await api.consumed(operator, {"friend-added": 3, "contact-updated": 1})

    body = {
        "from_staff": "giver",
        "to_staff": "taker",
        "external_userids": ["wm-2", "wm-1"],
        "kind": "resigned",
    }
    resp = await client.post("/v1/transfers", json=body, headers=operator)
    assert resp.status_code == 201, resp.text
    transfer = resp.json()
    assert (
        transfer["from_staff"] == "giver"
        and transfer["to_staff"] == "taker"
        and transfer["kind"] == "resigned"
    )
    assert [(i["external_userid"], i["status"]) for i in transfer["items"]] == [
        ("wm-1", "waiting"),
        ("wm-2", "waiting"),
    ]

    moved = by_staff(await api.contact(operator, "wm-1"))
    assert moved["giver"]["status"] == "deleted" and moved["giver"]["deleted_by"] == "staff"
    assert moved["taker"]["status"] == "active"
    assert moved["taker"]["state"] == "poster-1"  # the channel that brought the friend stays
    assert moved["taker"]["remark"] == "VIP 老客"
    delete_source = await contact_app.state.pool.fetchval(
        "SELECT delete_source FROM follows WHERE tenant_id = $1 AND external_userid = 'wm-1' AND staff_id = 'giver'",
        tenant,
    )
    assert delete_source == "TRANSFER"
    staff = {s["staff_id"]: s["followers"] for s in (await client.get("/v1/staff", headers=operator)).json()}
    assert staff == {"giver": 1, "taker": 2}

    fetched = await client.get(f"/v1/transfers/{transfer['transfer_id']}", headers=operator)
    assert fetched.json() == transfer
    assert (
        await client.get(f"/v1/transfers/{transfer['transfer_id']}", headers=auth(f"x{tenant}", "admin"))
    ).status_code == 404
    assert (await client.get("/v1/transfers/nope", headers=operator)).status_code == 404

    (event,) = await broker.published(contact_app.state.pool, "contacts-transferred")
    assert event["type"] == "contacts-transferred"
    assert event["data"]["transfer_id"] == transfer["transfer_id"]
    assert event["data"]["external_userids"] == ["wm-1", "wm-2"]
    assert event["data"]["kind"] == "resigned"

    # WeCom reports the hand-over of wm-2 failed: it stays with the giver
    await broker.produce(
        new_event(
            TransferFailedEvent,
            tenant_id=tenant,
            source="wecom-callback",
            data={
                "external_userid": "wm-2",
                "staff_id": "taker",
                "fail_reason": "customer_refused",
                "failed_at": datetime.now(UTC) + timedelta(seconds=1),
            },
        ),
    )
    await api.consumed(operator, {"transfer-failed": 1})
    items = (await client.get(f"/v1/transfers/{transfer['transfer_id']}", headers=operator)).json()["items"]
    assert [(i["external_userid"], i["status"], i["fail_reason"]) for i in items] == [
        ("wm-1", "waiting", None),
        ("wm-2", "failed", "customer_refused"),
    ]
    back = by_staff(await api.contact(operator, "wm-2"))
    assert back["giver"]["status"] == "active"
    assert back["taker"]["status"] == "deleted" and back["taker"]["deleted_by"] == "customer"


async def test_transfer_rules_422_and_409(client, auth, contact_worker, tenant, events, broker, api):
    admin = auth(tenant, "admin")
    await broker.produce(
        events.added("wm-1", "a", T0),
        events.added("wm-2", "a", T0),
        events.added("wm-3", "b", T0),
    )
    await api.consumed(admin, {"friend-added": 3})

    def transfer(src: str, dst: str, *ids: str) -> dict:
        return {"from_staff": src, "to_staff": dst, "external_userids": list(ids), "kind": "on_duty"}

    not_followed = await client.post(
        "/v1/transfers", json=transfer("a", "b", "wm-1", "wm-3", "wm-404"), headers=admin
    )
    assert not_followed.status_code == 422
    problem = not_followed.json()
    assert problem["type"] == "urn:scrm:problem:transfer-not-followed"
    assert problem["not_followed"] == ["wm-3", "wm-404"]
    assert problem["already_followed"] == ["wm-3"]
    for bad in (
        transfer("a", "a", "wm-1"),
        transfer("a", "b"),
        transfer("a", "b", "wm-1", "wm-1"),
        transfer("a", "b", *[f"wm-{i}" for i in range(101)]),
        {**transfer("a", "b", "wm-1"), "kind": "fired"},
    ):
        assert (await client.post("/v1/transfers", json=bad, headers=admin)).status_code == 422, bad

    # twice within 90 days is allowed...
    assert (
        await client.post("/v1/transfers", json=transfer("a", "c", "wm-1"), headers=admin)
    ).status_code == 201
    assert (
        await client.post("/v1/transfers", json=transfer("c", "a", "wm-1"), headers=admin)
    ).status_code == 201
    # ...a third time is not, and nothing of the request moves
    third = await client.post("/v1/transfers", json=transfer("a", "c", "wm-2", "wm-1"), headers=admin)
    assert third.status_code == 409
    assert third.json()["type"] == "urn:scrm:problem:transfer-limit-reached"
    assert third.json()["customers"] == ["wm-1"]
    assert "90 days" in third.json()["detail"]
    for euid in ("wm-1", "wm-2"):
        follows = by_staff(await api.contact(admin, euid))
        assert follows["a"]["status"] == "active"
        assert follows.get("c", {"status": "deleted"})["status"] == "deleted"

    # a resigned staff member takes over nobody
    assert (await client.put("/v1/staff/d", json={"status": "resigned"}, headers=admin)).status_code == 200
    resigned = await client.post("/v1/transfers", json=transfer("a", "d", "wm-2"), headers=admin)
    assert (
        resigned.status_code == 422 and resigned.json()["type"] == "urn:scrm:problem:transfer-staff-resigned"
    )
