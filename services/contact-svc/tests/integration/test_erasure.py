"""PIPL erasure: personal fields go everywhere in contact-svc, the tombstone is published once,
and later events never bring the personal data back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def test_erasure_removes_personal_data_publishes_once_and_stays_erased(
    client, auth, contact_worker, contact_app, tenant, events, broker, api
):
    admin = auth(tenant, "admin")
    pool = contact_app.state.pool
    await broker.produce(
        events.added(
            "wm-e", "guide-1", T0, name="陈小姐", avatar="https://img/e.png", unionid="ou-e", gender=2
        ),
        events.added("wm-keep", "guide-1", T0, name="留下"),
        events.updated(
            "wm-e",
            T0 + timedelta(minutes=1),
            staff_id="guide-1",
            changed=["remark", "description"],
            remark="138 0013 8000 陈",
            description="喜欢红色",
        ),
        events.order(T0, external_userid="wm-e", member_id="m-e"),
    )
    await api.consumed(admin, {"friend-added": 2, "contact-updated": 1, "order-placed": 1})
    # what the WeCom callback archived about this customer (and about another one)
    await pool.execute(
        "INSERT INTO callback_archive (tenant_id, payload_hash, external_userid, payload) "
        "VALUES ($1, 'h1', 'wm-e', '<xml>陈小姐</xml>'), ($1, 'h2', 'wm-keep', '<xml>留下</xml>')",
        tenant,
    )
    item = await api.contact(admin, "wm-e")
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
    keep = await api.contact(admin, "wm-keep")
    assert keep["name"] == "留下"
    staff = (await client.get("/v1/staff", headers=admin)).json()
    assert staff[0]["followers"] == 2  # counts stay

    (tombstone,) = await broker.published(pool, "contact-erased")
    assert tombstone["data"]["external_userid"] == "wm-e"
    assert tombstone["data"]["contact_id"] == item["contact_id"]
    before = await broker.published(pool, "contact-identified")

    # Later events about the erased customer do not bring personal data back.
    await broker.produce(
        events.updated(
            "wm-e",
            T0 + timedelta(days=1),
            changed=["profile", "unionid"],
            name="陈小姐",
            avatar="https://img/e2.png",
            unionid="ou-e",
        ),
        events.updated("wm-e", T0 + timedelta(days=1), staff_id="guide-1", changed=["remark"], remark="陈"),
        events.added("wm-e", "guide-2", T0 + timedelta(days=2), name="陈小姐", unionid="ou-e2"),
        events.order(T0, external_userid="wm-e", member_id="m-e", phone_hash="a" * 64),
    )
    await api.consumed(admin, {"friend-added": 3, "contact-updated": 3, "order-placed": 2})
    detail = (await client.get(url, headers=admin)).json()
    assert detail["status"] == "erased"
    assert (detail["name"], detail["avatar"], detail["unionid"]) == (None, None, None)
    assert detail["identities"] == []
    assert {f["staff_id"]: (f["status"], f["remark"]) for f in detail["follows"]} == {
        "guide-1": ("active", None),
        "guide-2": ("active", None),
    }
    assert await broker.published(pool, "contact-identified") == before
    assert len(await broker.published(pool, "contact-erased")) == 1
