"""Rule-based tagging on the real broker and PostgreSQL, end to end: segments and tags made through
the API, contacts entering and leaving through the live segment processor (friend-added /
friend-deleted on this test's topics), its segment-changed events relayed by the outbox and
consumed from the real ``segment-changed`` topic by the tag worker's own batch handler
(:func:`tag_svc.stream.build_handler`), the result read back through the API and the
``contact-tagged`` topic.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from scrm_shared.events import ContactErasedEvent, SegmentChangedEvent, new_event
from scrm_shared.kafka.consumer import BatchConsumer, Consumed
from scrm_shared.service.worker import WorkerDeps
from scrm_shared.testing.plugin import wait_for
from tag_svc.stream import build_handler
from tag_svc.tags import rules

pytestmark = pytest.mark.integration

ACTIVE = {"attr": "status", "eq": "active"}


def followed_by(staff: str) -> dict[str, Any]:
    return {"attr": "staff_id", "eq": staff}


def euid() -> str:
    return f"wm{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def rule_consumer(kafka_bootstrap: str, seg_deps: WorkerDeps) -> AsyncIterator[BatchConsumer]:
    """The tag worker's batch handler behind a consume loop on the real ``segment-changed``
    topic, partitions assigned directly and positioned at their end as of now (so it sees this
    test's events only), driven by :func:`Rig.drive`."""
    group_id = f"tag-rules-{uuid.uuid4().hex[:8]}"
    raw = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    consumer = BatchConsumer(
        bootstrap=kafka_bootstrap,
        group_id=group_id,
        topics=["segment-changed"],
        handler=build_handler(seg_deps),
        producer=seg_deps.producer,
        service="tag-svc",
        consumer=raw,
    )
    await consumer.start()
    await raw.topics()
    tps = [
        TopicPartition("segment-changed", p)
        for p in sorted(raw.partitions_for_topic("segment-changed") or {0})
    ]
    raw.assign(tps)
    await raw.seek_to_end(*tps)
    for tp in tps:
        await raw.position(tp)
    try:
        yield consumer
    finally:
        await consumer.stop()


@dataclass
class Rig:
    """One tenant's API, event senders and the tag worker, as the tests use them."""

    tenant: str
    bootstrap: str
    client: httpx.AsyncClient
    headers: dict[str, str]
    pool: asyncpg.Pool
    deps: WorkerDeps
    seg_api: Any
    events: Any
    send: Callable[..., Awaitable[None]]
    published: Callable[..., Awaitable[list[dict[str, Any]]]]
    consumer: BatchConsumer
    consume_until_idle: Callable[[BatchConsumer], Awaitable[None]]

    async def tags(self, names: list[str], group: str | None = None, **extra: Any) -> dict[str, str]:
        body = {"name": group or f"g-{uuid.uuid4().hex[:6]}", "tags": [{"name": n, **extra} for n in names]}
        resp = await self.client.post("/v1/tag-groups", json=body, headers=self.headers)
        assert resp.status_code == 201, resp.text
        return {t["name"]: t["tag_id"] for t in resp.json()["tags"]}

    async def segment(self, rule: dict[str, Any], name: str | None = None) -> str:
        segment_id = await self.seg_api.create(rule, name)
        await self.seg_api.wait_live(segment_id)
        return str(segment_id)

    async def rule(self, segment_id: str, tag_id: str, **extra: Any) -> httpx.Response:
        body = {"segment_id": segment_id, "tag_id": tag_id, **extra}
        return await self.client.post("/v1/tag-rules", json=body, headers=self.headers)

    async def contact_tags(self, external_userid: str) -> list[tuple[str, str, str | None]]:
        resp = await self.client.get(f"/v1/contacts/{external_userid}/tags", headers=self.headers)
        assert resp.status_code == 200, resp.text
        return [(t["name"], t["by"], t["actor_id"]) for t in resp.json()["tags"]]

    async def drive(self) -> None:
        """Let the outbox relay what the processor committed, then run the tag worker's handler
        over every segment-changed event up to the topic's end."""

        async def relayed() -> bool:
            return await self.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

        await wait_for(relayed, timeout=30)
        await self.consume_until_idle(self.consumer)
        assert self.consumer.stats.dead_lettered == 0

    async def tagged_events(self) -> list[tuple[str, str, str, str, str | None]]:
        """This tenant's contact-tagged events, (contact, tag, change, by, actor_id), by contact:
        each contact's in the order published (one key, one partition), contacts in id order (their
        relative order across partitions is not defined)."""
        events = [
            (d["external_userid"], d["tag_name"], d["change"], d["by"], d["actor_id"])
            for d in (e["data"] for e in await self.published("contact-tagged", self.tenant))
        ]
        return sorted(events, key=lambda e: e[0])


@pytest.fixture
def rig(
    tenant: str,
    kafka_bootstrap: str,
    seg_client: httpx.AsyncClient,
    seg_headers: dict[str, str],
    seg_pool: asyncpg.Pool,
    seg_deps: WorkerDeps,
    seg_api,
    seg_events,
    seg_send,
    published,
    rule_consumer: BatchConsumer,
    seg_consume_until_idle,
    seg_worker,
) -> Rig:
    return Rig(
        tenant,
        kafka_bootstrap,
        seg_client,
        seg_headers,
        seg_pool,
        seg_deps,
        seg_api,
        seg_events,
        seg_send,
        published,
        rule_consumer,
        seg_consume_until_idle,
    )


async def test_a_rule_tags_on_entry_and_untags_on_exit_end_to_end(rig: Rig):
    tags = await rig.tags(["VIP"], wecom_tag_id="etVIP")
    segment = await rig.segment(ACTIVE)
    resp = await rig.rule(segment, tags["VIP"])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert resp.headers["Location"] == f"/v1/tag-rules/{body['rule_id']}"
    assert body == {
        "rule_id": body["rule_id"],
        "segment_id": segment,
        "segment_name": body["segment_name"],
        "tag_id": tags["VIP"],
        "tag_name": "VIP",
        "group_name": body["group_name"],
        "remove_on_exit": True,
        "status": "active",
        "applied": 0,
        "created_at": body["created_at"],
        "created_by": "operator-user",
    }

    contact = euid()
    await rig.send(rig.events.added(contact))
    await rig.seg_api.wait_members(segment, {contact})
    await rig.drive()
    assert await rig.contact_tags(contact) == [("VIP", "rule", segment)]
    assert await rig.tagged_events() == [(contact, "VIP", "added", "rule", segment)]
    # The tag is synced with WeCom: a mark_tag push is queued like any other tagging.
    pushes = await rig.pool.fetch(
        "SELECT add_tag, remove_tag, staff_id FROM wecom_pushes WHERE tenant_id = $1 AND external_userid = $2",
        rig.tenant,
        contact,
    )
    assert [dict(p) for p in pushes] == [{"add_tag": ["etVIP"], "remove_tag": [], "staff_id": None}]

    await rig.send(rig.events.deleted(contact))
    await rig.seg_api.wait_members(segment, set())
    await rig.drive()
    assert await rig.contact_tags(contact) == []
    assert await rig.tagged_events() == [
        (contact, "VIP", "added", "rule", segment),
        (contact, "VIP", "removed", "rule", segment),
    ]
    # The same events again (a redelivery): claimed already, nothing changes, nothing is published.
    handler = build_handler(rig.deps)
    changes = await _segment_changed_of(rig, contact)
    assert [c.event.data.change for c in changes] == ["entered", "exited"]
    await handler(changes)
    assert await rig.contact_tags(contact) == []
    assert len(await rig.tagged_events()) == 2


async def _segment_changed_of(rig: Rig, contact: str) -> list[Consumed]:
    """The segment-changed records of ``contact`` on the topic, as the consume loop hands them."""
    raw = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap)
    await raw.start()
    try:
        await raw.topics()
        tps = [
            TopicPartition("segment-changed", p)
            for p in sorted(raw.partitions_for_topic("segment-changed") or {0})
        ]
        raw.assign(tps)
        await raw.seek_to_beginning(*tps)
        ends = await raw.end_offsets(tps)
        out: list[Consumed] = []

        async def caught_up() -> bool:
            for records in (await raw.getmany(*tps, timeout_ms=100, max_records=50_000)).values():
                for r in records:
                    event = SegmentChangedEvent.model_validate_json(r.value)
                    if event.tenant_id == rig.tenant and event.data.external_userid == contact:
                        out.append(Consumed(event, r.topic, r.partition, r.offset, r.key, ()))
            return all([await raw.position(tp) >= ends[tp] for tp in tps])

        await wait_for(caught_up, timeout=30, interval=0)
        return sorted(out, key=lambda c: c.offset)
    finally:
        await raw.stop()


