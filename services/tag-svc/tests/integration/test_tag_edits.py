"""Tag edits reaching segments and WeCom, end to end on the real broker and PostgreSQL.

Segments: tags are made and put on contacts through the API; their ``contact-tagged`` events are
read back from the real topic and forwarded to this test's topic, which the live segment
processor (``seg_worker``) reads; the worker's job task (:func:`tag_svc.tags.jobs.run_tag_jobs`:
bulk jobs, purges, name syncs) runs beside it. Memberships are read through the API and the
``segment-changed`` topic.

WeCom: renames and deletions made through the API are queued and pushed by the worker's
:class:`~tag_svc.tags.pushes.Pusher`, driven here one round at a time, through the recording
stand-in and through the HTTP adapter against a WeCom stand-in on a real socket.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from prometheus_client import REGISTRY

from scrm_shared.events import ContactTaggedEvent
from scrm_shared.service.worker import WorkerDeps
from scrm_shared.testing.plugin import wait_for
from tag_svc.config import TagSettings
from tag_svc.tags.jobs import run_tag_jobs
from tag_svc.tags.name_syncs import NameSyncRunner
from tag_svc.tags.pushes import Pusher
from tag_svc.tags.store import name_syncs
from tag_svc.tags.wecom import DelCorpTagCall, EditCorpTagCall, RecordingAdapter, open_http_adapter

from .wecom_standin import SECRET, WeComServer

pytestmark = pytest.mark.integration

Published = Callable[..., Awaitable[list[dict[str, Any]]]]


def euid() -> str:
    return f"wm{uuid.uuid4().hex[:12]}"


def tag_rule(name: str) -> dict[str, Any]:
    return {"all": [{"tag": name}]}


@pytest_asyncio.fixture
async def job_task(seg_deps: WorkerDeps) -> AsyncIterator[None]:
    """The worker's job task (bulk jobs, purges, name syncs) on the app's pool, in this loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_tag_jobs(seg_deps, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@dataclass
class Rig:
    """One tenant's tags and segments through the API, and its contact-tagged events forwarded to
    the processor."""

    tenant: str
    client: httpx.AsyncClient
    headers: dict[str, str]
    pool: asyncpg.Pool
    seg_api: Any
    seg_send: Callable[..., Awaitable[None]]
    published: Published
    forwarded: set[str] = field(default_factory=set)

    async def group(self, name: str, tags: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = {"name": name, "tags": tags, **extra}
        resp = await self.client.post("/v1/tag-groups", json=body, headers=self.headers)
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def tag(self, contact: str, *tag_ids: str) -> None:
        resp = await self.client.post(
            f"/v1/contacts/{contact}/tags", json={"tag_ids": list(tag_ids)}, headers=self.headers
        )
        assert resp.status_code == 200, resp.text

    async def rename(self, tag_id: str, name: str) -> None:
        resp = await self.client.patch(f"/v1/tags/{tag_id}", json={"name": name}, headers=self.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == name

    async def segment(self, rule: dict[str, Any]) -> str:
        segment_id = await self.seg_api.create(rule)
        await self.seg_api.wait_live(segment_id)
        return str(segment_id)

    async def forward(self, *, hold: frozenset[str] = frozenset()) -> int:
        """Forward this tenant's contact-tagged events not forwarded yet to the processor's topic,
        except those of the contacts in ``hold`` (still "on their way")."""
        events = [
            ContactTaggedEvent.model_validate(e)
            for e in await self.published("contact-tagged", self.tenant)
            if e["event_id"] not in self.forwarded and e["data"]["external_userid"] not in hold
        ]
        await self.seg_send(*events)
        self.forwarded.update(str(e.event_id) for e in events)
        return len(events)

    async def members(self, segment_id: str) -> set[str]:
        return set(await self.seg_api.members(segment_id))

    async def syncs_done(self, tag_id: str, count: int) -> None:
        async def done() -> bool:
            syncs = await name_syncs.get_syncs(self.pool, self.tenant, uuid.UUID(tag_id))
            return len(syncs) == count and all(s.status == "done" for s in syncs)

        await wait_for(done, timeout=30)


@pytest.fixture
def rig(
    tenant: str,
    seg_client: httpx.AsyncClient,
    seg_headers: dict[str, str],
    seg_pool: asyncpg.Pool,
    seg_api,
    seg_send,
    published: Published,
    seg_worker,
    job_task: None,
) -> Rig:
    return Rig(tenant, seg_client, seg_headers, seg_pool, seg_api, seg_send, published)


def transitions(events: list[dict[str, Any]], cause: str) -> set[tuple[str, str, str]]:
    return {(e["segment_id"], e["external_userid"], e["change"]) for e in events if e["cause"] == cause}


# --- segments ----------------------------------------------------------------------------------


async def test_a_rename_moves_the_carriers_from_the_old_names_segments_to_the_new_ones(
    rig: Rig, seg_published
):
    vip = (await rig.group("会员", [{"name": "VIP"}]))["tags"][0]["tag_id"]
    # Another group's tag of the same name: its carriers keep "VIP" whatever the first one is called.
    other_vip = (await rig.group("等级", [{"name": "VIP"}]))["tags"][0]["tag_id"]
    on_vip, on_svip = await rig.segment(tag_rule("VIP")), await rig.segment(tag_rule("SVIP"))
    a, b, late, both = euid(), euid(), euid(), euid()
    for contact in (a, b, late):
        await rig.tag(contact, vip)
    await rig.tag(both, vip, other_vip)
    # `late`'s event is still on its way when the tag is renamed.
    assert await rig.forward(hold=frozenset({late})) == 4
    await rig.seg_api.wait_members(on_vip, {a, b, both})

    await rig.rename(vip, "SVIP")
    await rig.syncs_done(vip, 1)
    await rig.seg_api.wait_members(on_svip, {a, b, both})
    assert await rig.members(on_vip) == {both}
    events = await seg_published()
    assert transitions(events, "rule-edited") == {
        (on_vip, a, "exited"),
        (on_vip, b, "exited"),
        (on_svip, a, "entered"),
        (on_svip, b, "entered"),
        (on_svip, both, "entered"),
    }
    [sync] = await name_syncs.get_syncs(rig.pool, rig.tenant, uuid.UUID(vip))
    assert (sync.old_name, sync.new_name, sync.total, sync.processed) == ("VIP", "SVIP", 4, 4)
    tags = dict(
        await rig.pool.fetch(
            "SELECT external_userid, tags FROM profiles WHERE tenant_id = $1 AND external_userid = ANY($2)",
            rig.tenant,
            [a, both],
        )
    )
    assert (sorted(tags[a]), sorted(tags[both])) == (["SVIP"], ["SVIP", "VIP"])

    # The event sent before the rename arrives now, with the old name: it is the renamed tag's, so
    # it counts under the new name (and its contact never enters the old name's segment).
    assert await rig.forward() == 1
    await rig.seg_api.wait_members(on_svip, {a, b, both, late})
    assert await rig.members(on_vip) == {both}
    name = await rig.pool.fetchval(
        "SELECT tag_name FROM segment_contact_tags WHERE tenant_id = $1 AND external_userid = $2",
        rig.tenant,
        late,
    )
    assert name == "SVIP"
    assert (on_vip, late, "entered") not in transitions(await seg_published(), "event")

    # A second rename: the new name's segment takes the contacts, the others let them go.
    on_gold = await rig.segment(tag_rule("GOLD"))
    await rig.rename(vip, "GOLD")
    await rig.syncs_done(vip, 2)
    await rig.seg_api.wait_members(on_gold, {a, b, both, late})
    assert (await rig.members(on_svip), await rig.members(on_vip)) == (set(), {both})


async def test_a_name_sync_beside_the_processor_on_the_same_contacts(rig: Rig):
    group = await rig.group("会员", [{"name": "VIP"}, {"name": "新客"}])
    vip, new = (t["tag_id"] for t in group["tags"])
    on_vip, on_svip = await rig.segment(tag_rule("VIP")), await rig.segment(tag_rule("SVIP"))
    on_both = await rig.segment({"all": [{"tag": "SVIP"}, {"tag": "新客"}]})
    contacts = {euid() for _ in range(30)}
    for contact in contacts:
        await rig.tag(contact, vip)
    await rig.forward()
    await rig.seg_api.wait_members(on_vip, contacts)
    failed = REGISTRY.get_sample_value("scrm_tag_name_sync_chunks_total", {"outcome": "failed"}) or 0

    # The rename is synced 3 contacts a transaction while the processor applies another tag to
    # the same contacts: both lock profiles first, in key order, and wait for each other.
    await rig.rename(vip, "SVIP")
    for contact in contacts:
        await rig.tag(contact, new)
    await asyncio.gather(NameSyncRunner(rig.pool, chunk_size=3).run_until_idle(), rig.forward())
    await rig.syncs_done(vip, 1)
    await rig.seg_api.wait_members(on_both, contacts)
    assert (await rig.members(on_svip), await rig.members(on_vip)) == (contacts, set())
    assert (
        REGISTRY.get_sample_value("scrm_tag_name_sync_chunks_total", {"outcome": "failed"}) or 0
    ) == failed


async def test_a_deleted_tag_stops_counting_for_segments(rig: Rig, seg_published):
    vip = (await rig.group("会员", [{"name": "VIP"}]))["tags"][0]["tag_id"]
    on_vip = await rig.segment(tag_rule("VIP"))
    without = await rig.segment({"not": {"tag": "VIP"}})
    a, b = euid(), euid()
    for contact in (a, b):
        await rig.tag(contact, vip)
    await rig.forward()
    await rig.seg_api.wait_members(on_vip, {a, b})

    resp = await rig.client.delete(f"/v1/tags/{vip}", headers=rig.headers)
    assert resp.status_code == 202, resp.text
    [job_id] = resp.json()["job_ids"]

    async def purged() -> bool:
        job = (await rig.client.get(f"/v1/tag-jobs/{job_id}", headers=rig.headers)).json()
        return job["status"] == "done"

    await wait_for(purged, timeout=30)
    # The purge job published a removal for every carrier: the processor applies them like any.
    removals = [
        e["data"]
        for e in await rig.published("contact-tagged", rig.tenant)
        if e["data"]["change"] == "removed"
    ]
    assert sorted((d["external_userid"], d["tag_name"]) for d in removals) == sorted([(a, "VIP"), (b, "VIP")])
    assert await rig.forward() == 2
    await rig.seg_api.wait_members(on_vip, set())
    await rig.seg_api.wait_members(without, {a, b})
    assert {(on_vip, a, "exited"), (on_vip, b, "exited")} <= transitions(await seg_published(), "event")
    # A deletion is no rename: nothing to sync.
    assert await name_syncs.get_syncs(rig.pool, rig.tenant, uuid.UUID(vip)) == []


# --- WeCom: the recording stand-in -------------------------------------------------------------


async def pending(
    pool: asyncpg.Pool, tenant: str
) -> list[tuple[str, str | None, str | None, list[str], list[str]]]:
    """The tenant's catalogue pushes waiting, in order."""
    rows = await pool.fetch(
        "SELECT kind, wecom_id, wecom_name, del_tag_ids, del_group_ids FROM wecom_pushes"
        " WHERE tenant_id = $1 AND status = 'pending' AND kind <> 'mark_tag' ORDER BY id",
        tenant,
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_renames_and_deletions_of_linked_tags_are_pushed_to_wecom_with_retries(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool
):
    admin = auth(tenant, "admin")
    wecom = RecordingAdapter()
    group = wecom.library(tenant).add_group("会员", ["VIP", "普通"])
    vip_id, plain_id = (t.id for t in group.tags)
    body = {
        "name": "会员",
        "wecom_group_id": group.group_id,
        "tags": [
            {"name": "VIP", "wecom_tag_id": vip_id},
            {"name": "普通", "wecom_tag_id": plain_id},
            {"name": "本地"},
        ],
    }
    resp = await client.post("/v1/tag-groups", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    local = resp.json()
    tags = {t["name"]: t["tag_id"] for t in local["tags"]}
    pusher = Pusher(pool, wecom, retry_base=timedelta(0))

    # A linked tag's rename is queued; a local-only tag's, or a change of order only, is not.
    for tag_id, patch in (
        (tags["VIP"], {"name": "SVIP"}),
        (tags["本地"], {"name": "本地2"}),
        (tags["普通"], {"order": 9}),
    ):
        resp = await client.patch(f"/v1/tags/{tag_id}", json=patch, headers=admin)
        assert resp.status_code == 200, resp.text
    resp = await client.delete(f"/v1/tags/{tags['VIP']}", headers=admin)
    assert resp.status_code == 204, resp.text
    assert await pending(pool, tenant) == [
        ("edit_corp_tag", vip_id, "SVIP", [], []),
        ("del_corp_tag", None, None, [vip_id], []),
    ]

    # WeCom is busy: the rename waits and is retried, and the deletion waits behind it (a tenant's
    # catalogue pushes go one at a time, in order).
    wecom.fail_next(45009)
    report = await pusher.run_once()
    assert dict(report.outcomes) == {"retry": 1}
    row = await pool.fetchrow(
        "SELECT status, attempts, last_error FROM wecom_pushes WHERE tenant_id = $1 AND kind = 'edit_corp_tag'",
        tenant,
    )
    assert tuple(row) == ("pending", 1, "errcode 45009")
    assert wecom.corp_calls == []
    assert [dict((await pusher.run_once()).outcomes) for _ in range(3)] == [{"pushed": 1}, {"pushed": 1}, {}]
    assert wecom.corp_calls == [
        EditCorpTagCall(tenant, vip_id, "SVIP", None),
        DelCorpTagCall(tenant, (vip_id,), ()),
    ]
    assert [(g.name, [t.name for t in g.tags]) for g in wecom.library(tenant).groups()] == [
        ("会员", ["普通"])
    ]

    # The linked group's rename, then its deletion (its WeCom tags go with the WeCom group).
    resp = await client.patch(f"/v1/tag-groups/{local['group_id']}", json={"name": "等级"}, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.delete(f"/v1/tag-groups/{local['group_id']}", headers=admin)
    assert resp.status_code == 204, resp.text
    assert [dict((await pusher.run_once()).outcomes) for _ in range(2)] == [{"pushed": 1}, {"pushed": 1}]
    assert wecom.corp_calls[2:] == [
        EditCorpTagCall(tenant, group.group_id, "等级", None),
        DelCorpTagCall(tenant, (), (group.group_id,)),
    ]
    assert wecom.library(tenant).groups() == []
    assert await pending(pool, tenant) == []

    # An unlinked group's linked tags are deleted one by one; a push WeCom refuses for good (301002:
    # a corp tag another app created) is kept as failed.
    other = wecom.library(tenant).add_group("来源", ["门店"])
    body = {
        "name": "来源",
        "tags": [{"name": "门店", "wecom_tag_id": other.tags[0].id}, {"name": "X", "wecom_tag_id": "etGONE"}],
    }
    resp = await client.post("/v1/tag-groups", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    resp = await client.delete(f"/v1/tag-groups/{resp.json()['group_id']}", headers=admin)
    assert resp.status_code == 204, resp.text
    assert await pending(pool, tenant) == [("del_corp_tag", None, None, [other.tags[0].id, "etGONE"], [])]
    wecom.fail_next(301002, retryable=False)
    assert dict((await pusher.run_once()).outcomes) == {"failed": 1}
    failed = await pool.fetchrow(
        "SELECT status, attempts, last_error FROM wecom_pushes WHERE tenant_id = $1", tenant
    )
    assert tuple(failed) == ("failed", 1, "errcode 301002")
    assert dict((await pusher.run_once()).outcomes) == {}
    assert len(wecom.corp_calls) == 4


async def test_a_rename_pulled_from_wecom_is_not_pushed_back_but_reaches_the_segments(
    tag_app: FastAPI, client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool
):
    admin = auth(tenant, "admin")
    wecom = tag_app.state.wecom = RecordingAdapter()
    group = wecom.library(tenant).add_group("会员", ["VIP"])
    resp = await client.post("/v1/wecom/tags/sync", headers=admin)
    assert resp.status_code == 200, resp.text
    [tag] = (await client.get("/v1/tags", headers=admin)).json()
    resp = await client.post("/v1/contacts/wm-1/tags", json={"tag_ids": [tag["tag_id"]]}, headers=admin)
    assert resp.status_code == 200, resp.text

    wecom.library(tenant).rename_tag(group.tags[0].id, "SVIP")
    resp = await client.post("/v1/wecom/tags/sync", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["tags_renamed"] == 1
    assert await pending(pool, tenant) == []
    [sync] = await name_syncs.get_syncs(pool, tenant, uuid.UUID(tag["tag_id"]))
    assert (sync.old_name, sync.new_name, sync.total, sync.status) == ("VIP", "SVIP", 1, "queued")


async def test_a_pull_before_the_pushes_went_out_keeps_the_edits_made_here(
    tag_app: FastAPI, client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool
):
    admin = auth(tenant, "admin")
    wecom = tag_app.state.wecom = RecordingAdapter()
    wecom.library(tenant).add_group("会员", ["VIP", "普通"])

    async def sync() -> dict[str, Any]:
        resp = await client.post("/v1/wecom/tags/sync", headers=admin)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def names() -> list[str]:
        return [t["name"] for t in (await client.get("/v1/tags", headers=admin)).json()]

    assert (await sync())["tags_created"] == 2
    tags = {t["name"]: t["tag_id"] for t in (await client.get("/v1/tags", headers=admin)).json()}
    resp = await client.patch(f"/v1/tags/{tags['VIP']}", json={"name": "SVIP"}, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.delete(f"/v1/tags/{tags['普通']}", headers=admin)
    assert resp.status_code == 204, resp.text

    # WeCom still has the old names: the pull neither renames SVIP back nor brings 普通 back.
    changed = {k: v for k, v in (await sync()).items() if isinstance(v, int) and v}
    assert changed == {}
    assert await names() == ["SVIP"]
    assert len(await pending(pool, tenant)) == 2
    pusher = Pusher(pool, wecom)
    assert [dict((await pusher.run_once()).outcomes) for _ in range(2)] == [{"pushed": 1}, {"pushed": 1}]
    assert {k: v for k, v in (await sync()).items() if isinstance(v, int) and v} == {}
    assert await names() == ["SVIP"]


# --- WeCom: the HTTP adapter against a stand-in on a real socket -------------------------------


async def test_the_http_adapter_pushes_renames_and_deletions_through_wecoms_api(
    client: httpx.AsyncClient,
    auth,
    tenant: str,
    pool: asyncpg.Pool,
    tag_settings: TagSettings,
    wecom_server: WeComServer,
):
    admin = auth(tenant, "admin")
    resp = await client.put(
        "/v1/wecom/credentials", json={"corp_id": "ww-acme", "secret": SECRET}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    group = wecom_server.library.add_group("会员", ["VIP", "普通"])
    vip_id, plain_id = (t.id for t in group.tags)
    body = {
        "name": "会员",
        "wecom_group_id": group.group_id,
        "tags": [{"name": "VIP", "wecom_tag_id": vip_id}, {"name": "普通", "wecom_tag_id": plain_id}],
    }
    tags = {
        t["name"]: t["tag_id"]
        for t in (await client.post("/v1/tag-groups", json=body, headers=admin)).json()["tags"]
    }
    resp = await client.patch(f"/v1/tags/{tags['VIP']}", json={"name": "SVIP"}, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.delete(f"/v1/tags/{tags['普通']}", headers=admin)
    assert resp.status_code == 204, resp.text

    settings = tag_settings.model_copy(update={"tag_wecom_api_base": wecom_server.base_url})
    wecom_server.errcodes["edit_corp_tag"] = [-1]  # system busy: retried
    async with open_http_adapter(settings, pool) as adapter:
        pusher = Pusher(pool, adapter, retry_base=timedelta(0))
        outcomes = [dict((await pusher.run_once()).outcomes) for _ in range(3)]
    assert outcomes == [{"retry": 1}, {"pushed": 1}, {"pushed": 1}]
    calls = [(name, body) for name, _, body in wecom_server.requests if name != "gettoken"]
    assert calls == [
        ("edit_corp_tag", {"id": vip_id, "name": "SVIP"}),
        ("edit_corp_tag", {"id": vip_id, "name": "SVIP"}),
        ("del_corp_tag", {"tag_id": [plain_id]}),
    ]
    # The token travels in the query string only, and one token served every call.
    assert all(q == {"access_token": "tok-1"} for name, q, _ in wecom_server.requests if name != "gettoken")
    assert [(g.name, [(t.id, t.name) for t in g.tags]) for g in wecom_server.library.groups()] == [
        ("会员", [(vip_id, "SVIP")])
    ]
    assert await pending(pool, tenant) == []
