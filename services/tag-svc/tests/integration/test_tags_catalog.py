"""The tag catalogue over HTTP: groups and tags, unique names (409), ordering, roles, tenancy,
and the tenant's WeCom credentials."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.integration


async def make_group(client: httpx.AsyncClient, headers: dict[str, str], **body) -> dict:
    resp = await client.post("/v1/tag-groups", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_groups_and_tags_crud_in_order(client: httpx.AsyncClient, auth, tenant: str):
    admin, operator, guide = auth(tenant, "admin"), auth(tenant, "operator"), auth(tenant, "guide", "g1")
    # Created out of order; omitted orders go last.
    value = await make_group(
        client,
        admin,
        name="消费能力",
        order=2,
        tags=[{"name": "高", "order": 2}, {"name": "低", "order": 1, "wecom_tag_id": "etLOW"}],
    )
    source = await make_group(client, operator, name="来源", order=1)
    later = await make_group(client, operator, name="兴趣")
    assert later["order"] == 3
    assert [t["name"] for t in value["tags"]] == ["低", "高"]
    assert value["tags"][0]["wecom_tag_id"] == "etLOW"

    resp = await client.post(
        f"/v1/tag-groups/{source['group_id']}/tags", json={"name": "门店海报"}, headers=operator
    )
    assert resp.status_code == 201, resp.text
    poster = resp.json()
    assert poster["group_name"] == "来源" and poster["order"] == 1

    groups = (await client.get("/v1/tag-groups", headers=guide)).json()
    assert [g["name"] for g in groups] == ["来源", "消费能力", "兴趣"]
    tags = (await client.get("/v1/tags", headers=guide)).json()
    assert [t["name"] for t in tags] == ["门店海报", "低", "高"]
    only = (await client.get("/v1/tags", params={"group_id": value["group_id"]}, headers=guide)).json()
    assert [t["name"] for t in only] == ["低", "高"]
    by_wecom = (await client.get("/v1/tags", params={"wecom_tag_id": "etLOW"}, headers=guide)).json()
    assert [t["name"] for t in by_wecom] == ["低"]

    # Reorder, rename, relink, move.
    resp = await client.patch(
        f"/v1/tag-groups/{later['group_id']}", json={"order": 0, "name": "偏好"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    assert (await client.get("/v1/tag-groups", headers=admin)).json()[0]["name"] == "偏好"
    high = value["tags"][1]
    resp = await client.patch(
        f"/v1/tags/{high['tag_id']}", json={"order": 0, "wecom_tag_id": "etHIGH"}, headers=operator
    )
    assert resp.status_code == 200 and resp.json()["wecom_tag_id"] == "etHIGH"
    listed = (await client.get("/v1/tags", params={"group_id": value["group_id"]}, headers=admin)).json()
    assert [t["name"] for t in listed] == ["高", "低"]
    resp = await client.patch(f"/v1/tags/{high['tag_id']}", json={"wecom_tag_id": None}, headers=operator)
    assert resp.json()["wecom_tag_id"] is None
    resp = await client.patch(
        f"/v1/tags/{high['tag_id']}", json={"group_id": later["group_id"]}, headers=operator
    )
    assert resp.status_code == 200 and resp.json()["group_name"] == "偏好"

    # Delete: a tag nobody carries goes at once (204), and so does its group.
    assert (await client.delete(f"/v1/tags/{poster['tag_id']}", headers=operator)).status_code == 204
    assert (await client.get(f"/v1/tags/{poster['tag_id']}", headers=admin)).status_code == 404
    assert (await client.delete(f"/v1/tag-groups/{later['group_id']}", headers=admin)).status_code == 204
    assert (await client.get(f"/v1/tags/{high['tag_id']}", headers=admin)).status_code == 404
    names = [g["name"] for g in (await client.get("/v1/tag-groups", headers=admin)).json()]
    assert names == ["来源", "消费能力"]
    # The names are free again.
    await make_group(client, admin, name="偏好", tags=[{"name": "高"}])


async def test_names_and_wecom_ids_are_unique(client: httpx.AsyncClient, auth, tenant: str):
    admin = auth(tenant, "operator")
    group = await make_group(client, admin, name="等级", tags=[{"name": "VIP", "wecom_tag_id": "etVIP"}])
    other = await make_group(client, admin, name="渠道")

    resp = await client.post("/v1/tag-groups", json={"name": "等级"}, headers=admin)
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == "urn:scrm:problem:group-name-taken"

    resp = await client.post(f"/v1/tag-groups/{group['group_id']}/tags", json={"name": "VIP"}, headers=admin)
    assert resp.status_code == 409 and resp.json()["type"] == "urn:scrm:problem:tag-name-taken"
    # The same name in another group is fine; the same WeCom tag anywhere is not.
    resp = await client.post(f"/v1/tag-groups/{other['group_id']}/tags", json={"name": "VIP"}, headers=admin)
    assert resp.status_code == 201
    moved = resp.json()
    resp = await client.post(
        f"/v1/tag-groups/{other['group_id']}/tags",
        json={"name": "SVIP", "wecom_tag_id": "etVIP"},
        headers=admin,
    )
    assert resp.status_code == 409 and resp.json()["type"] == "urn:scrm:problem:wecom-tag-id-taken"
    # A rename or a move into a clash is refused too.
    resp = await client.patch(
        f"/v1/tags/{moved['tag_id']}", json={"group_id": group["group_id"]}, headers=admin
    )
    assert resp.status_code == 409
    resp = await client.patch(f"/v1/tag-groups/{other['group_id']}", json={"name": "等级"}, headers=admin)
    assert resp.status_code == 409
    # Repeated names inside one request, nulls and unknown fields are 422.
    resp = await client.post(
        "/v1/tag-groups", json={"name": "x", "tags": [{"name": "a"}, {"name": "a"}]}, headers=admin
    )
    assert resp.status_code == 422
    resp = await client.patch(f"/v1/tags/{moved['tag_id']}", json={"name": None}, headers=admin)
    assert resp.status_code == 422
    resp = await client.post("/v1/tag-groups", json={"name": "y", "colour": "red"}, headers=admin)
    assert resp.status_code == 422
    resp = await client.post("/v1/tag-groups", json={"name": " "}, headers=admin)
    assert resp.status_code == 422


async def test_roles_and_tenancy(client: httpx.AsyncClient, auth, tenant: str):
    admin = auth(tenant, "admin")
    guide = auth(tenant, "guide", "g1")
    group = await make_group(client, admin, name="会员", tags=[{"name": "金卡"}])
    tag_id = group["tags"][0]["tag_id"]

    assert (await client.get("/v1/tags")).status_code == 401
    assert (await client.post("/v1/tag-groups", json={"name": "n"})).status_code == 401
    resp = await client.get("/v1/tags", headers={"Authorization": "Bearer nonsense"})
    assert resp.status_code == 401

    # Guides read, never manage.
    assert (await client.get("/v1/tag-groups", headers=guide)).status_code == 200
    assert (await client.get(f"/v1/tags/{tag_id}", headers=guide)).status_code == 200
    for method, path, body in (
        ("POST", "/v1/tag-groups", {"name": "n"}),
        ("PATCH", f"/v1/tag-groups/{group['group_id']}", {"order": 3}),
        ("DELETE", f"/v1/tag-groups/{group['group_id']}", None),
        ("POST", f"/v1/tag-groups/{group['group_id']}/tags", {"name": "n"}),
        ("PATCH", f"/v1/tags/{tag_id}", {"order": 3}),
        ("DELETE", f"/v1/tags/{tag_id}", None),
        ("POST", "/v1/tag-jobs", {"tag_id": tag_id, "action": "add", "external_userids": ["wm-1"]}),
        ("PUT", "/v1/wecom/credentials", {"corp_id": "ww1", "secret": "s"}),
    ):
        resp = await client.request(method, path, json=body, headers=guide)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["type"] == "urn:scrm:problem:forbidden-role"

    # Another tenant sees none of it and can change none of it: 404, as if it did not exist.
    other = auth(f"o{tenant}", "admin")
    assert (await client.get("/v1/tag-groups", headers=other)).json() == []
    assert (await client.get("/v1/tags", headers=other)).json() == []
    for method, path, body in (
        ("GET", f"/v1/tag-groups/{group['group_id']}", None),
        ("PATCH", f"/v1/tag-groups/{group['group_id']}", {"order": 3}),
        ("DELETE", f"/v1/tag-groups/{group['group_id']}", None),
        ("POST", f"/v1/tag-groups/{group['group_id']}/tags", {"name": "n"}),
        ("GET", f"/v1/tags/{tag_id}", None),
        ("PATCH", f"/v1/tags/{tag_id}", {"order": 3}),
        ("DELETE", f"/v1/tags/{tag_id}", None),
        ("POST", "/v1/contacts/wm-1/tags", {"tag_ids": [tag_id]}),
        ("DELETE", f"/v1/contacts/wm-1/tags/{tag_id}", None),
        ("POST", "/v1/tag-jobs", {"tag_id": tag_id, "action": "add", "external_userids": ["wm-1"]}),
    ):
        resp = await client.request(method, path, json=body, headers=other)
        assert resp.status_code == 404, (method, path, resp.text)
    # Still there for its own tenant.
    assert (await client.get(f"/v1/tags/{tag_id}", headers=guide)).json()["name"] == "金卡"
    assert (await client.get(f"/v1/tags/{uuid.uuid4()}", headers=guide)).status_code == 404
    assert (await client.get("/v1/tags/not-a-uuid", headers=guide)).status_code == 422


async def test_wecom_credentials_never_show_the_secret(client: httpx.AsyncClient, auth, tenant: str):
    admin, operator = auth(tenant, "admin"), auth(tenant, "operator")
    assert (await client.get("/v1/wecom/credentials", headers=operator)).status_code == 404
    secret = "Xq9_Ld-3kVbN7sTzRw8YcHfGpJmA2eUoQiEnBvCx"
    resp = await client.put(
        "/v1/wecom/credentials", json={"corp_id": "ww5823bf96", "secret": secret}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    assert secret not in resp.text
    got = await client.get("/v1/wecom/credentials", headers=operator)
    assert got.status_code == 200 and secret not in got.text
    assert got.json()["corp_id"] == "ww5823bf96" and got.json()["has_secret"] is True
    resp = await client.put(
        "/v1/wecom/credentials", json={"corp_id": "ww1", "secret": secret}, headers=operator
    )
    assert resp.status_code == 403
    resp = await client.put(
        "/v1/wecom/credentials", json={"corp_id": "ww1", "secret": "has space"}, headers=admin
    )
    assert resp.status_code == 422 and "has space" not in resp.text
    assert (await client.get("/v1/wecom/credentials", headers=auth(f"o{tenant}", "admin"))).status_code == 404