async def test_creating_a_rule_tags_the_members_and_a_half_done_creation_resumes(rig: Rig):
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    prefix = euid()
    contacts = [f"{prefix}-{n}" for n in range(5)]  # in external_userid order
    await rig.send(*(rig.events.added(c) for c in contacts))
    await rig.seg_api.wait_members(segment, set(contacts))
    manual = await rig.client.post(
        f"/v1/contacts/{contacts[0]}/tags", json={"tag_ids": [tags["VIP"]]}, headers=rig.headers
    )
    assert manual.status_code == 200, manual.text

    # A creation that stopped after its first chunk (two members, one of them tagged already).
    async with rig.pool.acquire() as conn, conn.transaction():
        rule_id, created = await rules.create_rule(
            conn,
            rig.tenant,
            segment_id=uuid.UUID(segment),
            tag_id=uuid.UUID(tags["VIP"]),
            remove_on_exit=True,
            created_by="operator-user",
        )
    assert created
    async with rig.pool.acquire() as conn, conn.transaction():
        assert not await rules.apply_chunk(conn, rig.tenant, rule_id, 2)
    half = (await rig.client.get(f"/v1/tag-rules/{rule_id}", headers=rig.headers)).json()
    assert (half["status"], half["applied"]) == ("applying", 1)

    # Posting it again resumes it: 200, every member tagged, the manual tag left as it was.
    resp = await rig.rule(segment, tags["VIP"])
    assert resp.status_code == 200, resp.text
    assert (resp.json()["rule_id"], resp.json()["status"], resp.json()["applied"]) == (
        str(rule_id),
        "active",
        4,
    )
    assert await rig.contact_tags(contacts[0]) == [("VIP", "operator", "operator-user")]
    for c in contacts[1:]:
        assert await rig.contact_tags(c) == [("VIP", "rule", segment)]
    assert await rig.tagged_events() == [
        (contacts[0], "VIP", "added", "operator", "operator-user"),
        *((c, "VIP", "added", "rule", segment) for c in contacts[1:]),
    ]

    # Once applied, the same rule again is a conflict naming the rule.
    again = await rig.rule(segment, tags["VIP"])
    assert again.status_code == 409
    assert (again.json()["type"], again.json()["rule_id"]) == (
        "urn:scrm:problem:tag-rule-exists",
        str(rule_id),
    )


