"""The contacts read model, built by the real worker from events on the real topics.

Events are produced the way contact-svc's callback (or any producer) sends them; the test then
reads the API. "Consumed" is known from the ingest tally, which the worker updates in the same
transaction as the read model, so no test waits on time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_friend_added_becomes_visible_with_its_channel_store_and_staff(
    client, auth: Callable[..., dict[str, str]], contact_worker, tenant, events, broker, api
):
    admin = auth(tenant, "admin")
    assert (
        await client.put("/v1/stores/sh-012", json={"name": "上海静安店"}, headers=admin)
    ).status_code == 200
    channel = {"name": "门店海报", "store_id": "sh-012", "campaign_id": "spring"}
    assert (await client.put("/v1/channels/poster-sh-012", json=channel, headers=admin)).status_code == 200

    await broker.produce(
        events.added(
            "wm-a", "zhang.wei", at(0), state="poster-sh-012", name="小李", gender=2, welcome_code="w"
        ),
        events.added("wm-b", "zhang.wei", at(1), state="", store_id="bj-001"),
    )

    await api.wait_visible(admin, "wm-a")
    item = await api.contact(admin, "wm-a")
    assert item["external_userid"] == "wm-a"
    assert item["name"] == "小李" and item["gender"] == 2
    assert item["status"] == "active"
    assert datetime.fromisoformat(item["first_added_at"]) == at(0)
    (follow,) = item["follows"]
    assert follow["staff_id"] == "zhang.wei"
    assert follow["state"] == "poster-sh-012"
    assert follow["store_id"] == "sh-012"  # from the channel code
    assert follow["status"] == "active"

    await api.consumed(admin, {"friend-added": 2})
    assert (await api.contact(admin, "wm-b"))["follows"][0]["store_id"] == "bj-001"  # from the event
    staff = (await client.get("/v1/staff", headers=admin)).json()
    assert staff == [
        {"staff_id": "zhang.wei", "name": None, "store_id": None, "status": "active", "followers": 2}
    ]
    stores = (await client.get("/v1/stores", headers=admin)).json()
    assert {s["store_id"] for s in stores} == {"sh-012", "bj-001"}


async def test_duplicates_count_once_and_out_of_order_deletes_win(
    client, auth, contact_worker, tenant, events, broker, api
):
    admin = auth(tenant, "admin")
    first = events.added("wm-dup", "guide-1", at(0), state="s1")
    # the same relation: deleted at 10, but the deletion arrives before the add
    gone_add = events.added("wm-ooo", "guide-1", at(0), state="s2")
    gone_delete = events.deleted("wm-ooo", "guide-1", at(10), by="staff", source="DELETE_BY_TRANSFER")
    # and an older deletion that arrives after a re-add must change nothing
    readd = events.added("wm-readd", "guide-1", at(20), state="s3")
    stale_delete = events.deleted("wm-readd", "guide-1", at(5))

    await broker.produce(first, first, gone_delete, readd)
    await broker.produce(gone_add, stale_delete, first)
    await api.consumed(admin, {"friend-added": 3, "friend-deleted": 2})

    dup = await api.contact(admin, "wm-dup")
    assert len(dup["follows"]) == 1
    assert datetime.fromisoformat(dup["first_added_at"]) == at(0)

    ooo = await api.contact(admin, "wm-ooo")
    (follow,) = ooo["follows"]
    assert follow["status"] == "deleted"
    assert follow["deleted_by"] == "staff"
    assert follow["state"] == "s2"  # the late add still tells which channel brought the friend
    assert datetime.fromisoformat(follow["added_at"]) == at(0)
    assert ooo["status"] == "lost"
    assert datetime.fromisoformat(ooo["first_added_at"]) == at(0)

    readded = await api.contact(admin, "wm-readd")
    assert readded["status"] == "active"
    assert readded["follows"][0]["status"] == "active"
    assert readded["follows"][0]["deleted_by"] is None

    staff = (await client.get("/v1/staff", headers=admin)).json()
    assert [(s["staff_id"], s["followers"]) for s in staff] == [("guide-1", 2)]

    rows = await client.get("/v1/contacts", params={"status": "lost"}, headers=admin)
    assert [i["external_userid"] for i in rows.json()["items"]] == ["wm-ooo"]


async def test_contact_updated_edits_the_follow_and_the_profile_but_older_profiles_only_fill_gaps(
    client, auth, contact_worker, tenant, events, broker, api, contact_app
):
    admin = auth(tenant, "admin")
    await broker.produce(
        # the edit arrives before the friendship it edits
        events.updated(
            "wm-u",
            at(5),
            staff_id="guide-1",
            changed=["remark", "tags"],
            remark="VIP",
            tag_ids=["t1"],
        ),
        events.updated(
            "wm-u", at(6), changed=["profile"], name="王芳", avatar="https://img/new.png", gender=2
        ),
        events.updated("wm-u", at(7), changed=["unionid"], unionid="ou-1"),
    )
    await broker.produce(
        events.added("wm-u", "guide-1", at(0), state="poster", name="旧名", avatar="https://img/old.png"),
    )
    await api.consumed(admin, {"friend-added": 1, "contact-updated": 3})

    item = await api.contact(admin, "wm-u")
    assert item["name"] == "王芳"
    assert item["avatar"] == "https://img/new.png"
    assert item["unionid"] == "ou-1"
    assert item["status"] == "active"
    (follow,) = item["follows"]
    assert follow["remark"] == "VIP"
    assert follow["state"] == "poster"
    assert follow["status"] == "active"
    tags = await contact_app.state.pool.fetchval(
        "SELECT tag_ids FROM follows WHERE tenant_id = $1 AND external_userid = 'wm-u'", tenant
    )
    assert tags == ["t1"]

    # a guide's later edit clears the remark and sets a description
    await broker.produce(
        events.updated(
            "wm-u",
            at(8),
            staff_id="guide-1",
            changed=["remark", "description"],
            description="likes tea",
        ),
    )
    await api.consumed(admin, {"contact-updated": 4})
    row = await contact_app.state.pool.fetchrow(
        "SELECT remark, description, tag_ids FROM follows WHERE tenant_id = $1 AND external_userid = 'wm-u'",
        tenant,
    )
    assert dict(row) == {"remark": None, "description": "likes tea", "tag_ids": ["t1"]}
