"""Reconciliation of follow relations with WeCom (``scrm contacts reconcile``).

WeCom is the local stand-in over real HTTP; PostgreSQL and the broker are real. The scenario
(:func:`drifted_tenant`) puts every kind of difference between WeCom and our follows in one
tenant; the tests check the report, the events on Kafka, the repaired read model, dry runs,
repeat runs and the command line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from contact_svc.config import ContactSettings
from contact_svc.reconcile import Drift, ReconcileError, StaffDrift, reconcile
from contact_svc.wecom.client import RetryPolicy, WeComClient, WeComError
from contact_svc.wecom.standin import Corp, StandInServer
from scrm_shared.testing.plugin import wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=1)
BOX = ContactSettings().secret_box

INSERT_STAFF = "INSERT INTO staff (tenant_id, staff_id) VALUES ($1, $2)"
INSERT_FOLLOW = """
INSERT INTO follows (tenant_id, external_userid, staff_id, state, status, deleted_by, added_at, last_event_at)
VALUES ($1, $2, $3, '', $4, CASE WHEN $4 = 'deleted' THEN 'customer' END, $5, $5)
"""
SELECT_FOLLOWS = """
SELECT external_userid, staff_id, status, deleted_by, delete_source FROM follows WHERE tenant_id = $1
"""
SELECT_OUTBOX = "SELECT topic, event_id FROM outbox ORDER BY id"


Setup = Callable[..., Awaitable[None]]


def epoch(at: datetime) -> int:
    return int(at.timestamp())


@pytest_asyncio.fixture
async def contact_settings(contact_settings: ContactSettings, standin: StandInServer) -> ContactSettings:
    """The shared settings, with WeCom's API base pointed at the stand-in."""
    return contact_settings.model_copy(update={"wecom_api_base": standin.base_url})


@pytest_asyncio.fixture
async def wecom(standin: StandInServer) -> AsyncIterator[WeComClient]:
    async with WeComClient(standin.base_url, retry=RetryPolicy(base_delay=0.001)) as client:
        yield client


@pytest.fixture
def drifted_tenant(pg_pool: asyncpg.Pool, wecom_corp: Callable[..., Awaitable[Corp]], tenant: str) -> Setup:
    """``await drifted_tenant(failing_staff=True)``: WeCom and our follows of ``tenant``,
    differing in every way reconcile knows (the schema must be migrated by then).

    guide-1: wm-1 agrees; wm-2 is missing here; wm-3 was deleted here before WeCom's (newer)
    createtime, so it is a re-add missing here; wm-cdel was deleted here after WeCom's createtime
    (ended here, not an add); wm-new was added on WeCom a moment ago (recent, left alone).
    guide-2: wm-4 agrees; wm-5 is gone on WeCom; wm-6 changed here a moment ago (recent).
    guide-3 (when ``failing_staff``): unknown to WeCom, so its wm-7 must not be deleted.
    """

    async def make(*, failing_staff: bool = True) -> None:
        corp = await wecom_corp(tenant)
        corp.add_friend("wm-1", "guide-1", createtime=epoch(OLD))
        corp.add_friend(
            "wm-2", "guide-1", createtime=epoch(OLD), state="store-sh-012", name="Two", unionid="oz-2"
        )
        corp.add_friend("wm-3", "guide-1", createtime=epoch(OLD), add_way=202)
        corp.add_friend("wm-cdel", "guide-1", createtime=epoch(OLD))
        corp.add_friend("wm-new", "guide-1", createtime=epoch(NOW))
        corp.add_friend("wm-4", "guide-2", createtime=epoch(OLD))
        staff = ["guide-1", "guide-2"] + (["guide-3"] if failing_staff else [])
        for staff_id in staff:
            await pg_pool.execute(INSERT_STAFF, tenant, staff_id)
        follows = [
            ("wm-1", "guide-1", "active", OLD),
            ("wm-3", "guide-1", "deleted", OLD - timedelta(hours=1)),
            ("wm-cdel", "guide-1", "deleted", OLD + timedelta(hours=2)),
            ("wm-4", "guide-2", "active", OLD),
            ("wm-5", "guide-2", "active", OLD),
            ("wm-6", "guide-2", "active", NOW),
        ]
        if failing_staff:
            follows.append(("wm-7", "guide-3", "active", OLD))
        for euid, staff_id, status, at in follows:
            await pg_pool.execute(INSERT_FOLLOW, tenant, euid, staff_id, status, at)

    return make


def by_staff(drift: Drift) -> dict[str, StaffDrift]:
    return {s.staff_id: s for s in drift.staff}


