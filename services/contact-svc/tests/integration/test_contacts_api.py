"""The contacts API on a read model built by the real worker: filters, cursor pagination, guide
scope, tenant isolation, the directory (staff, stores, channels) and auth on every route."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def pages(client: httpx.AsyncClient, headers: dict[str, str], **params) -> list[list[dict]]:
    """Every page of GET /v1/contacts with ``params``, following next_cursor."""
    out: list[list[dict]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/v1/contacts", params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
        assert len(out) < 100, "pagination does not end"


def _key(item: dict) -> tuple[datetime, str]:
    at = item["first_added_at"]
    return (datetime.fromisoformat(at) if at else datetime.min.replace(tzinfo=UTC), item["contact_id"])


async def test_cursor_pagination_through_120_contacts_with_filters(
    client, auth, contact_worker, tenant, events, broker, api
):
    admin = auth(tenant, "operator")
    produced = []
    for i in range(120):
        # every time appears twice, so the contact_id tie-break is exercised
        when = T0 + timedelta(minutes=i // 2)
        produced.append(
            events.added(
                f"wm-{i:03d}",
                "guide-a" if i % 2 == 0 else "guide-b",
                when,
                state="poster" if i % 3 == 0 else "",
                name={7: "100%真", 8: "a_b", 9: "ab"}.get(i, f"客户{i:03d}"),
            )
        )
    # two contacts known only from a deletion: no first_added_at, they sort as the oldest
    for euid in ("wm-x1", "wm-x2"):
        produced.append(events.deleted(euid, "guide-a", T0, by="customer"))
    await broker.produce(*produced)
    await api.consumed(admin, {"friend-added": 120, "friend-deleted": 2})

    newest_first = await pages(client, admin, limit=25)
    assert [len(p) for p in newest_first] == [25, 25, 25, 25, 22]
    items = [i for p in newest_first for i in p]
    assert len({i["contact_id"] for i in items}) == 122
    assert [_key(i) for i in items] == sorted((_key(i) for i in items), reverse=True)
    assert {i["external_userid"] for i in items[-2:]} == {"wm-x1", "wm-x2"}
    assert items[0]["unionid"] is None and items[0]["follows"][0]["staff_id"] in ("guide-a", "guide-b")

    oldest_first = [i for p in await pages(client, admin, sort="first_added_at", limit=200) for i in p]
    assert [i["contact_id"] for i in oldest_first] == [i["contact_id"] for i in reversed(items)]

    guide_a = [
        i for p in await pages(client, admin, staff_id="guide-a", sort="first_added_at", limit=7) for i in p
    ]
    assert len(guide_a) == 62  # 60 followed + the two lost ones
    assert [_key(i) for i in guide_a] == sorted(_key(i) for i in guide_a)

    active_posters = [
        i
        for p in await pages(client, admin, staff_id="guide-a", state="poster", status="active", limit=3)
        for i in p
    ]
    assert sorted(i["external_userid"] for i in active_posters) == [
        f"wm-{i:03d}" for i in range(120) if i % 2 == 0 and i % 3 == 0
    ]
    window = await pages(
        client,
        admin,
        added_from=(T0 + timedelta(minutes=10)).isoformat(),
        added_to=(T0 + timedelta(minutes=20)).isoformat(),
        limit=6,
    )
    assert sorted(i["external_userid"] for p in window for i in p) == [f"wm-{i:03d}" for i in range(20, 40)]
    lost = [i for p in await pages(client, admin, status="lost") for i in p]
    assert {i["external_userid"] for i in lost} == {"wm-x1", "wm-x2"}

    # names are searched literally: % and _ are not wildcards
    assert [i["name"] for p in await pages(client, admin, q="%") for i in p] == ["100%真"]
    assert [i["name"] for p in await pages(client, admin, q="a_b") for i in p] == ["a_b"]
    assert len([i for p in await pages(client, admin, q="客户", limit=200) for i in p]) == 117

    # a cursor only works for the query it came from, and only as issued
    first = (await client.get("/v1/contacts", params={"limit": 5}, headers=admin)).json()
    cursor = first["next_cursor"]
    other = await client.get(
        "/v1/contacts", params={"limit": 5, "staff_id": "guide-a", "cursor": cursor}, headers=admin
    )
    assert other.status_code == 422 and other.json()["type"] == "urn:scrm:problem:invalid-cursor"
    payload, mac = cursor.split(".")
    tampered = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + mac
    for bad in (tampered, "not-a-cursor", cursor + "x"):
        resp = await client.get("/v1/contacts", params={"limit": 5, "cursor": bad}, headers=admin)
        assert resp.status_code == 422, bad
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"sort": "name"},
        {"status": "gone"},
        {"added_from": "2024-05-01T10:00:00"},
    ):
        assert (await client.get("/v1/contacts", params=params, headers=admin)).status_code == 422, params


async def test_guides_see_their_own_customers_and_tenants_see_only_theirs(
    client, auth, contact_worker, tenant, events, broker, api
):
    admin = auth(tenant, "admin")
    await broker.produce(
        events.added("wm-shared", "guide-a", T0, unionid="ou-shared"),
        events.added("wm-shared", "guide-b", T0 + timedelta(minutes=1)),
        events.added("wm-b-only", "guide-b", T0),
        events.updated(
            "wm-shared",
            T0 + timedelta(minutes=2),
            staff_id="guide-b",
            changed=["remark"],
            remark="b's note",
        ),
    )
    await api.consumed(admin, {"friend-added": 3, "contact-updated": 1})
    by_euid = {
        i["external_userid"]: i for i in (await client.get("/v1/contacts", headers=admin)).json()["items"]
    }
    assert set(by_euid) == {"wm-shared", "wm-b-only"}
    shared_id, b_only_id = by_euid["wm-shared"]["contact_id"], by_euid["wm-b-only"]["contact_id"]

    guide_a = auth(tenant, "guide", staff="guide-a")
    seen = (await client.get("/v1/contacts", headers=guide_a)).json()["items"]
    assert [i["external_userid"] for i in seen] == ["wm-shared"]
    (item,) = seen
    assert item["unionid"] is None  # admins and operators only
    remarks = {f["staff_id"]: f["remark"] for f in item["follows"]}
    assert remarks == {"guide-a": None, "guide-b": None}  # b's note is b's
    assert (await client.get(f"/v1/contacts/{b_only_id}", headers=guide_a)).status_code == 404
    assert (await client.get(f"/v1/contacts/{shared_id}", headers=guide_a)).status_code == 200
    filtered = await client.get("/v1/contacts", params={"staff_id": "guide-b"}, headers=guide_a)
    assert [i["external_userid"] for i in filtered.json()["items"]] == ["wm-shared"]
    assert (await client.get("/v1/staff", headers=guide_a)).json() == [
        {"staff_id": "guide-a", "name": None, "store_id": None, "status": "active", "followers": 1}
    ]

    guide_b = auth(tenant, "guide", staff="guide-b")
    b_view = (await client.get(f"/v1/contacts/{shared_id}", headers=guide_b)).json()
    assert {f["staff_id"]: f["remark"] for f in b_view["follows"]} == {"guide-a": None, "guide-b": "b's note"}
    assert b_view["identities"] == ["unionid"]  # the kinds linked are visible to the guide...
    assert b_view["unionid"] is None  # ...the values are not

    detail = (await client.get(f"/v1/contacts/{shared_id}", headers=admin)).json()
    assert detail["unionid"] == "ou-shared"
    assert detail["identities"] == ["unionid"]
    assert {f["staff_id"]: f["remark"] for f in detail["follows"]} == {"guide-a": None, "guide-b": "b's note"}

    stranger = auth(f"x{tenant}", "admin")
    assert (await client.get(f"/v1/contacts/{shared_id}", headers=stranger)).status_code == 404
    assert (
        await client.get("/v1/contacts", params={"external_userid": "wm-shared"}, headers=stranger)
    ).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert (await client.delete(f"/v1/contacts/{shared_id}", headers=stranger)).status_code == 404
    assert (await client.get("/v1/staff", headers=stranger)).json() == []
    assert (await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=admin)).status_code == 404


async def test_directory_staff_stores_and_channels(client, auth, tenant):
    admin = auth(tenant, "admin")
    operator = auth(tenant, "operator")
    unknown = await client.put("/v1/staff/zhang.wei", json={"store_id": "sh-012"}, headers=admin)
    assert unknown.status_code == 422 and unknown.json()["type"] == "urn:scrm:problem:unknown-store"
    assert (await client.put("/v1/stores/sh-012", json={"name": "静安店"}, headers=operator)).json() == {
        "store_id": "sh-012",
        "name": "静安店",
    }
    created = await client.put(
        "/v1/staff/zhang.wei", json={"name": "张伟", "store_id": "sh-012"}, headers=admin
    )
    assert created.status_code == 200
    assert created.json() == {
        "staff_id": "zhang.wei",
        "name": "张伟",
        "store_id": "sh-012",
        "status": "active",
        "followers": 0,
    }
    resigned = await client.put("/v1/staff/zhang.wei", json={"status": "resigned"}, headers=admin)
    assert resigned.json()["name"] == "张伟" and resigned.json()["store_id"] == "sh-012"  # untouched
    assert resigned.json()["status"] == "resigned"
    detached = await client.put("/v1/staff/zhang.wei", json={"store_id": None}, headers=admin)
    assert detached.json()["store_id"] is None
    for bad in ({"status": None}, {"status": "fired"}, {"nickname": "x"}, {"name": ""}):
        assert (await client.put("/v1/staff/zhang.wei", json=bad, headers=admin)).status_code == 422, bad

    channel = {"name": "春季海报", "store_id": "sh-012", "campaign_id": "spring-24"}
    assert (await client.put("/v1/channels/poster-1", json=channel, headers=operator)).status_code == 200
    bad_store = await client.put(
        "/v1/channels/poster-2", json={"name": "x", "store_id": "nope"}, headers=operator
    )
    assert bad_store.status_code == 422
    assert (await client.get("/v1/channels", headers=auth(tenant, "guide", staff="g"))).json() == [
        {"state": "poster-1", **channel}
    ]
    assert (await client.get("/v1/channels", headers=auth(f"x{tenant}", "admin"))).json() == []


ROUTES = [
    # (method, path, roles refused with 403)
    ("GET", "/v1/contacts", []),
    ("GET", "/v1/contacts/{id}", []),
    ("POST", "/v1/contacts/{id}/identities", []),
    ("DELETE", "/v1/contacts/{id}", ["operator", "guide"]),
    ("GET", "/v1/staff", []),
    ("PUT", "/v1/staff/zhang.wei", ["operator", "guide"]),
    ("GET", "/v1/stores", []),
    ("PUT", "/v1/stores/sh-012", ["guide"]),
    ("GET", "/v1/channels", []),
    ("PUT", "/v1/channels/poster-1", ["guide"]),
    ("POST", "/v1/transfers", ["guide"]),
    ("GET", "/v1/transfers/abc", ["guide"]),
]


@pytest.mark.parametrize(("method", "path", "refused"), ROUTES)
async def test_every_route_needs_a_token_and_the_right_role(client, auth, tenant, method, path, refused):
    url = path.format(id=uuid.uuid4())
    body = {"name": "x"} if method in ("PUT", "POST") else None
    anonymous = await client.request(method, url, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    bad = await client.request(method, url, json=body, headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    for role in refused:
        resp = await client.request(method, url, json=body, headers=auth(tenant, role, staff="g"))
        assert resp.status_code == 403, (role, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