async def test_creating_a_rule_through_the_api_tags_existing_members(rig: Rig):
    tags = await rig.tags(["老客"])
    segment = await rig.segment(ACTIVE)
    members = [euid(), euid()]
    await rig.send(*(rig.events.added(c) for c in members))
    await rig.seg_api.wait_members(segment, set(members))

    resp = await rig.rule(segment, tags["老客"], remove_on_exit=False)
    assert resp.status_code == 201, resp.text
    assert (resp.json()["status"], resp.json()["applied"], resp.json()["remove_on_exit"]) == (
        "active",
        2,
        False,
    )
    for c in members:
        assert await rig.contact_tags(c) == [("老客", "rule", segment)]
    assert sorted(await rig.tagged_events()) == sorted((c, "老客", "added", "rule", segment) for c in members)


async def test_an_exit_removes_only_a_tag_the_rule_set(rig: Rig):
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    assert (await rig.rule(segment, tags["VIP"])).status_code == 201
    manual, by_rule = euid(), euid()
    # An operator tagged one contact before it entered: the rule's add is a no-op, the tag theirs.
    resp = await rig.client.post(
        f"/v1/contacts/{manual}/tags", json={"tag_ids": [tags["VIP"]]}, headers=rig.headers
    )
    assert resp.status_code == 200

    await rig.send(rig.events.added(manual), rig.events.added(by_rule))
    await rig.seg_api.wait_members(segment, {manual, by_rule})
    await rig.drive()
    assert await rig.contact_tags(manual) == [("VIP", "operator", "operator-user")]
    assert await rig.contact_tags(by_rule) == [("VIP", "rule", segment)]

    await rig.send(rig.events.deleted(manual), rig.events.deleted(by_rule))
    await rig.seg_api.wait_members(segment, set())
    await rig.drive()
    assert await rig.contact_tags(manual) == [("VIP", "operator", "operator-user")]
    assert await rig.contact_tags(by_rule) == []
    expected = {
        manual: [(manual, "VIP", "added", "operator", "operator-user")],
        by_rule: [(by_rule, "VIP", "added", "rule", segment), (by_rule, "VIP", "removed", "rule", segment)],
    }
    assert await rig.tagged_events() == [e for c in sorted(expected) for e in expected[c]]


