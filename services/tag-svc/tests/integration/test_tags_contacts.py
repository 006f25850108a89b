"""Tagging one contact by hand: rows, exactly one contact-tagged per real change (read back from
the broker), idempotence, guides' scope, erasure, and the mark_tag pushes it queues (drained
here by a Pusher over the RecordingAdapter, as the worker's background task would)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tag_svc.tags.pushes import Pusher
from tag_svc.tags.store import contacts as store
from tag_svc.tags.store import wecom as push_store
from tag_svc.tags.wecom import MarkTagCall, RecordingAdapter

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def catalog(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """Two groups' tags by name: 'VIP' and '新客' (local), '高消费' (synced as etHIGH)."""
    body = {"name": "等级", "tags": [{"name": "VIP"}, {"name": "新客"}]}
    first = (await client.post("/v1/tag-groups", json=body, headers=headers)).json()
    body = {"name": "消费", "tags": [{"name": "高消费", "wecom_tag_id": "etHIGH"}]}
    second = (await client.post("/v1/tag-groups", json=body, headers=headers)).json()
    return {t["name"]: t["tag_id"] for g in (first, second) for t in g["tags"]}


async def follow(pool: asyncpg.Pool, tenant: str, euid: str, staff: str, at: datetime) -> None:
    """What the worker records from friend-added."""
    async with pool.acquire() as conn, conn.transaction():
        await store.follows_added(conn, [(tenant, euid, staff, at)])


async def test_manual_tagging_publishes_one_event_per_change(
    client: httpx.AsyncClient, auth, tenant: str, published
):
    operator = auth(tenant, "operator")
    tags = await catalog(client, operator)

    resp = await client.post("/v1/contacts/wm-a/tags", json={"tag_ids": [tags["VIP"]]}, headers=operator)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["added"] == [tags["VIP"]]
    (tag,) = body["tags"]
    assert tag["name"] == "VIP" and tag["group_name"] == "等级"
    assert tag["by"] == "operator" and tag["actor_id"] == "operator-user"

    # Again, and again with a repeat inside the request: nothing changes, nothing is published.
    for ids in ([tags["VIP"]], [tags["VIP"], tags["VIP"]]):
        resp = await client.post("/v1/contacts/wm-a/tags", json={"tag_ids": ids}, headers=operator)
        assert resp.status_code == 200 and resp.json()["added"] == []
    events = await published("contact-tagged", tenant)
    assert len(events) == 1
    (event,) = events
    assert event["type"] == "contact-tagged" and event["version"] == 1
    assert event["source"] == "tag-svc"
    assert event["data"] == {
        "external_userid": "wm-a",
        "tag_id": tags["VIP"],
        "tag_name": "VIP",
        "group_name": "等级",
        "change": "added",
        "by": "operator",
        "actor_id": "operator-user",
        "tagged_at": event["data"]["tagged_at"],
    }

    # Removal: once published, then a no-op.
    assert (await client.delete(f"/v1/contacts/wm-a/tags/{tags['VIP']}", headers=operator)).status_code == 204
    assert (await client.delete(f"/v1/contacts/wm-a/tags/{tags['VIP']}", headers=operator)).status_code == 204
    got = (await client.get("/v1/contacts/wm-a/tags", headers=operator)).json()
    assert got == {"external_userid": "wm-a", "tags": []}
    events = await published("contact-tagged", tenant)
    assert [(e["data"]["tag_name"], e["data"]["change"]) for e in events] == [
        ("VIP", "added"),
        ("VIP", "removed"),
    ]

    # Unknown tags: 404 naming them, and nothing added.
    missing = "00000000-0000-4000-8000-000000000000"
    resp = await client.post(
        "/v1/contacts/wm-a/tags", json={"tag_ids": [tags["新客"], missing]}, headers=operator
    )
    assert resp.status_code == 404 and resp.json()["tag_ids"] == [missing]
    assert (await client.get("/v1/contacts/wm-a/tags", headers=operator)).json()["tags"] == []
    assert (await client.delete(f"/v1/contacts/wm-a/tags/{missing}", headers=operator)).status_code == 404
    assert (
        await client.post("/v1/contacts/wm-a/tags", json={"tag_ids": []}, headers=operator)
    ).status_code == 422
    assert (await client.get("/v1/contacts/wm-a/tags")).status_code == 401


