"""The real worker on the real topics: WeCom-side tag edits (contact-updated) applied by "wecom"
with no push back, operators' changes pushed through the mark_tag stand-in by the worker's
pusher, a bulk job run by its job runner, and erasure (contact-erased) dropping the tags.

"Consumed" is known from the ingest tally, which the worker updates in the same transaction as
the tags, so nothing waits on time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from scrm_shared.events import ContactErasedEvent, ContactUpdatedEvent, FriendAddedEvent, new_event
from scrm_shared.testing.plugin import wait_for
from tag_svc.tags.store import wecom as push_store
from tag_svc.tags.wecom import MarkTagCall, RecordingAdapter

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def added(tenant: str, euid: str, staff: str, when: datetime) -> FriendAddedEvent:
    return new_event(
        FriendAddedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={"external_userid": euid, "staff_id": staff, "added_at": when},
    )


def wecom_tags(tenant: str, euid: str, staff: str, tag_ids: list[str], when: datetime) -> ContactUpdatedEvent:
    return new_event(
        ContactUpdatedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={
            "external_userid": euid,
            "staff_id": staff,
            "changed": ["tags"],
            "tag_ids": tag_ids,
            "updated_at": when,
        },
    )


def erased(tenant: str, euid: str, when: datetime) -> ContactErasedEvent:
    return new_event(
        ContactErasedEvent,
        tenant_id=tenant,
        source="contact-svc",
        data={"external_userid": euid, "contact_id": "c-1", "erased_at": when},
    )


async def consumed(client: httpx.AsyncClient, headers: dict[str, str], expected: dict[str, int]) -> None:
    """Wait until the worker applied ``expected`` distinct events per type for this tenant."""

    async def done() -> bool:
        body = (await client.get("/v1/ingest/stats", headers=headers)).json()
        counts = {t["event_type"]: t["consumed"] for t in body["topics"]}
        assert all(counts.get(k, 0) <= v for k, v in expected.items()), counts
        return all(counts.get(k, 0) == v for k, v in expected.items())

    await wait_for(done, timeout=30, interval=0.05)


async def tag_names(client: httpx.AsyncClient, headers: dict[str, str], euid: str) -> list[tuple[str, str]]:
    body = (await client.get(f"/v1/contacts/{euid}/tags", headers=headers)).json()
    return [(t["name"], t["by"]) for t in body["tags"]]


async def test_wecom_edits_pushes_jobs_and_erasure_through_the_worker(
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    tenant: str,
    tag_worker: None,
    wecom: RecordingAdapter,
    send,
    published,
    pool: asyncpg.Pool,
):
    admin = auth(tenant, "admin")
    body = {
        "name": "企微标签",
        "tags": [
            {"name": "A", "wecom_tag_id": "etA"},
            {"name": "B", "wecom_tag_id": "etB"},
            {"name": "C", "wecom_tag_id": "etC"},
            {"name": "本地"},
        ],
    }
    tags = {
        t["name"]: t["tag_id"]
        for t in (await client.post("/v1/tag-groups", json=body, headers=admin)).json()["tags"]
    }

    # Two guides follow wm-1. Guide s1 sets A, B and a WeCom tag we do not mirror (etX).
    await send(
        added(tenant, "wm-1", "s1", at(0)),
        added(tenant, "wm-1", "s2", at(1)),
        wecom_tags(tenant, "wm-1", "s1", ["etA", "etB", "etX"], at(2)),
        # s2 sets A too: the contact has it already, nothing changes.
        wecom_tags(tenant, "wm-1", "s2", ["etA"], at(3)),
        # s1 clears A and B: B goes, A stays (s2's relation still carries it).
        wecom_tags(tenant, "wm-1", "s1", ["etX"], at(4)),
        # An older snapshot of s1 arriving late changes nothing.
        wecom_tags(tenant, "wm-1", "s1", ["etA", "etB"], at(1)),
    )
    await consumed(client, admin, {"friend-added": 2, "contact-updated": 4})
    assert await tag_names(client, admin, "wm-1") == [("A", "wecom")]
    events = await published("contact-tagged", tenant)
    # One contact's events are in order (A and B were added by one edit, in either order).
    seen = [
        (e["data"]["tag_name"], e["data"]["change"], e["data"]["by"], e["data"]["actor_id"]) for e in events
    ]
    assert sorted(seen[:2]) == [("A", "added", "wecom", "s1"), ("B", "added", "wecom", "s1")]
    assert seen[2:] == [("B", "removed", "wecom", "s1")]
    assert datetime.fromisoformat(events[0]["data"]["tagged_at"]) == at(2)
    # WeCom's own changes are never pushed back.
    assert await push_store.count_pushes(pool, tenant) == {}

    # An operator's change on a synced tag is pushed by the worker, as the latest follower (s2).
    operator = auth(tenant, "operator")
    resp = await client.post(
        "/v1/contacts/wm-1/tags", json={"tag_ids": [tags["C"], tags["本地"]]}, headers=operator
    )
    assert sorted(resp.json()["added"]) == sorted([tags["C"], tags["本地"]])
    expected = MarkTagCall(tenant, "s2", "wm-1", ("etC",), ())

    async def pushed() -> bool:
        return expected in wecom.calls and await push_store.count_pushes(pool, tenant) == {}

    await wait_for(pushed, timeout=15)
    assert [c for c in wecom.calls if c.tenant_id == tenant] == [expected]

    # WeCom then reports s2's relation as it now is (A and C): no edit, no event, no push.
    before = len(await published("contact-tagged", tenant))
    await send(wecom_tags(tenant, "wm-1", "s2", ["etA", "etC"], at(5)))
    await consumed(client, admin, {"contact-updated": 5})
    assert len(await published("contact-tagged", tenant)) == before
    assert await tag_names(client, admin, "wm-1") == [("A", "wecom"), ("C", "operator"), ("本地", "operator")]

    # A bulk job is run by the worker's job runner.
    resp = await client.post(
        "/v1/tag-jobs",
        json={"tag_id": tags["本地"], "action": "add", "external_userids": ["wm-1", "wm-2", "wm-3"]},
        headers=operator,
    )
    job_id = resp.json()["job_id"]

    async def job_done() -> bool:
        job = (await client.get(f"/v1/tag-jobs/{job_id}", headers=operator)).json()
        return job["status"] == "done"

    await wait_for(job_done, timeout=15)
    job = (await client.get(f"/v1/tag-jobs/{job_id}", headers=operator)).json()
    assert (job["processed"], job["changed"]) == (3, 2)

    # Erasure: the contact's tags go, nothing tags it again, later WeCom edits are ignored.
    await send(erased(tenant, "wm-1", at(6)), wecom_tags(tenant, "wm-1", "s2", ["etA", "etB"], at(7)))
    await consumed(client, admin, {"contact-erased": 1, "contact-updated": 6})
    assert await tag_names(client, admin, "wm-1") == []
    resp = await client.post("/v1/contacts/wm-1/tags", json={"tag_ids": [tags["A"]]}, headers=operator)
    assert resp.status_code == 410
    assert await tag_names(client, admin, "wm-2") == [("本地", "operator")]
    # The counts elsewhere stay: the job still says what it did.
    assert (await client.get(f"/v1/tag-jobs/{job_id}", headers=operator)).json()["changed"] == 2
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM follows WHERE tenant_id = $1 AND external_userid = 'wm-1'", tenant
        )
        == 0
    )