async def test_a_tag_another_rule_still_gives_stays_and_remove_on_exit_false_keeps_it(rig: Rig):
    tags = await rig.tags(["VIP", "新客"])
    first = await rig.segment(followed_by("s1"))
    second = await rig.segment(followed_by("s2"))
    assert (await rig.rule(first, tags["VIP"])).status_code == 201
    assert (await rig.rule(second, tags["VIP"])).status_code == 201
    assert (await rig.rule(first, tags["新客"], remove_on_exit=False)).status_code == 201
    contact = euid()

    await rig.send(rig.events.added(contact, "s1"))
    await rig.seg_api.wait_members(first, {contact})
    await rig.drive()
    assert sorted(await rig.contact_tags(contact)) == [("VIP", "rule", first), ("新客", "rule", first)]

    await rig.send(rig.events.added(contact, "s2"))
    await rig.seg_api.wait_members(second, {contact})
    await rig.drive()
    assert sorted(await rig.contact_tags(contact)) == [("VIP", "rule", first), ("新客", "rule", first)]

    # Leaving the first segment: VIP stays (the second segment's rule gives it; the row is its
    # now), 新客 stays (not removed on exit). Nothing changed for the contact, nothing published.
    await rig.send(rig.events.deleted(contact, "s1"))
    await rig.seg_api.wait_members(first, set())
    await rig.drive()
    assert sorted(await rig.contact_tags(contact)) == [("VIP", "rule", second), ("新客", "rule", first)]

    await rig.send(rig.events.deleted(contact, "s2"))
    await rig.seg_api.wait_members(second, set())
    await rig.drive()
    assert await rig.contact_tags(contact) == [("新客", "rule", first)]
    assert sorted(await rig.tagged_events()) == sorted(
        [
            (contact, "VIP", "added", "rule", first),
            (contact, "新客", "added", "rule", first),
            (contact, "VIP", "removed", "rule", second),
        ]
    )


async def test_an_entry_already_undone_when_consumed_changes_nothing(rig: Rig):
    tags = await rig.tags(["VIP"], wecom_tag_id="etVIP")
    segment = await rig.segment(ACTIVE)
    assert (await rig.rule(segment, tags["VIP"])).status_code == 201
    contact = euid()
    await rig.send(rig.events.added(contact))
    await rig.seg_api.wait_members(segment, {contact})
    await rig.send(rig.events.deleted(contact))
    await rig.seg_api.wait_members(segment, set())

    # Both transitions are on the topic; by the time "entered" is consumed the contact is out.
    await rig.drive()
    assert [c.event.data.change for c in await _segment_changed_of(rig, contact)] == ["entered", "exited"]
    assert await rig.contact_tags(contact) == []
    assert await rig.tagged_events() == []
    assert await rig.pool.fetchval("SELECT count(*) FROM wecom_pushes WHERE tenant_id = $1", rig.tenant) == 0