async def test_guides_tag_their_own_contacts_as_staff(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, published
):
    tags = await catalog(client, auth(tenant, "admin"))
    guide = auth(tenant, "guide", "zhang.wei")
    await follow(pool, tenant, "wm-mine", "zhang.wei", T0)
    await follow(pool, tenant, "wm-theirs", "li.na", T0)

    resp = await client.post("/v1/contacts/wm-mine/tags", json={"tag_ids": [tags["新客"]]}, headers=guide)
    assert resp.status_code == 200, resp.text
    assert resp.json()["tags"][0]["by"] == "staff" and resp.json()["tags"][0]["actor_id"] == "zhang.wei"
    # Another guide's customer does not exist for this guide.
    for resp in (
        await client.post("/v1/contacts/wm-theirs/tags", json={"tag_ids": [tags["新客"]]}, headers=guide),
        await client.get("/v1/contacts/wm-theirs/tags", headers=guide),
        await client.delete(f"/v1/contacts/wm-theirs/tags/{tags['新客']}", headers=guide),
    ):
        assert resp.status_code == 404
        assert resp.json()["type"] == "urn:scrm:problem:contact-not-found"
    # Once the friendship ends, neither does their own.
    async with pool.acquire() as conn, conn.transaction():
        await store.follows_deleted(conn, [(tenant, "wm-mine", "zhang.wei", T0 + timedelta(days=1))])
    assert (await client.get("/v1/contacts/wm-mine/tags", headers=guide)).status_code == 404

    (event,) = await published("contact-tagged", tenant)
    assert event["data"]["by"] == "staff" and event["data"]["actor_id"] == "zhang.wei"


async def test_erased_contacts_are_never_tagged_again(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, published
):
    operator = auth(tenant, "operator")
    tags = await catalog(client, operator)
    await client.post("/v1/contacts/wm-gone/tags", json={"tag_ids": [tags["VIP"]]}, headers=operator)
    async with pool.acquire() as conn, conn.transaction():
        await store.erase_contacts(conn, [(tenant, "wm-gone", T0)])
    assert (await client.get("/v1/contacts/wm-gone/tags", headers=operator)).json()["tags"] == []
    resp = await client.post("/v1/contacts/wm-gone/tags", json={"tag_ids": [tags["VIP"]]}, headers=operator)
    assert resp.status_code == 410 and resp.json()["type"] == "urn:scrm:problem:contact-erased"
    assert len(await published("contact-tagged", tenant)) == 1


async def test_changes_on_synced_tags_are_pushed_to_wecom(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool
):
    operator = auth(tenant, "operator")
    tags = await catalog(client, operator)
    wecom = RecordingAdapter()
    pusher = Pusher(pool, wecom, retry_base=timedelta(0))
    # wm-op was added by two guides; the operator's change goes to the latest one.
    await follow(pool, tenant, "wm-op", "li.na", T0)
    await follow(pool, tenant, "wm-op", "zhang.wei", T0 + timedelta(hours=1))
    await follow(pool, tenant, "wm-g", "li.na", T0)

    ids = [tags["VIP"], tags["高消费"]]
    assert (
        await client.post("/v1/contacts/wm-op/tags", json={"tag_ids": ids}, headers=operator)
    ).status_code == 200
    guide = auth(tenant, "guide", "li.na")
    resp = await client.post("/v1/contacts/wm-g/tags", json={"tag_ids": [tags["高消费"]]}, headers=guide)
    assert resp.status_code == 200
    # A tag not synced with WeCom queues nothing.
    assert (await push_store.count_pushes(pool, tenant)) == {"pending": 2}

    report = await pusher.run_once()
    assert report.outcomes == {"pushed": 2}
    assert sorted(wecom.calls, key=lambda c: c.external_userid) == [
        MarkTagCall(tenant, "li.na", "wm-g", ("etHIGH",), ()),
        MarkTagCall(tenant, "zhang.wei", "wm-op", ("etHIGH",), ()),
    ]
    assert await push_store.count_pushes(pool, tenant) == {}

    # A removal goes to the relation that carries the tag on WeCom.
    wecom.calls.clear()
    await client.delete(f"/v1/contacts/wm-op/tags/{tags['高消费']}", headers=operator)
    await pusher.run_once()
    assert wecom.calls == [MarkTagCall(tenant, "zhang.wei", "wm-op", (), ("etHIGH",))]

    # WeCom busy: retried (here without a wait) until it goes through.
    wecom.calls.clear()
    wecom.fail_next(45009, times=2)
    await client.post("/v1/contacts/wm-op/tags", json={"tag_ids": [tags["高消费"]]}, headers=operator)
    assert (await pusher.run_once()).outcomes == {"retry": 1}
    assert (await pusher.run_once()).outcomes == {"retry": 1}
    assert (await pusher.run_once()).outcomes == {"pushed": 1}
    assert wecom.calls == [MarkTagCall(tenant, "zhang.wei", "wm-op", ("etHIGH",), ())]

    # An error retrying cannot fix fails the push at once; it stays visible.
    wecom.fail_next(84061, retryable=False)
    await client.delete(f"/v1/contacts/wm-op/tags/{tags['高消费']}", headers=operator)
    assert (await pusher.run_once()).outcomes == {"failed": 1}
    assert await push_store.count_pushes(pool, tenant) == {"failed": 1}

    # No staff member known: it waits for one (friend-added may still be on its way).
    await client.post("/v1/contacts/wm-nobody/tags", json={"tag_ids": [tags["高消费"]]}, headers=operator)
    assert (await pusher.run_once()).outcomes == {"retry": 1}
    await follow(pool, tenant, "wm-nobody", "wang.fang", T0)
    assert (await pusher.run_once()).outcomes == {"pushed": 1}
    assert wecom.calls[-1] == MarkTagCall(tenant, "wang.fang", "wm-nobody", ("etHIGH",), ())
