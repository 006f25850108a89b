"""The segments and RFM API: validation, auth and tenancy, CRUD, members pages, a contact's
segments, previews and RFM classes, over profiles written straight into the tables."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import pytest

from scrm_shared.events import parse_event
from tag_svc.processor import SegmentBackfiller
from tag_svc.processor.store import catalog
from tag_svc.segments import ContactRange, Fact, Profile, SqlParams, compile_sql, parse_rule
from tag_svc.segments.sql import INSERT_FACT, UPSERT_PROFILE, fact_args, profile_args

pytestmark = pytest.mark.integration

TODAY = date(2024, 5, 1)  # the fixtures' clock, in Shanghai
BUYERS = {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 30}]}


def orders(*days_ago: int, amount: str = "100") -> tuple[Fact, ...]:
    return tuple(
        Fact(
            "order-placed",
            f"o-{uuid.uuid4().hex[:8]}",
            TODAY - timedelta(days=d),
            channel="pos",
            amount=Decimal(amount),
        )
        for d in days_ago
    )


async def seed(pool: asyncpg.Pool, profiles: list[Profile]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(UPSERT_PROFILE, [profile_args(p) for p in profiles])
        await conn.executemany(INSERT_FACT, [row for p in profiles for row in fact_args(p)])


async def test_an_invalid_rule_is_refused_with_every_fault(seg_client, seg_headers):
    rule = {"all": [{"event": "order-placed", "cuont": {"gte": 2}, "within_days": 30}, {"tag": 1}]}
    for path in ("/v1/segments", "/v1/segments/preview"):
        body = {"name": "x", "rule": rule} if path == "/v1/segments" else {"rule": rule}
        resp = await seg_client.post(path, json=body, headers=seg_headers)
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["errors"] == [
            {"path": "$.all[0].cuont", "message": "unknown key 'cuont' (did you mean 'count'?)"},
            {
                "path": "$.all[0]",
                "message": "an event condition needs exactly one of: count, amount, distinct_days",
            },
            {"path": "$.all[1].tag", "message": "expected a non-empty string, got an integer"},
        ]


async def test_auth_roles_and_tenancy(seg_client, seg_api, auth, tenant):
    assert (await seg_client.get("/v1/segments")).status_code == 401
    guide = auth(tenant, "guide", staff="li.na")
    resp = await seg_client.post("/v1/segments", json={"name": "x", "rule": BUYERS}, headers=guide)
    assert resp.status_code == 403
    segment = await seg_api.create(BUYERS, name="buyers")
    other = auth(f"t{uuid.uuid4().hex[:10]}", "admin")
    for path in (
        f"/v1/segments/{segment}",
        f"/v1/segments/{segment}/members",
        f"/v1/segments/{segment}/history",
    ):
        assert (await seg_client.get(path, headers=other)).status_code == 404
    assert (await seg_client.get("/v1/segments", headers=other)).json() == {"items": []}
    assert (await seg_client.delete(f"/v1/segments/{segment}", headers=other)).status_code == 404
    assert (await seg_client.get(f"/v1/segments/{segment}", headers=guide)).status_code == 200


async def test_segments_members_and_contact_segments(
    seg_client, seg_api, seg_headers, seg_pool, seg_clock, auth, tenant
):
    contacts = [f"wm{n:02d}" for n in range(5)]
    await seed(
        seg_pool,
        [
            Profile(
                tenant,
                euid,
                staff_ids=frozenset({"li.na"} if n % 2 else set()),
                facts=orders(n) if n < 4 else (),
            )
            for n, euid in enumerate(contacts)
        ],
    )
    segment = await seg_api.create(BUYERS, name="buyers")
    assert (await seg_api.get(segment))["status"] == "backfilling"
    await SegmentBackfiller(seg_pool, clock=seg_clock).run_once()
    live = await seg_api.get(segment)
    assert (live["status"], live["size"], live["rule"]) == ("live", 4, BUYERS)

    page = (
        await seg_client.get(f"/v1/segments/{segment}/members", params={"limit": 3}, headers=seg_headers)
    ).json()
    assert [m["external_userid"] for m in page["items"]] == contacts[:3]
    rest = await seg_client.get(
        f"/v1/segments/{segment}/members", params={"cursor": page["next_cursor"]}, headers=seg_headers
    )
    assert ([m["external_userid"] for m in rest.json()["items"]], rest.json()["next_cursor"]) == (
        [contacts[3]],
        None,
    )
    guide = auth(tenant, "guide", staff="li.na")
    mine = (await seg_client.get(f"/v1/segments/{segment}/members", headers=guide)).json()["items"]
    assert [m["external_userid"] for m in mine] == [contacts[1], contacts[3]]

    theirs = await seg_client.get(f"/v1/contacts/{contacts[1]}/segments", headers=guide)
    assert [(s["segment_id"], s["name"]) for s in theirs.json()["segments"]] == [(segment, "buyers")]
    assert (await seg_client.get(f"/v1/contacts/{contacts[0]}/segments", headers=guide)).status_code == 404

    # Same rule, new name: a rename, no backfill. A taken name is a conflict.
    renamed = await seg_client.put(
        f"/v1/segments/{segment}", json={"name": "买过", "rule": BUYERS}, headers=seg_headers
    )
    assert (renamed.json()["name"], renamed.json()["status"]) == ("买过", "live")
    await seg_api.create({"all": [{"tag": "VIP"}]}, name="vip")
    clash = await seg_client.put(
        f"/v1/segments/{segment}", json={"name": "vip", "rule": BUYERS}, headers=seg_headers
    )
    assert clash.status_code == 409
    names = [s["name"] for s in (await seg_client.get("/v1/segments", headers=seg_headers)).json()["items"]]
    assert names == ["买过", "vip"]

    assert (await seg_client.delete(f"/v1/segments/{segment}", headers=seg_headers)).status_code == 204
    assert (await seg_client.get(f"/v1/segments/{segment}", headers=seg_headers)).status_code == 404
    # One segment-deleted event, in the outbox with the deletion: no exit per member.
    rows = await seg_pool.fetch("SELECT topic, key, value FROM outbox WHERE topic = 'segment-deleted'")
    assert [r["key"] for r in rows] == [f"{tenant}:{segment}".encode()]
    changes = await seg_pool.fetch("SELECT value FROM outbox WHERE topic = 'segment-changed'")
    assert all(parse_event("segment-changed", r["value"]).data.change == "entered" for r in changes)
    deleted = parse_event("segment-deleted", rows[0]["value"])
    assert (deleted.data.segment_id, deleted.data.name, deleted.data.size) == (segment, "买过", 4)
    assert deleted.data.deleted_at == seg_clock()
    assert (await seg_client.get(f"/v1/contacts/{contacts[1]}/segments", headers=seg_headers)).json()[
        "segments"
    ] == []


async def test_rfm_classes_thresholds_and_rfm_segments(
    seg_client, seg_api, seg_headers, seg_pool, seg_clock, auth, tenant
):
    # R: 1, 5, 40 days; F: 3, 1, 1 orders; M: 300, 900, 50 yuan.
    await seed(
        seg_pool,
        [
            Profile(tenant, "wm-a", facts=orders(1, 2, 3)),
            Profile(tenant, "wm-b", facts=orders(5, amount="900")),
            Profile(tenant, "wm-c", facts=orders(40, amount="50")),
            Profile(tenant, "wm-d"),
        ],
    )
    admin = auth(tenant, "admin")
    derived = (await seg_client.get("/v1/rfm/thresholds", headers=seg_headers)).json()
    assert (
        derived["recent_within_days"],
        derived["frequent_min_orders"],
        Decimal(derived["monetary_min"]),
    ) == (5, 2, 300)
    assert (derived["derived"], derived["buyers"]) == (True, 3)
    classes = (await seg_client.get("/v1/rfm/classes", headers=seg_headers)).json()
    counts = {c["rfm_class"]: c["contacts"] for c in classes["classes"] if c["contacts"]}
    assert counts == {"重要价值客户": 1, "重要发展客户": 1, "一般挽留客户": 1}
    assert len(classes["classes"]) == 8

    segment = await seg_api.create({"rfm": "重要发展客户"})
    await SegmentBackfiller(seg_pool, clock=seg_clock).run_once()
    assert await seg_api.members(segment) == ["wm-b"]

    # Explicit thresholds (admins only) re-backfill the rfm segments under them.
    body = {"recent_within_days": 30, "frequent_min_orders": 5, "monetary_min": "100", "window_days": 365}
    assert (await seg_client.put("/v1/rfm/thresholds", json=body, headers=seg_headers)).status_code == 403
    assert (await seg_client.put("/v1/rfm/thresholds", json=body, headers=admin)).json()["derived"] is False
    assert (await seg_api.get(segment))["backfill"]["cause"] == "rule-edited"
    await SegmentBackfiller(seg_pool, clock=seg_clock).run_once()
    assert await seg_api.members(segment) == ["wm-a", "wm-b"]
    recomputed = (await seg_client.post("/v1/rfm/thresholds/recompute", headers=admin)).json()
    assert (recomputed["recent_within_days"], recomputed["derived"]) == (5, True)


async def test_the_tenants_timezone_sets_today_for_every_window(seg_client, auth, tenant):
    admin, operator = auth(tenant, "admin"), auth(tenant, "operator")
    resp = await seg_client.get("/v1/segment-settings", headers=operator)
    assert resp.status_code == 200
    # The fixtures' clock: 10:00 UTC on 1 May, 18:00 in Shanghai (the default).
    assert resp.json() == {"timezone": "Asia/Shanghai", "today": "2024-05-01"}

    assert (
        await seg_client.put("/v1/segment-settings", json={"timezone": "UTC"}, headers=operator)
    ).status_code == 403
    bad = await seg_client.put("/v1/segment-settings", json={"timezone": "Mars/Olympus"}, headers=admin)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "Mars/Olympus" in bad.text

    # UTC+14: already 00:00 on 2 May there.
    resp = await seg_client.put(
        "/v1/segment-settings", json={"timezone": "Pacific/Kiritimati"}, headers=admin
    )
    assert resp.json() == {"timezone": "Pacific/Kiritimati", "today": "2024-05-02"}
    assert (await seg_client.get("/v1/segment-settings", headers=operator)).json()["today"] == "2024-05-02"
    # Another tenant keeps the default.
    other = await seg_client.get("/v1/segment-settings", headers=auth(f"{tenant}-other", "admin"))
    assert other.json()["timezone"] == "Asia/Shanghai"


async def test_a_preview_counts_contact_ranges_side_by_side(seg_pool, tenant):
    """A large tenant's preview is counted as contact ranges on their own connections, in one
    snapshot: the count is the sum, the sample the first matches in key order across ranges."""
    contacts = [f"wm{n:02d}" for n in range(30)]
    await seed(
        seg_pool,
        [Profile(tenant, euid, facts=orders(1) if n % 3 else ()) for n, euid in enumerate(contacts)],
    )
    rule = parse_rule(BUYERS)
    buyers = [euid for n, euid in enumerate(contacts) if n % 3]

    async def preview(ranges: list[ContactRange], sample: int) -> tuple[int, list[str]]:
        predicates = [compile_sql(rule, SqlParams(today=TODAY, contacts=r), first_arg=2) for r in ranges]
        return await catalog.preview(seg_pool, tenant, predicates, sample)

    whole = [ContactRange(None, None)]
    split = [ContactRange(None, "wm05"), ContactRange("wm05", "wm12"), ContactRange("wm12", None)]
    assert await preview(whole, 5) == (20, buyers[:5])
    # The first range holds 3 buyers: the sample goes on into the next.
    assert await preview(split, 5) == (20, buyers[:5])
    assert await preview(split, 50) == (20, buyers)

    # However the sample of pages falls, the ranges cover every key, in order, without overlap.
    assert await catalog.contact_ranges(seg_pool, tenant, 1, min_contacts=0) == whole
    assert await catalog.contact_ranges(seg_pool, tenant, 4, min_contacts=10**9) == whole
    ranges = await catalog.contact_ranges(seg_pool, tenant, 4, min_contacts=0)
    assert 1 <= len(ranges) <= 4
    assert ranges[0].first is None and ranges[-1].end is None
    assert all(a.end == b.first is not None for a, b in itertools.pairwise(ranges))


async def test_a_preview_is_split_only_when_its_plan_is_costly(seg_pool, tenant, monkeypatch):
    """Ranges pay only for a costly rule: below ``min_cost`` (the planner's estimate of the whole
    statement) the preview is one statement and the tenant is not even sampled for split points;
    at or above it, it is. Same answer either way."""
    contacts = [f"wm{n:02d}" for n in range(30)]
    await seed(
        seg_pool,
        [Profile(tenant, euid, facts=orders(1) if n % 3 else ()) for n, euid in enumerate(contacts)],
    )
    buyers = [euid for n, euid in enumerate(contacts) if n % 3]
    splits: list[int] = []
    ranges_of = catalog.contact_ranges

    async def spy(db, tenant_id, parts, *, min_contacts):
        splits.append(parts)
        return await ranges_of(db, tenant_id, parts, min_contacts=min_contacts)

    monkeypatch.setattr(catalog, "contact_ranges", spy)
    rule, params = parse_rule(BUYERS), SqlParams(today=TODAY)
    cost = await catalog.plan_cost(seg_pool, tenant, compile_sql(rule, params, first_arg=2), 20)
    assert cost > 0
    options = {"parallelism": 4, "min_contacts": 0}
    assert await catalog.preview_rule(seg_pool, tenant, rule, params, 20, **options, min_cost=cost * 2) == (
        20,
        buyers,
    )
    assert splits == []
    assert await catalog.preview_rule(seg_pool, tenant, rule, params, 20, **options, min_cost=cost) == (
        20,
        buyers,
    )
    assert splits == [4]
    # Without parallelism it is never split, whatever the cost.
    assert await catalog.preview_rule(seg_pool, tenant, rule, params, 20, parallelism=1, min_contacts=0) == (
        20,
        buyers,
    )
    assert splits == [4]
