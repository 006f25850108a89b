"""Syncing the catalogue with WeCom's corp tag library over HTTP (POST /v1/wecom/tags/sync), on
real PostgreSQL: through the in-memory stand-in the tests seed, and through the HTTP adapter
against a WeCom stand-in served on a real socket."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from scrm_shared.service import create_service_app
from scrm_shared.testing.plugin import asgi_client
from tag_svc.config import TagSettings
from tag_svc.main import SPEC
from tag_svc.tags.wecom import RecordingAdapter

from .wecom_standin import SECRET, WeComServer

pytestmark = pytest.mark.integration

SYNC = "/v1/wecom/tags/sync"
ZERO = {
    k: 0
    for k in (
        "groups_created",
        "groups_linked",
        "groups_renamed",
        "groups_reordered",
        "groups_unlinked",
        "tags_created",
        "tags_linked",
        "tags_renamed",
        "tags_reordered",
        "tags_moved",
        "tags_unlinked",
        "groups_pushed",
        "tags_pushed",
    )
}


@pytest.fixture
def standin(tag_app: FastAPI) -> RecordingAdapter:
    """The app's WeCom stand-in (the settings' recording adapter), which tests seed."""
    tag_app.state.wecom = RecordingAdapter()
    return tag_app.state.wecom  # type: ignore[no-any-return]


async def sync(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = await client.post(SYNC, params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def counts(report: dict[str, Any], **nonzero: int) -> dict[str, int]:
    """``report``'s counts, and what they should be (``nonzero`` over zeros)."""
    return {k: report[k] for k in ZERO}, {**ZERO, **nonzero}  # type: ignore[return-value]


async def catalogue(client: httpx.AsyncClient, headers: dict[str, str]) -> list[tuple[Any, ...]]:
    """(group, group order, wecom_group_id, [(tag, order, wecom_tag_id)...]) in display order."""
    groups = (await client.get("/v1/tag-groups", headers=headers)).json()
    return [
        (
            g["name"],
            g["order"],
            g["wecom_group_id"],
            [(t["name"], t["order"], t["wecom_tag_id"]) for t in g["tags"]],
        )
        for g in groups
    ]


async def make_group(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/tag-groups", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_a_pull_links_by_name_creates_the_rest_unlinks_the_lost_and_repeats_as_zeros(
    client: httpx.AsyncClient, auth, tenant: str, standin: RecordingAdapter
):
    admin = auth(tenant, "admin")
    lib = standin.library(tenant)
    source = lib.add_group("来源", ["门店海报", ("朋友推荐", 5)], order=1)
    value = lib.add_group("消费能力", [("高", 2), ("低", 1)], order=9)
    await make_group(client, admin, name="来源", order=3, tags=[{"name": "门店海报"}, {"name": "本地"}])
    kept = await make_group(
        client, admin, name="兴趣", order=4, tags=[{"name": "护肤", "wecom_tag_id": "etGONE"}]
    )

    report = await sync(client, admin)
    got, expected = counts(
        report,
        groups_created=1,
        groups_linked=1,
        groups_reordered=1,
        tags_created=3,
        tags_linked=1,
        tags_reordered=1,
        tags_unlinked=1,
    )
    assert got == expected
    assert report["unlinked"] == [
        {
            "tag_id": kept["tags"][0]["tag_id"],
            "group_id": kept["group_id"],
            "name": "护肤",
            "wecom_tag_id": "etGONE",
        }
    ]
    assert report["issues"] == []
    poster, friends = (t.id for t in sorted(source.tags, key=lambda t: t.name != "门店海报"))
    high, low = (t.id for t in value.tags)
    # WeCom's order (larger first) became positions; the local-only group and tag stay as they were.
    assert await catalogue(client, admin) == [
        ("消费能力", 1, value.group_id, [("高", 1, high), ("低", 2, low)]),
        # The local-only tag keeps its order (2), a tie broken by name.
        ("来源", 2, source.group_id, [("朋友推荐", 1, friends), ("本地", 2, None), ("门店海报", 2, poster)]),
        ("兴趣", 4, None, [("护肤", 1, None)]),
    ]

    again = await sync(client, admin)
    got, expected = counts(again)
    assert got == expected and again["unlinked"] == again["issues"] == []