def summary(staff: StaffDrift) -> dict[str, Any]:
    return {
        "on_wecom": staff.on_wecom,
        "active_here": staff.active_here,
        "missing_here": sorted(item.external_contact.external_userid for item, _ in staff.missing_here),
        "gone_on_wecom": sorted(f.external_userid for f in staff.gone_on_wecom),
        "ended_here": staff.ended_here,
        "recent": staff.recent,
        "errcode": staff.errcode,
    }


async def test_dry_run_reports_the_drift_and_publishes_nothing(
    migrated: asyncpg.Pool, drifted_tenant: Setup, wecom: WeComClient, tenant: str
) -> None:
    await drifted_tenant()

    drift = await reconcile(migrated, wecom, BOX, tenant, dry_run=True, now=NOW)

    staff = by_staff(drift)
    assert list(staff) == ["guide-1", "guide-2", "guide-3"]
    assert summary(staff["guide-1"]) == {
        "on_wecom": 5,
        "active_here": 1,
        "missing_here": ["wm-2", "wm-3"],
        "gone_on_wecom": [],
        "ended_here": 1,
        "recent": 1,
        "errcode": None,
    }
    assert summary(staff["guide-2"]) == {
        "on_wecom": 1,
        "active_here": 3,
        "missing_here": [],
        "gone_on_wecom": ["wm-5"],
        "ended_here": 0,
        "recent": 1,
        "errcode": None,
    }
    assert summary(staff["guide-3"])["errcode"] == 60111
    assert summary(staff["guide-3"])["gone_on_wecom"] == []  # a refused listing is not "no friends"
    assert (drift.missing_here, drift.gone_on_wecom, drift.published) == (2, 1, 0)
    assert [s.staff_id for s in drift.failed_staff] == ["guide-3"]
    assert await migrated.fetch(SELECT_OUTBOX) == []


async def test_reconcile_repairs_the_drift_through_the_event_path(
    contact_worker: None,
    pg_pool: asyncpg.Pool,
    drifted_tenant: Setup,
    wecom: WeComClient,
    tenant: str,
    broker,
) -> None:
    await drifted_tenant()

    drift = await reconcile(pg_pool, wecom, BOX, tenant, now=NOW)

    assert drift.published == 3
    # The worker's relay publishes the outbox; its consume loop applies the events.
    published = await broker.published(pg_pool, "friend-added")
    assert len(published) == 2
    added_on_kafka = {e["data"]["external_userid"]: e for e in published}
    assert set(added_on_kafka) == {"wm-2", "wm-3"}
    two = added_on_kafka["wm-2"]
    assert (two["source"], two["tenant_id"], two["data"]["staff_id"]) == ("reconcile", tenant, "guide-1")
    assert two["data"]["state"] == "store-sh-012"
    assert datetime.fromisoformat(two["data"]["added_at"]) == OLD
    assert (two["data"]["name"], two["data"]["unionid"]) == ("Two", "oz-2")
    assert added_on_kafka["wm-3"]["data"]["add_way"] == 202
    deleted_on_kafka = await broker.read("friend-deleted")
    assert [e["data"]["external_userid"] for e in deleted_on_kafka] == ["wm-5"]
    deleted = deleted_on_kafka[0]
    assert deleted["source"] == "reconcile"
    assert (deleted["data"]["staff_id"], deleted["data"]["deleted_by"], deleted["data"]["source"]) == (
        "guide-2",
        "staff",
        "RECONCILE",
    )

    async def applied() -> bool:
        rows = {(r["external_userid"], r["staff_id"]): r for r in await pg_pool.fetch(SELECT_FOLLOWS, tenant)}
        return (
            rows.get(("wm-2", "guide-1"), {}).get("status") == "active"
            and rows[("wm-3", "guide-1")]["status"] == "active"
            and rows[("wm-5", "guide-2")]["status"] == "deleted"
        )

    await wait_for(applied, timeout=20)
    follows = {
        (r["external_userid"], r["staff_id"]): dict(r) for r in await pg_pool.fetch(SELECT_FOLLOWS, tenant)
    }
    assert (follows[("wm-5", "guide-2")]["deleted_by"], follows[("wm-5", "guide-2")]["delete_source"]) == (
        "staff",
        "RECONCILE",
    )
    assert follows[("wm-7", "guide-3")]["status"] == "active"  # its staff member could not be checked

    # Once applied, the same comparison finds nothing left to repair.
    again = await reconcile(pg_pool, wecom, BOX, tenant, dry_run=True, now=NOW)
    assert (again.missing_here, again.gone_on_wecom) == (0, 0)