async def test_an_erased_contact_is_never_tagged_by_a_rule(rig: Rig):
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    assert (await rig.rule(segment, tags["VIP"])).status_code == 201
    contact = euid()
    await rig.send(rig.events.added(contact))
    await rig.seg_api.wait_members(segment, {contact})
    await rig.drive()
    assert await rig.contact_tags(contact) == [("VIP", "rule", segment)]

    handler = build_handler(rig.deps)
    now = datetime.now(UTC)
    erased = new_event(
        ContactErasedEvent,
        tenant_id=rig.tenant,
        source="contact-svc",
        data={"external_userid": contact, "contact_id": "c-1", "erased_at": now},
    )
    await handler([_consumed(erased, "contact-erased")])
    assert await rig.contact_tags(contact) == []
    # A late "entered" (the contact is still a member here: the processor has not seen the
    # tombstone) tags nothing.
    entered = new_event(
        SegmentChangedEvent,
        tenant_id=rig.tenant,
        source="tag-svc",
        data={
            "segment_id": segment,
            "external_userid": contact,
            "change": "entered",
            "at": now,
            "cause": "event",
        },
    )
    await handler([_consumed(entered, "segment-changed")])
    assert await rig.contact_tags(contact) == []
    assert await rig.tagged_events() == [(contact, "VIP", "added", "rule", segment)]


def _consumed(event: Any, topic: str) -> Consumed:
    return Consumed(event, topic, 0, 0, event.key(), ())


async def test_deleting_a_rule_leaves_its_tags_unless_asked_to_remove_them(rig: Rig):
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    a, b, manual = euid(), euid(), euid()
    await rig.send(*(rig.events.added(c) for c in (a, b, manual)))
    await rig.seg_api.wait_members(segment, {a, b, manual})
    resp = await rig.client.post(
        f"/v1/contacts/{manual}/tags", json={"tag_ids": [tags["VIP"]]}, headers=rig.headers
    )
    assert resp.status_code == 200
    rule = (await rig.rule(segment, tags["VIP"])).json()
    assert rule["applied"] == 2

    assert (
        await rig.client.delete(f"/v1/tag-rules/{rule['rule_id']}", headers=rig.headers)
    ).status_code == 204
    assert (await rig.client.get(f"/v1/tag-rules/{rule['rule_id']}", headers=rig.headers)).status_code == 404
    assert (await rig.client.get("/v1/tag-rules", headers=rig.headers)).json() == {"items": []}
    # Without the rule an exit removes nothing.
    await rig.send(rig.events.deleted(a))
    await rig.seg_api.wait_members(segment, {b, manual})
    await rig.drive()
    for c in (a, b):
        assert await rig.contact_tags(c) == [("VIP", "rule", segment)]

    # A rule for the same segment and tag owns the tags again; deleting it with remove_tags
    # removes what the rules set (a, who left meanwhile, too) and leaves the operator's tag.
    again = await rig.rule(segment, tags["VIP"])
    assert (again.status_code, again.json()["applied"]) == (201, 0)
    resp = await rig.client.delete(
        f"/v1/tag-rules/{again.json()['rule_id']}", params={"remove_tags": "true"}, headers=rig.headers
    )
    assert resp.status_code == 204
    assert await rig.contact_tags(a) == [] and await rig.contact_tags(b) == []
    assert await rig.contact_tags(manual) == [("VIP", "operator", "operator-user")]
    events = await rig.tagged_events()
    assert sorted(e for e in events if e[2] == "removed") == sorted(
        [(a, "VIP", "removed", "rule", segment), (b, "VIP", "removed", "rule", segment)]
    )
    resp = await rig.client.delete(f"/v1/tag-rules/{again.json()['rule_id']}", headers=rig.headers)
    assert resp.status_code == 404


async def test_removing_a_deleted_rules_tags_runs_in_chunks(rig: Rig):
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    contacts = [euid() for _ in range(5)]
    await rig.send(*(rig.events.added(c) for c in contacts))
    await rig.seg_api.wait_members(segment, set(contacts))
    rule = (await rig.rule(segment, tags["VIP"])).json()
    assert rule["applied"] == 5
    assert await rules.delete_rule(
        rig.pool, rig.tenant, uuid.UUID(rule["rule_id"]), remove_tags=True, chunk_size=2
    )
    for c in contacts:
        assert await rig.contact_tags(c) == []
    assert len([e for e in await rig.tagged_events() if e[2] == "removed"]) == 5


