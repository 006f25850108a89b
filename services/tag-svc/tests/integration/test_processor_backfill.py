"""Backfill: a new segment is computed over the contacts already known, in chunks with visible
progress, then goes live; an edited rule is recomputed the same way (cause rule-edited)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from scrm_shared.testing.plugin import wait_for
from tag_svc.processor.store import catalog

pytestmark = pytest.mark.integration

TWICE = {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]}
ONCE = {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 30}]}


async def test_new_and_edited_segments_are_backfilled_over_existing_profiles(
    seg_worker, seg_api, seg_client, seg_headers, seg_events, seg_send, seg_published, seg_pool
):
    a, b, c, d, e = sorted(f"wm{uuid.uuid4().hex[:12]}" for _ in range(5))
    await seg_send(
        *(seg_events.order(external_userid=x) for x in (a, a, b, c, c, d)),
        seg_events.added(e),
    )

    async def profiles() -> bool:
        return await seg_pool.fetchval("SELECT count(*) FROM profiles") == 5

    await wait_for(profiles)
    backfilled, finished = _backfill_counts()
    preview = await seg_client.post("/v1/segments/preview", json={"rule": TWICE}, headers=seg_headers)
    assert preview.json() == {"count": 2, "sample": [a, c]}

    segment = await seg_api.create(TWICE)
    created = await seg_api.get(segment)
    assert created["backfill"]["total"] == 5  # chunks of 2 profiles: 3 chunks
    live = await seg_api.wait_live(segment)
    assert (live["size"], live["backfill"]) == (2, None)
    assert _backfill_counts() == (backfilled + 5, finished + 1)  # what a dashboard shows
    assert set(await seg_api.members(segment)) == {a, c}
    assert {(x["external_userid"], x["cause"]) for x in await seg_published()} == {
        (a, "backfill"),
        (c, "backfill"),
    }

    edited = await seg_client.put(
        f"/v1/segments/{segment}", json={"name": "buyers", "rule": ONCE}, headers=seg_headers
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["status"], edited.json()["backfill"]["cause"]) == ("backfilling", "rule-edited")
    await seg_api.wait_live(segment)
    assert set(await seg_api.members(segment)) == {a, b, c, d}
    assert _backfill_counts() == (backfilled + 10, finished + 2)
    changes = await seg_published()
    assert sorted(x["external_userid"] for x in changes if x["cause"] == "rule-edited") == [b, d]
    history = await seg_client.get(f"/v1/segments/{segment}/history", params={"days": 2}, headers=seg_headers)
    assert history.json()["items"][-1] == {"day": "2024-05-01", "size": 4, "entered": 4, "exited": 0}


def _backfill_counts() -> tuple[float, float]:
    """Contacts backfilled and backfills finished, as the worker's metrics count them."""
    return (
        REGISTRY.get_sample_value("scrm_segment_backfill_contacts_total") or 0.0,
        REGISTRY.get_sample_value("scrm_segment_backfills_finished_total") or 0.0,
    )


async def test_progress_commits_only_under_the_rule_it_was_computed_with(
    seg_api, seg_client, seg_headers, seg_pool, tenant
):
    segment = uuid.UUID(await seg_api.create(ONCE))
    async with seg_pool.acquire() as conn:
        assert await catalog.record_backfill_chunk(conn, tenant, segment, 1, "wm1", 1)
        edited = await seg_client.put(
            f"/v1/segments/{segment}", json={"name": "n", "rule": TWICE}, headers=seg_headers
        )
        assert edited.json()["backfill"] == {"processed": 0, "total": 0, "cause": "rule-edited"}
        # A chunk of version 1 finishing now is refused (its transaction rolls back).
        assert not await catalog.record_backfill_chunk(conn, tenant, segment, 1, "wm2", 1)
        assert not await catalog.finish_backfill(conn, tenant, segment, 1)
        assert await catalog.finish_backfill(conn, tenant, segment, 2)