async def test_wecom_renames_reorders_and_deletions_follow_and_lost_tags_are_kept(
    client: httpx.AsyncClient, auth, tenant: str, standin: RecordingAdapter
):
    admin = auth(tenant, "admin")
    lib = standin.library(tenant)
    group = lib.add_group("会员", ["银卡", "金卡", "黑卡"])
    await sync(client, admin)
    silver, gold, black = (t.id for t in group.tags)
    lib.rename_tag(silver, "白银")
    lib.reorder_tag(black, 10)
    lib.delete_tag(gold)
    lib.rename_group(group.group_id, "会员等级")

    report = await sync(client, admin)
    got, expected = counts(report, groups_renamed=1, tags_renamed=1, tags_reordered=2, tags_unlinked=1)
    assert got == expected
    assert [t["name"] for t in report["unlinked"]] == ["金卡"]
    assert await catalogue(client, admin) == [
        ("会员等级", 1, group.group_id, [("黑卡", 1, black), ("白银", 2, silver), ("金卡", 2, None)])
    ]
    # The renamed tag is the same tag (its id) under WeCom's name.
    tags = (await client.get("/v1/tags", params={"wecom_tag_id": silver}, headers=admin)).json()
    assert [t["name"] for t in tags] == ["白银"]


async def test_taken_names_are_reported_not_failed_and_a_chain_of_renames_resolves(
    client: httpx.AsyncClient, auth, tenant: str, standin: RecordingAdapter
):
    admin = auth(tenant, "admin")
    lib = standin.library(tenant)
    chain = lib.add_group("链", ["甲", "乙"])
    swap = lib.add_group("换", ["A", "B"])
    await sync(client, admin)
    # 乙 takes 甲's name while 甲 moves on to 丙: 乙 now comes first in WeCom's order, so its rename
    # is refused once (甲 still has the name) and goes through on the retry. A and B swap names,
    # which no order of renames can do: reported.
    a, b = (t.id for t in chain.tags)
    lib.rename_tag(b, "甲")
    lib.rename_tag(a, "丙")
    lib.reorder_tag(b, 5)
    x, y = (t.id for t in swap.tags)
    lib.rename_tag(x, "B")
    lib.rename_tag(y, "A")
    # A new WeCom group whose name a local-only group has is linked, not a conflict.
    await make_group(client, admin, name="新", tags=[{"name": "新标签"}])
    lib.add_group("新", ["新标签"])

    report = await sync(client, admin)
    assert sorted((i["kind"], i["name"], i["wecom_tag_id"]) for i in report["issues"]) == [
        ("tag-name-taken", "A", y),
        ("tag-name-taken", "B", x),
    ]
    got, expected = counts(report, groups_linked=1, tags_linked=1, tags_renamed=2, tags_reordered=2)
    assert got == expected
    listed = {g[0]: g[3] for g in await catalogue(client, admin)}
    assert listed["链"] == [("甲", 1, b), ("丙", 2, a)]
    assert listed["换"] == [("A", 1, x), ("B", 2, y)]  # unchanged names, links kept
    # Nothing changed in WeCom: the same issues again, and no change.
    again = await sync(client, admin)
    assert len(again["issues"]) == 2
    got, expected = counts(again)
    assert got == expected


