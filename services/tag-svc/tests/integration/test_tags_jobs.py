"""Bulk tag jobs: progress, the right number of events, resuming after an interrupted run, a
crashed chunk rolling back, and deleted tags untagging their contacts.

The runner is driven here chunk by chunk (the worker runs the same :class:`JobRunner` as a
background task, see test_tags_worker.py).

Measured on this 2-core machine (shared; PostgreSQL on 127.0.0.1; chunks of 1,000; a tag synced
with WeCom, so every change also queues a push): a 100,000-contact ``add`` job is accepted in
0.3 s and applied in 13.5 s (100 chunks, ≈7.4k contacts/s: 100k rows, 100k outbox events, 100k
queued pushes), while the app's outbox relay in the same event loop publishes the events; all
100,000 ``contact-tagged`` events are on the broker 14.5 s after the POST.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from tag_svc.tags.jobs import JobRunner
from tag_svc.tags.name_syncs import NameSyncRunner
from tag_svc.tags.store import Conn, name_syncs
from tag_svc.tags.store import jobs as job_store
from tag_svc.tags.store import wecom as push_store

pytestmark = pytest.mark.integration


async def make_tag(client: httpx.AsyncClient, headers: dict[str, str], name: str = "双11", **extra) -> str:
    body = {"name": f"活动-{uuid.uuid4().hex[:6]}", "tags": [{"name": name, **extra}]}
    resp = await client.post("/v1/tag-groups", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()["tags"][0]["tag_id"]


async def job(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict:
    resp = await client.get(f"/v1/tag-jobs/{job_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_bulk_job_runs_in_chunks_and_resumes_after_a_restart(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, published
):
    operator = auth(tenant, "operator")
    tag_id = await make_tag(client, operator, wecom_tag_id="et1111")
    contacts = [f"wm-{i:05d}" for i in range(5000)]
    # Ten already carry the tag: the job changes (and announces) only the other 4,990.
    await client.post("/v1/contacts/wm-00000/tags", json={"tag_ids": [tag_id]}, headers=operator)
    for euid in contacts[1:10]:
        await client.post(f"/v1/contacts/{euid}/tags", json={"tag_ids": [tag_id]}, headers=operator)

    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "add", "external_userids": contacts + contacts[:3]},
        headers=operator,
    )
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert resp.headers["location"] == f"/v1/tag-jobs/{queued['job_id']}"
    assert (queued["status"], queued["total"], queued["processed"], queued["changed"]) == (
        "queued",
        5000,
        0,
        0,
    )

    # One chunk, then the runner "crashes" (is dropped); a new one picks the job up where it was.
    assert await JobRunner(pool, chunk_size=1000).run_chunk()
    mid = await job(client, operator, queued["job_id"])
    assert (mid["status"], mid["processed"], mid["changed"]) == ("running", 1000, 990)
    assert mid["started_at"] is not None and mid["finished_at"] is None

    assert await JobRunner(pool, chunk_size=1000).run_until_idle() == 4
    done = await job(client, operator, queued["job_id"])
    assert (done["status"], done["processed"], done["changed"], done["error"]) == ("done", 5000, 4990, None)
    assert done["finished_at"] is not None
    assert not await JobRunner(pool).run_chunk()

    events = await published("contact-tagged", tenant)
    assert len(events) == 5000
    assert len({e["data"]["external_userid"] for e in events}) == 5000
    assert {(e["data"]["change"], e["data"]["by"], e["data"]["actor_id"]) for e in events} == {
        ("added", "operator", "operator-user")
    }
    # Synced with WeCom: one push per changed contact, queued with the change.
    assert await push_store.count_pushes(pool, tenant) == {"pending": 5000}

    # Untag 3,000 of them (and 5 that never had it).
    removal = contacts[:3000] + [f"wm-x{i}" for i in range(5)]
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "remove", "external_userids": removal},
        headers=operator,
    )
    assert resp.status_code == 202
    await JobRunner(pool, chunk_size=1000).run_until_idle()
    done = await job(client, operator, resp.json()["job_id"])
    assert (done["status"], done["processed"], done["changed"]) == ("done", 3005, 3000)
    events = await published("contact-tagged", tenant)
    assert sum(e["data"]["change"] == "removed" for e in events) == 3000
    assert (await client.get("/v1/contacts/wm-02999/tags", headers=operator)).json()["tags"] == []
    assert len((await client.get("/v1/contacts/wm-03000/tags", headers=operator)).json()["tags"]) == 1


class CrashingRunner(JobRunner):
    """Dies after applying a chunk, before its transaction commits."""

    async def _chunk(self, conn: Conn, job: job_store.JobRow) -> str:
        await super()._chunk(conn, job)
        raise RuntimeError("power cut")


async def test_a_crashed_chunk_leaves_no_trace(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, published
):
    operator = auth(tenant, "operator")
    tag_id = await make_tag(client, operator)
    contacts = [f"wm-{i}" for i in range(25)]
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "add", "external_userids": contacts},
        headers=operator,
    )
    job_id = resp.json()["job_id"]

    assert await CrashingRunner(pool, chunk_size=10, retry_wait=timedelta(0)).run_chunk()
    after = await job(client, operator, job_id)
    assert (after["status"], after["processed"], after["changed"], after["error"]) == (
        "queued",
        0,
        0,
        "RuntimeError",
    )
    assert (await client.get("/v1/contacts/wm-0/tags", headers=operator)).json()["tags"] == []
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0

    await JobRunner(pool, chunk_size=10).run_until_idle()
    done = await job(client, operator, job_id)
    assert (done["status"], done["processed"], done["changed"], done["error"]) == ("done", 25, 25, None)
    assert len(await published("contact-tagged", tenant)) == 25

    # A job that keeps failing gives up after max_attempts.
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "remove", "external_userids": contacts},
        headers=operator,
    )
    crashing = CrashingRunner(pool, chunk_size=10, retry_wait=timedelta(0), max_attempts=3)
    assert await crashing.run_until_idle() == 3
    failed = await job(client, operator, resp.json()["job_id"])
    assert (failed["status"], failed["processed"], failed["error"]) == ("failed", 0, "RuntimeError")
    assert failed["finished_at"] is not None
    assert not await crashing.run_chunk()


async def test_deleting_a_tag_untags_its_contacts(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, published
):
    operator = auth(tenant, "operator")
    tag_id = await make_tag(client, operator, wecom_tag_id="et2222")
    for euid in ("wm-1", "wm-2", "wm-3"):
        await client.post(f"/v1/contacts/{euid}/tags", json={"tag_ids": [tag_id]}, headers=operator)
    add_job = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "add", "external_userids": ["wm-4"]},
        headers=operator,
    )
    pushes_before = await push_store.count_pushes(pool, tenant)

    resp = await client.delete(f"/v1/tags/{tag_id}", headers=operator)
    assert resp.status_code == 202, resp.text
    (purge_id,) = resp.json()["job_ids"]
    # Gone for readers at once, though the contacts are untagged by the job.
    assert (await client.get(f"/v1/tags/{tag_id}", headers=operator)).status_code == 404
    assert (await client.get("/v1/contacts/wm-1/tags", headers=operator)).json()["tags"] == []
    resp = await client.post("/v1/contacts/wm-1/tags", json={"tag_ids": [tag_id]}, headers=operator)
    assert resp.status_code == 404
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "add", "external_userids": ["wm-1"]},
        headers=operator,
    )
    assert resp.status_code == 404

    await JobRunner(pool).run_until_idle()
    purge = await job(client, operator, purge_id)
    assert (purge["status"], purge["total"], purge["changed"]) == ("done", 3, 3)
    # The add job queued before the deletion does not resurrect the tag.
    added = await job(client, operator, add_job.json()["job_id"])
    assert (added["status"], added["error"]) == ("failed", "tag-deleted")
    events = await published("contact-tagged", tenant)
    assert sorted((e["data"]["external_userid"], e["data"]["change"]) for e in events) == [
        ("wm-1", "added"),
        ("wm-1", "removed"),
        ("wm-2", "added"),
        ("wm-2", "removed"),
        ("wm-3", "added"),
        ("wm-3", "removed"),
    ]
    # The purge pushes no mark_tag removal per contact; the deletion itself reaches WeCom as one
    # del_corp_tag. The tag row is gone for good.
    assert await push_store.count_pushes(pool, tenant) == {"pending": pushes_before["pending"] + 1}
    catalog_pushes = await pool.fetch(
        "SELECT kind, del_tag_ids FROM wecom_pushes WHERE tenant_id = $1 AND kind <> 'mark_tag'", tenant
    )
    assert [tuple(r) for r in catalog_pushes] == [("del_corp_tag", ["et2222"])]
    assert await pool.fetchval("SELECT count(*) FROM tags WHERE tenant_id = $1", tenant) == 0

    # Deleting a group deletes its tags the same way.
    body = {"name": "组", "tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    group = (await client.post("/v1/tag-groups", json=body, headers=operator)).json()
    a, b, _ = (t["tag_id"] for t in group["tags"])
    await client.post("/v1/contacts/wm-9/tags", json={"tag_ids": [a, b]}, headers=operator)
    resp = await client.delete(f"/v1/tag-groups/{group['group_id']}", headers=operator)
    assert resp.status_code == 202 and len(resp.json()["job_ids"]) == 2
    assert (await client.get(f"/v1/tag-groups/{group['group_id']}", headers=operator)).status_code == 404
    await JobRunner(pool).run_until_idle()
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM tag_groups WHERE group_id = $1", uuid.UUID(group["group_id"])
        )
        == 0
    )


async def test_job_requests_are_validated(client: httpx.AsyncClient, auth, tenant: str):
    operator = auth(tenant, "operator")
    tag_id = await make_tag(client, operator)
    for ids in ([], [f"wm-{i}" for i in range(100_001)], [" "]):
        resp = await client.post(
            "/v1/tag-jobs",
            json={"tag_id": tag_id, "action": "add", "external_userids": ids},
            headers=operator,
        )
        assert resp.status_code == 422
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "toggle", "external_userids": ["wm-1"]},
        headers=operator,
    )
    assert resp.status_code == 422
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": str(uuid.uuid4()), "action": "add", "external_userids": ["wm-1"]},
        headers=operator,
    )
    assert resp.status_code == 404
    assert (await client.get(f"/v1/tag-jobs/{uuid.uuid4()}", headers=operator)).status_code == 404
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tag_id, "action": "add", "external_userids": ["wm-1"]},
        headers=operator,
    )
    job_id = resp.json()["job_id"]
    assert (
        await client.get(f"/v1/tag-jobs/{job_id}", headers=auth(f"o{tenant}", "admin"))
    ).status_code == 404
    assert (
        await client.get(f"/v1/tag-jobs/{job_id}", headers=auth(tenant, "guide", "g1"))
    ).status_code == 403


class FailingNameSync(NameSyncRunner):
    """Every chunk of the syncs of one tag fails after its work, before its transaction commits."""

    def __init__(self, pool: asyncpg.Pool, tag_id: str, **options) -> None:
        super().__init__(pool, **options)
        self.tag_id = uuid.UUID(tag_id)

    async def _apply(self, conn: Conn, sync: name_syncs.NameSyncRow, euids: list[str]) -> None:
        await super()._apply(conn, sync, euids)
        if sync.tag_id == self.tag_id:
            raise RuntimeError("database went away")


async def test_a_name_sync_that_keeps_failing_is_given_up_and_the_others_go_on(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool
):
    operator = auth(tenant, "operator")
    doomed, other = await make_tag(client, operator, "VIP"), await make_tag(client, operator, "新客")
    for euid in ("wm-1", "wm-2"):
        await client.post(f"/v1/contacts/{euid}/tags", json={"tag_ids": [doomed, other]}, headers=operator)
    for tag_id, name in ((doomed, "SVIP"), (other, "老客")):
        resp = await client.patch(f"/v1/tags/{tag_id}", json={"name": name}, headers=operator)
        assert resp.status_code == 200, resp.text
    given_up = REGISTRY.get_sample_value("scrm_tag_name_sync_chunks_total", {"outcome": "sync-failed"}) or 0

    # Attempts count per sync, and a failing sync waits retry_wait while the other goes on; after
    # max_attempts failures in a row it is marked failed for good.
    runner = FailingNameSync(pool, doomed, chunk_size=1, retry_wait=timedelta(0), max_attempts=3)
    assert await runner.run_until_idle() == 3 + 2
    # What an operator sees of each rename.
    resp = await client.get(f"/v1/tags/{doomed}/name-syncs", headers=operator)
    assert resp.status_code == 200, resp.text
    (failed,) = resp.json()
    assert {k: failed[k] for k in ("old_name", "new_name", "status", "total", "processed", "error")} == {
        "old_name": "VIP",
        "new_name": "SVIP",
        "status": "failed",
        "total": 2,
        "processed": 0,
        "error": "RuntimeError",
    }
    assert (failed["attempts"], failed["finished_at"] is not None) == (3, True)
    (done,) = (await client.get(f"/v1/tags/{other}/name-syncs", headers=operator)).json()
    assert (done["status"], done["processed"], done["attempts"], done["error"]) == ("done", 2, 0, None)
    assert (
        REGISTRY.get_sample_value("scrm_tag_name_sync_chunks_total", {"outcome": "sync-failed"}) or 0
    ) == given_up + 1
    # Given up: no runner claims it again; the rename itself stands.
    assert not await NameSyncRunner(pool).run_chunk()
    resp = await client.get(f"/v1/tags/{doomed}", headers=operator)
    assert resp.json()["name"] == "SVIP"


async def test_name_syncs_of_a_tag_nobody_carries_and_of_an_unknown_tag(
    client: httpx.AsyncClient, auth, tenant: str
):
    operator = auth(tenant, "operator")
    tag_id = await make_tag(client, operator, "VIP")
    resp = await client.patch(f"/v1/tags/{tag_id}", json={"name": "SVIP"}, headers=operator)
    assert resp.status_code == 200, resp.text
    resp = await client.get(f"/v1/tags/{tag_id}/name-syncs", headers=auth(tenant, "guide", "g1"))
    assert (resp.status_code, resp.json()) == (200, [])
    resp = await client.get(f"/v1/tags/{uuid.uuid4()}/name-syncs", headers=operator)
    assert (resp.status_code, resp.json()["type"]) == (404, "urn:scrm:problem:tag-not-found")
    # Another tenant's tag is unknown here.
    resp = await client.get(f"/v1/tags/{tag_id}/name-syncs", headers=auth(f"{tenant}-other", "operator"))
    assert resp.status_code == 404