async def test_a_rule_closing_a_cycle_is_refused_with_the_cycle(rig: Rig):
    tags = await rig.tags(["甲", "乙"])
    first = await rig.segment({"tag": "乙"}, name="读乙")
    second = await rig.segment({"tag": "甲"}, name="读甲")

    # first adds 甲, which second reads; second adds nothing yet: no cycle.
    assert (await rig.rule(first, tags["甲"])).status_code == 201
    # second adding 乙 (read by first) would close first -> 甲 -> second -> 乙 -> first.
    resp = await rig.rule(second, tags["乙"])
    assert resp.status_code == 409
    body = resp.json()
    assert body["type"] == "urn:scrm:problem:tag-rule-cycle"
    assert body["cycle"] == [
        {"segment_id": second, "segment_name": "读甲", "tag_id": tags["乙"], "tag_name": "乙"},
        {"segment_id": first, "segment_name": "读乙", "tag_id": tags["甲"], "tag_name": "甲"},
    ]
    assert "segment '读甲' adds tag '乙'" in body["detail"]
    # A segment adding a tag it reads itself.
    resp = await rig.rule(first, tags["乙"])
    assert resp.status_code == 409
    assert [s["tag_name"] for s in resp.json()["cycle"]] == ["乙"]
    listed = (await rig.client.get("/v1/tag-rules", headers=rig.headers)).json()["items"]
    assert [(r["segment_id"], r["tag_id"]) for r in listed] == [(first, tags["甲"])]

    # Editing second's rule so it no longer reads 甲 allows the rule; reading 甲 again (even
    # negated) is then refused, and the segment keeps its rule.
    put = await rig.client.put(
        f"/v1/segments/{second}", json={"name": "读甲", "rule": ACTIVE}, headers=rig.headers
    )
    assert put.status_code == 200, put.text
    assert (await rig.rule(second, tags["乙"])).status_code == 201
    for rule in ({"tag": "甲"}, {"not": {"tag": "甲"}}):
        put = await rig.client.put(
            f"/v1/segments/{second}", json={"name": "读甲", "rule": rule}, headers=rig.headers
        )
        assert put.status_code == 409, put.text
        assert put.json()["type"] == "urn:scrm:problem:tag-rule-cycle"
        assert [s["segment_id"] for s in put.json()["cycle"]] == [second, first]
    assert (await rig.seg_api.get(second))["rule"] == ACTIVE
    # Tags are read by name: renaming 甲 (added by first) to a name no segment reads is fine,
    # renaming it to 乙 (read by first) would close first -> 乙 -> first.
    async with rig.pool.acquire() as conn, conn.transaction():
        await rules.check_tag_rename(conn, rig.tenant, uuid.UUID(tags["甲"]), "丙")
        with pytest.raises(rules.RuleCycle) as refused:
            await rules.check_tag_rename(conn, rig.tenant, uuid.UUID(tags["甲"]), "乙")
    assert [(s.segment_id, s.tag_name) for s in refused.value.steps] == [(uuid.UUID(first), "乙")]
    renamed = await rig.client.patch(f"/v1/tags/{tags['甲']}", json={"name": "乙"}, headers=rig.headers)
    assert renamed.status_code == 409, renamed.text
    assert renamed.json()["type"] == "urn:scrm:problem:tag-rule-cycle"
    # Renaming only (the same rule) is not checked again and goes through.
    put = await rig.client.put(
        f"/v1/segments/{second}", json={"name": "活跃", "rule": ACTIVE}, headers=rig.headers
    )
    assert put.status_code == 200