async def test_push_local_creates_local_only_tags_in_wecom_and_links_them(
    client: httpx.AsyncClient, auth, tenant: str, standin: RecordingAdapter
):
    admin = auth(tenant, "admin")
    lib = standin.library(tenant)
    synced = lib.add_group("来源", ["门店"])
    await make_group(client, admin, name="来源", tags=[{"name": "门店"}, {"name": "直播"}])
    await make_group(client, admin, name="本地组", tags=[{"name": "一"}, {"name": "二"}])
    await make_group(client, admin, name="空组")

    report = await sync(client, admin, push_local="true")
    assert report["groups_pushed"] == 1 and report["tags_pushed"] == 3
    wecom = {g.name: g for g in lib.groups()}
    assert set(wecom) == {"来源", "本地组"}  # WeCom has no empty groups
    assert [t.name for t in wecom["来源"].tags] == ["门店", "直播"]
    assert wecom["来源"].group_id == synced.group_id
    ids = {t.name: t.id for g in wecom.values() for t in g.tags}
    listed = {g[0]: g for g in await catalogue(client, admin)}
    assert listed["本地组"][2] == wecom["本地组"].group_id
    assert {t[0]: t[2] for t in listed["本地组"][3] + listed["来源"][3]} == ids
    assert listed["空组"][2] is None
    # Local order kept among the pushed tags (WeCom: larger order first).
    assert [t[0] for t in listed["本地组"][3]] == ["一", "二"]

    again = await sync(client, admin, push_local="true")
    got, expected = counts(again)
    assert got == expected


async def test_sync_is_admin_only_per_tenant_and_wecom_errors_change_nothing(
    client: httpx.AsyncClient, auth, tenant: str, standin: RecordingAdapter
):
    admin = auth(tenant, "admin")
    other = f"t{uuid.uuid4().hex[:10]}"
    await make_group(
        client, auth(other, "admin"), name="别家", tags=[{"name": "甲", "wecom_tag_id": "etOTHER"}]
    )
    standin.library(tenant).add_group("来源", ["门店"])
    for role in ("operator", "guide"):
        assert (await client.post(SYNC, headers=auth(tenant, role, "g1"))).status_code == 403
    assert (await client.post(SYNC)).status_code == 401

    standin.fail_next(45009, retryable=True)
    busy = await client.post(SYNC, headers=admin)
    assert busy.status_code == 503 and busy.json()["errcode"] == 45009
    standin.fail_next(60011, retryable=False)
    refused = await client.post(SYNC, headers=admin)
    assert refused.status_code == 502 and refused.json()["type"].endswith("wecom-error")
    assert await catalogue(client, admin) == []

    report = await sync(client, admin)
    assert report["groups_created"] == 1 and report["tags_created"] == 1
    # The other tenant's tag, linked to a WeCom id this tenant's WeCom lacks, is untouched.
    assert await catalogue(client, auth(other, "admin")) == [("别家", 1, None, [("甲", 1, "etOTHER")])]


async def test_a_rename_closing_a_tag_rule_cycle_is_skipped_and_reported(
    seg_app: FastAPI, seg_client: httpx.AsyncClient, seg_api, seg_worker, auth, tenant: str
):
    standin = seg_app.state.wecom = RecordingAdapter()
    admin = auth(tenant, "admin")
    lib = standin.library(tenant)
    group = lib.add_group("规则", ["甲", "丁"])
    await sync(seg_client, admin)
    tags = {t["name"]: t["tag_id"] for t in (await seg_client.get("/v1/tags", headers=admin)).json()}
    reader = await seg_api.create({"tag": "乙"}, name="读乙")
    await seg_api.wait_live(reader)
    rule = await seg_client.post(
        "/v1/tag-rules", json={"segment_id": reader, "tag_id": tags["甲"]}, headers=admin
    )
    assert rule.status_code == 201, rule.text
    # Renaming 甲 (added by 读乙's rule) to 乙 (read by 读乙) would feed the segment itself.
    first, fourth = (t.id for t in group.tags)
    lib.rename_tag(first, "乙")
    lib.rename_tag(fourth, "戊")
    lib.reorder_tag(fourth, 3)

    report = await sync(seg_client, admin)
    assert report["issues"] == [
        {
            "kind": "rename-cycle",
            "name": "乙",
            "wecom_group_id": None,
            "wecom_tag_id": first,
            "group_id": None,
            "tag_id": tags["甲"],
        }
    ]
    got, expected = counts(report, tags_renamed=1, tags_reordered=2)
    assert got == expected
    # 甲 kept its name but still took WeCom's order.
    listed = [
        (t["tag_id"], t["name"], t["order"]) for t in (await seg_client.get("/v1/tags", headers=admin)).json()
    ]
    assert listed == [(tags["丁"], "戊", 1), (tags["甲"], "甲", 2)]


