"""Enrichment in contact-svc's worker: WeCom profiles of new contacts reach Kafka as
``contact-updated`` through the outbox, with ``enriched_at`` set in the same transaction.

WeCom is the local stand-in (real HTTP on 127.0.0.1); PostgreSQL and the Kafka-protocol broker
are real. Rows are inserted straight into the test's schema (layout of 0002/0003).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
import pytest_asyncio

from contact_svc.config import ContactSettings
from contact_svc.enrichment import Enricher
from contact_svc.wecom.client import RetryPolicy, WeComClient
from contact_svc.wecom.standin import Corp, StandInServer
from scrm_shared.db.pool import advisory_key
from scrm_shared.testing.plugin import wait_for

pytestmark = pytest.mark.integration

BOX = ContactSettings().secret_box
INSERT_CONTACT = "INSERT INTO contacts (tenant_id, external_userid, status) VALUES ($1, $2, $3)"
SELECT_ENRICHED = "SELECT external_userid, enriched_at IS NOT NULL AS done FROM contacts WHERE tenant_id = $1"
SELECT_PROFILE = (
    "SELECT name, avatar, gender, unionid FROM contacts WHERE tenant_id = $1 AND external_userid = $2"
)
SELECT_UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
SELECT_ATTEMPT = (
    "SELECT attempts, last_errcode FROM enrichment_attempts WHERE tenant_id = $1 AND external_userid = $2"
)


@pytest_asyncio.fixture
async def contact_settings(contact_settings: ContactSettings, standin: StandInServer) -> ContactSettings:
    """The shared settings, with WeCom's API base pointed at the stand-in."""
    return contact_settings.model_copy(update={"wecom_api_base": standin.base_url})


async def enriched(pool: asyncpg.Pool, tenant: str) -> dict[str, bool]:
    return {r["external_userid"]: r["done"] for r in await pool.fetch(SELECT_ENRICHED, tenant)}


async def test_worker_enriches_new_contacts_through_the_outbox(
    contact_worker: None,
    pg_pool: asyncpg.Pool,
    standin: StandInServer,
    wecom_corp: Callable[..., Awaitable[Corp]],
    tenant: str,
    broker,
) -> None:
    corp = await wecom_corp(tenant)
    corp.add_friend(
        "wm-alice",
        "guide-1",
        name="Alice",
        avatar="https://wework.qpic.cn/alice/0",
        gender=2,
        unionid="oz-alice",
    )
    corp.add_friend("wm-bob", "guide-1", name="Bob", gender=1)  # no unionid
    corp.add_friend("wm-erased", "guide-1", name="Erased")
    corp.add_friend("wm-broken", "guide-1", name="Broken")
    standin.directory.contact_errcodes["wm-broken"] = 40058  # WeCom refuses this one, always
    for euid, status in [
        ("wm-alice", "active"),
        ("wm-bob", "active"),
        ("wm-gone", "lost"),  # WeCom no longer knows it: 84061
        ("wm-erased", "erased"),
        ("wm-broken", "active"),
    ]:
        await pg_pool.execute(INSERT_CONTACT, tenant, euid, status)

    async def settled() -> bool:
        state = await enriched(pg_pool, tenant)
        attempt = await pg_pool.fetchrow(SELECT_ATTEMPT, tenant, "wm-broken")
        return (
            state["wm-alice"]
            and state["wm-bob"]
            and state["wm-gone"]
            and attempt is not None
            and await pg_pool.fetchval(SELECT_UNSENT) == 0
        )

    await wait_for(settled, timeout=20)

    state = await enriched(pg_pool, tenant)
    assert state == {
        "wm-alice": True,
        "wm-bob": True,
        "wm-gone": True,
        "wm-erased": False,
        "wm-broken": False,
    }
    assert dict(await pg_pool.fetchrow(SELECT_ATTEMPT, tenant, "wm-broken")) == {
        "attempts": 1,
        "last_errcode": 40058,
    }
    fetched = {
        params["external_userid"]
        for api, params in standin.directory.requests
        if api == "externalcontact/get"
    }
    assert "wm-erased" not in fetched  # erased contacts are never asked about

    events = {e["data"]["external_userid"]: e for e in await broker.read("contact-updated")}
    assert set(events) == {"wm-alice", "wm-bob"}
    alice = events["wm-alice"]
    assert (alice["type"], alice["version"], alice["tenant_id"]) == ("contact-updated", 1, tenant)
    assert alice["data"]["changed"] == ["profile", "unionid"]
    assert alice["data"]["name"] == "Alice"
    assert alice["data"]["avatar"] == "https://wework.qpic.cn/alice/0"
    assert alice["data"]["gender"] == 2
    assert alice["data"]["unionid"] == "oz-alice"
    bob = events["wm-bob"]["data"]
    assert bob["changed"] == ["profile"]
    assert (bob["name"], bob["gender"], bob["unionid"]) == ("Bob", 1, None)

    # The worker's read model applies the event to the contact like any other contact-updated.
    async def profile_applied() -> bool:
        row = await pg_pool.fetchrow(SELECT_PROFILE, tenant, "wm-alice")
        return row is not None and row["name"] == "Alice"

    await wait_for(profile_applied, timeout=20)
    row = await pg_pool.fetchrow(SELECT_PROFILE, tenant, "wm-alice")
    assert (row["avatar"], row["gender"], row["unionid"]) == ("https://wework.qpic.cn/alice/0", 2, "oz-alice")

    # Enriched contacts are not fetched again on later passes.
    calls = standin.directory.calls["externalcontact/get"]
    corp.add_friend("wm-late", "guide-2", name="Late")
    await pg_pool.execute(INSERT_CONTACT, tenant, "wm-late", "active")
    await wait_for(lambda: _is_enriched(pg_pool, tenant, "wm-late"))
    assert standin.directory.calls["externalcontact/get"] == calls + 1