async def test_the_api_validates_authorises_and_keeps_tenants_apart(rig: Rig, auth):
    tags = await rig.tags(["VIP", "新客"])
    segment = await rig.segment(ACTIVE)
    other_segment = await rig.segment(followed_by("s1"))
    missing = str(uuid.uuid4())

    resp = await rig.rule(missing, tags["VIP"])
    assert (resp.status_code, resp.json()["type"]) == (404, "urn:scrm:problem:segment-not-found")
    resp = await rig.rule(segment, missing)
    assert (resp.status_code, resp.json()["type"]) == (404, "urn:scrm:problem:tag-not-found")
    resp = await rig.rule(segment, tags["VIP"], remove_on_exti=False)
    assert resp.status_code == 422
    assert (await rig.client.post("/v1/tag-rules", json={})).status_code == 401

    guide = auth(rig.tenant, "guide", staff="s1")
    body = {"segment_id": segment, "tag_id": tags["VIP"]}
    assert (await rig.client.post("/v1/tag-rules", json=body, headers=guide)).status_code == 403
    vip = (await rig.rule(segment, tags["VIP"])).json()
    new = (await rig.rule(other_segment, tags["新客"])).json()
    assert (await rig.client.delete(f"/v1/tag-rules/{vip['rule_id']}", headers=guide)).status_code == 403
    listed = (await rig.client.get("/v1/tag-rules", headers=guide)).json()["items"]
    assert [r["rule_id"] for r in listed] == [vip["rule_id"], new["rule_id"]]
    only = await rig.client.get("/v1/tag-rules", params={"segment_id": other_segment}, headers=guide)
    assert [r["rule_id"] for r in only.json()["items"]] == [new["rule_id"]]

    # Another tenant sees none of it and cannot use this tenant's segments or tags.
    stranger = auth(f"t{uuid.uuid4().hex[:10]}", "admin")
    assert (await rig.client.get("/v1/tag-rules", headers=stranger)).json() == {"items": []}
    assert (await rig.client.get(f"/v1/tag-rules/{vip['rule_id']}", headers=stranger)).status_code == 404
    assert (await rig.client.delete(f"/v1/tag-rules/{vip['rule_id']}", headers=stranger)).status_code == 404
    resp = await rig.client.post("/v1/tag-rules", json=body, headers=stranger)
    assert (resp.status_code, resp.json()["type"]) == (404, "urn:scrm:problem:segment-not-found")
    assert (await rig.client.get(f"/v1/tag-rules/{vip['rule_id']}", headers=rig.headers)).status_code == 200

    # Deleting the tag takes its rules out of every read; deleting the segment deletes its rules.
    assert (await rig.client.delete(f"/v1/tags/{tags['VIP']}", headers=rig.headers)).status_code in (202, 204)
    assert (await rig.client.get(f"/v1/tag-rules/{vip['rule_id']}", headers=rig.headers)).status_code == 404
    assert (await rig.client.delete(f"/v1/segments/{other_segment}", headers=rig.headers)).status_code == 204
    assert (await rig.client.get("/v1/tag-rules", headers=rig.headers)).json() == {"items": []}
    assert (
        await rig.pool.fetchval(
            "SELECT count(*) FROM tag_rules WHERE segment_id = $1", uuid.UUID(other_segment)
        )
        == 0
    )


async def test_membership_holds_still_while_a_chunk_applies_a_new_rule(rig: Rig):
    """The race the chunk's segment lock closes: a chunk reads a member, the contact leaves, the
    worker handles the exit before the chunk commits its add -> a tag nobody removes. Here the
    processor's exit has to wait for the chunk, so the exit is handled after the add."""
    tags = await rig.tags(["VIP"])
    segment = await rig.segment(ACTIVE)
    contact = euid()
    await rig.send(rig.events.added(contact))
    await rig.seg_api.wait_members(segment, {contact})
    async with rig.pool.acquire() as conn, conn.transaction():
        rule_id, _ = await rules.create_rule(
            conn,
            rig.tenant,
            segment_id=uuid.UUID(segment),
            tag_id=uuid.UUID(tags["VIP"]),
            remove_on_exit=True,
            created_by=None,
        )

    async with rig.pool.acquire() as conn:
        chunk_pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with conn.transaction():
            assert await rules.apply_chunk(conn, rig.tenant, rule_id, 100)
            await rig.send(rig.events.deleted(contact))

            async def processor_waits() -> bool:
                blocked = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
                return bool(await rig.pool.fetchval(blocked, chunk_pid))

            await wait_for(processor_waits, timeout=30)
            assert await rig.seg_api.members(segment) == [contact]
    await rig.seg_api.wait_members(segment, set())
    await rig.drive()
    assert await rig.contact_tags(contact) == []
    assert await rig.tagged_events() == [
        (contact, "VIP", "added", "rule", segment),
        (contact, "VIP", "removed", "rule", segment),
    ]