async def test_a_second_run_before_the_worker_caught_up_repeats_the_same_event_ids(
    migrated: asyncpg.Pool, drifted_tenant: Setup, wecom: WeComClient, tenant: str
) -> None:
    await drifted_tenant()

    await reconcile(migrated, wecom, BOX, tenant, now=NOW)
    first = await migrated.fetch(SELECT_OUTBOX)
    await reconcile(migrated, wecom, BOX, tenant, now=NOW + timedelta(minutes=1))
    both = await migrated.fetch(SELECT_OUTBOX)

    assert len(first) == 3
    assert sorted((r["topic"], r["event_id"]) for r in both[3:]) == sorted(
        (r["topic"], r["event_id"]) for r in first
    )


async def test_pages_of_a_busy_staff_member_are_all_compared(
    migrated: asyncpg.Pool,
    standin: StandInServer,
    wecom_corp: Callable[..., Awaitable[Corp]],
    wecom: WeComClient,
    tenant: str,
) -> None:
    corp = await wecom_corp(tenant)
    for i in range(250):  # three pages of 100
        corp.add_friend(f"wm-{i:03d}", "guide-1", createtime=epoch(OLD))
    for i in range(0, 250, 2):
        await migrated.execute(INSERT_FOLLOW, tenant, f"wm-{i:03d}", "guide-1", "active", OLD)
    standin.directory.fail_next("externalcontact/batch/get_by_user", 45009)  # throttled once

    drift = await reconcile(migrated, wecom, BOX, tenant, dry_run=True, now=NOW)

    (staff,) = drift.staff
    assert (staff.on_wecom, staff.active_here, len(staff.missing_here), len(staff.gone_on_wecom)) == (
        250,
        125,
        125,
        0,
    )
    assert standin.directory.calls["externalcontact/batch/get_by_user"] == 4


async def test_a_tenant_without_a_secret_cannot_be_reconciled(
    migrated: asyncpg.Pool, wecom: WeComClient, tenant: str
) -> None:
    with pytest.raises(ReconcileError):
        await reconcile(migrated, wecom, BOX, tenant)


async def test_refused_credentials_stop_the_run(
    migrated: asyncpg.Pool, drifted_tenant: Setup, standin: StandInServer, wecom: WeComClient, tenant: str
) -> None:
    await drifted_tenant()
    standin.directory.corps[f"ww-{tenant}"].secret = "rotated-on-wecom"

    with pytest.raises(WeComError) as caught:
        await reconcile(migrated, wecom, BOX, tenant)

    assert caught.value.errcode == 40001
    assert await migrated.fetch(SELECT_OUTBOX) == []


# --- the command line ------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """``scrm contacts ...`` in a subprocess (the plugin entry point included); this loop keeps
    serving the stand-in meanwhile."""
    scrm = Path(sys.executable).with_name("scrm")
    proc = await asyncio.create_subprocess_exec(
        str(scrm),
        "contacts",
        *args,
        env={**os.environ, **env, "COLUMNS": "160"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def cli_env(pg_dsn: str, pg_schema: str, standin: StandInServer) -> dict[str, str]:
    """The command line's settings: this test's schema and the stand-in."""
    return {"SCRM_DATABASE_URL": pg_dsn, "SCRM_DB_SCHEMA": pg_schema, "SCRM_WECOM_API_BASE": standin.base_url}


async def test_cli_prints_the_drift_and_repairs_it(
    migrated: asyncpg.Pool, drifted_tenant: Setup, tenant: str, cli_env: dict[str, str]
) -> None:
    await drifted_tenant(failing_staff=False)
    code, out = await run_cli("reconcile", "--tenant", tenant, "--dry-run", env=cli_env)

    assert code == 0, out
    assert "staff=2 drifted=2 failed=0 missing_here=2 gone_on_wecom=1 ended_here=1 recent=2" in out
    assert "dry run: nothing published" in out
    assert "guide-1" in out and "guide-2" in out  # the per-staff table
    assert "wm-" not in out  # customers are counted, never named
    assert await migrated.fetch(SELECT_OUTBOX) == []

    code, out = await run_cli("reconcile", "--tenant", tenant, env=cli_env)

    assert code == 0, out
    assert "published=3" in out
    assert sorted(r["topic"] for r in await migrated.fetch(SELECT_OUTBOX)) == [
        "friend-added",
        "friend-added",
        "friend-deleted",
    ]


async def test_cli_exit_codes(
    migrated: asyncpg.Pool, drifted_tenant: Setup, tenant: str, cli_env: dict[str, str]
) -> None:
    code, out = await run_cli("reconcile", "--tenant", tenant, "--dry-run", env=cli_env)
    assert code == 2
    assert "no WeCom app secret" in out

    await drifted_tenant()  # guide-3 is unknown to WeCom
    code, out = await run_cli("reconcile", "--tenant", tenant, "--dry-run", env=cli_env)
    assert code == 1
    assert "failed=1" in out and "errcode 60111" in out