async def _is_enriched(pool: asyncpg.Pool, tenant: str, external_userid: str) -> bool:
    return (await enriched(pool, tenant)).get(external_userid, False)


async def test_a_tenant_with_a_wrong_secret_does_not_hold_up_the_others(
    migrated: asyncpg.Pool, standin: StandInServer, wecom_corp: Callable[..., Awaitable[Corp]], tenant: str
) -> None:
    other = f"{tenant}-b"
    good = await wecom_corp(tenant)
    good.add_friend("wm-1", "guide-1", name="One")
    bad = await wecom_corp(other, stored_secret="stale-secret")
    bad.add_friend("wm-2", "guide-1", name="Two")
    await migrated.execute(INSERT_CONTACT, tenant, "wm-1", "active")
    await migrated.execute(INSERT_CONTACT, other, "wm-2", "active")

    async with WeComClient(standin.base_url, retry=RetryPolicy(base_delay=0.001)) as wecom:
        report = await Enricher(migrated, wecom, BOX).run_once()

    assert report.tenants_deferred == [other]
    assert report.outcomes == {"published": 1}
    assert await enriched(migrated, tenant) == {"wm-1": True}
    assert await enriched(migrated, other) == {"wm-2": False}
    # The refused credentials are not held against the contact: no wait recorded.
    assert await migrated.fetchrow(SELECT_ATTEMPT, other, "wm-2") is None


async def test_throttling_beyond_the_retries_defers_the_tenant(
    migrated: asyncpg.Pool, standin: StandInServer, wecom_corp: Callable[..., Awaitable[Corp]], tenant: str
) -> None:
    corp = await wecom_corp(tenant)
    for i in range(3):
        corp.add_friend(f"wm-{i}", "guide-1", name=f"N{i}")
        await migrated.execute(INSERT_CONTACT, tenant, f"wm-{i}", "active")
    standin.directory.fail_next("externalcontact/get", 45009, times=100)

    async with WeComClient(standin.base_url, retry=RetryPolicy(attempts=2, base_delay=0.001)) as wecom:
        enricher = Enricher(migrated, wecom, BOX, concurrency=1)
        report = await enricher.run_once()
        assert report.tenants_deferred == [tenant]
        assert standin.directory.calls["externalcontact/get"] == 2  # one contact's tries, then stop

        standin.directory.clear_faults()  # WeCom recovers
        report = await enricher.run_once()

    assert report.outcomes == {"published": 3}
    assert all((await enriched(migrated, tenant)).values())


async def test_contact_erased_meanwhile_is_not_published(
    migrated: asyncpg.Pool, standin: StandInServer, tenant: str
) -> None:
    corp = standin.directory.add_corp(f"ww-{tenant}", "app-secret-1")  # no settings stored: not needed
    corp.add_friend("wm-x", "guide-1", name="X")
    await migrated.execute(INSERT_CONTACT, tenant, "wm-x", "erased")

    async with WeComClient(standin.base_url) as wecom:
        outcome = await Enricher(migrated, wecom, BOX).enrich_contact(
            wecom.corp(corp.corp_id, corp.secret), tenant, "wm-x"
        )

    assert outcome == "skipped"
    assert await migrated.fetchval("SELECT count(*) FROM outbox") == 0
    assert await enriched(migrated, tenant) == {"wm-x": False}


async def test_only_one_process_enriches_at_a_time(
    migrated: asyncpg.Pool,
    standin: StandInServer,
    wecom_corp: Callable[..., Awaitable[Corp]],
    tenant: str,
    pg_schema: str,
) -> None:
    corp = await wecom_corp(tenant)
    corp.add_friend("wm-1", "guide-1", name="One")
    await migrated.execute(INSERT_CONTACT, tenant, "wm-1", "active")

    async with migrated.acquire() as other_process, WeComClient(standin.base_url) as wecom:
        key = advisory_key("contact-enrichment", pg_schema)
        assert await other_process.fetchval("SELECT pg_try_advisory_lock($1)", key)
        report = await Enricher(migrated, wecom, BOX).run_once()
        assert not report.leader and report.handled == 0
        await other_process.fetchval("SELECT pg_advisory_unlock($1)", key)

        report = await Enricher(migrated, wecom, BOX).run_once()
    assert report.leader and report.outcomes == {"published": 1}