# --- the HTTP adapter against a WeCom stand-in on a real socket --------------------------------


@pytest_asyncio.fixture
async def http_client(
    tag_settings: TagSettings, wecom_server: WeComServer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = tag_settings.model_copy(
        update={"tag_wecom_adapter": "http", "tag_wecom_api_base": wecom_server.base_url}
    )
    app = create_service_app(SPEC, settings)
    async with app.router.lifespan_context(app), asgi_client(app, "tag-svc") as c:
        yield c


async def test_the_http_adapter_syncs_through_wecoms_api(
    http_client: httpx.AsyncClient, wecom_server: WeComServer, auth, tenant: str
):
    admin = auth(tenant, "admin")
    missing = await http_client.post(SYNC, headers=admin)
    assert missing.status_code == 404 and missing.json()["type"].endswith("wecom-credentials-missing")
    put = await http_client.put(
        "/v1/wecom/credentials", json={"corp_id": "ww-acme", "secret": SECRET}, headers=admin
    )
    assert put.status_code == 200
    group = wecom_server.library.add_group("来源", ["门店", ("朋友", 2)], order=1)
    await make_group(http_client, admin, name="来源", tags=[{"name": "门店"}, {"name": "直播"}])
    await make_group(http_client, admin, name="本地", tags=[{"name": "一"}])

    report = await sync(http_client, admin, push_local="true")
    got = {
        k: report[k] for k in ("groups_linked", "tags_linked", "tags_created", "groups_pushed", "tags_pushed")
    }
    assert got == {
        "groups_linked": 1,
        "tags_linked": 1,
        "tags_created": 1,
        "groups_pushed": 1,
        "tags_pushed": 2,
    }
    calls = [(name, body) for name, _, body in wecom_server.requests if name != "gettoken"]
    assert calls[0] == ("get_corp_tag_list", {})
    # Into the linked group by its id; a new group by name (with WeCom's group order).
    pushes = [
        ("add_corp_tag", {"group_id": group.group_id, "tag": [{"name": "直播", "order": 1}]}),
        ("add_corp_tag", {"group_name": "本地", "order": 0, "tag": [{"name": "一", "order": 1}]}),
    ]
    assert calls[1:3] in (pushes, pushes[::-1])
    assert calls[3:] == [("get_corp_tag_list", {})]
    # Every call carried the token in its query string, never in the body.
    assert all(q == {"access_token": "tok-1"} for name, q, _ in wecom_server.requests if name != "gettoken")
    ids = {t.name: t.id for g in wecom_server.library.groups() for t in g.tags}
    pushed = {g.name: g.group_id for g in wecom_server.library.groups()}["本地"]
    listed = {g[0]: g for g in await catalogue(http_client, admin)}
    assert listed["本地"][2] == pushed and listed["来源"][2] == group.group_id
    assert {t[0]: t[2] for t in listed["本地"][3] + listed["来源"][3]} == ids

    # A token WeCom calls expired is replaced and the call repeated, once.
    wecom_server.errcodes["get_corp_tag_list"] = [42001]
    del wecom_server.requests[:]
    again = await sync(http_client, admin)
    got, expected = counts(again)
    assert got == expected
    assert [name for name, _, _ in wecom_server.requests] == [
        "gettoken",
        "get_corp_tag_list",
        "gettoken",
        "get_corp_tag_list",
    ]
    # An errcode WeCom answers is a 502 carrying it, and neither token nor secret.
    wecom_server.errcodes["get_corp_tag_list"] = [60020]
    refused = await http_client.post(SYNC, headers=admin)
    assert refused.status_code == 502 and refused.json()["errcode"] == 60020
    assert "tok-" not in refused.text and SECRET not in refused.text
