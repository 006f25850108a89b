"""Item lines carry their fact's contact and day (migration 0007): the migration fills them for
lines already stored, the processor writes them, erasure deletes the lines itself, previews read
line-filtered windows from the lines alone, and the processor's statements never take the
previews' partial indexes."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from scrm_shared.db.migrations import migrate_service
from tag_svc.processor.store import identity, profiles
from tag_svc.segments import Fact, FactLine, Profile, SqlParams, compile_sql, evaluate, parse_rule

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
TODAY = date(2024, 5, 1)
TENANT = "acme"
# The indexes only previews may use: each needs a condition on day to be provable.
PREVIEW_INDEXES = (
    "profile_fact_lines_category_idx",
    "profile_fact_lines_sku_idx",
    "profile_fact_lines_category_contact_idx",
    "profile_facts_orders_idx",
    "profile_facts_state_idx",
    "profile_facts_window_idx",
)
SELECT_LINES = """
SELECT event_type, event_key, line_no, external_userid, day, category, sku, amount
FROM profile_fact_lines WHERE tenant_id = $1 ORDER BY event_type, event_key, line_no
"""


@pytest_asyncio.fixture
async def pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await migrate_service(pg_pool, schema=pg_schema, directory=MIGRATIONS)
    return pg_pool


def _order(key: str, days_ago: int, *lines: tuple[str, str, str], channel: str = "pos") -> Fact:
    items = tuple(FactLine(c, s, Decimal(a)) for c, s, a in lines)
    return Fact(
        "order-placed",
        key,
        TODAY - timedelta(days=days_ago),
        channel,
        amount=sum((i.amount for i in items), Decimal(0)),
        lines=items,
    )


def _refund(key: str, order: Fact, *lines: tuple[str, str, str]) -> Fact:
    items = tuple(FactLine(c, s, -Decimal(a)) for c, s, a in lines)
    return Fact(
        "order-refunded",
        key,
        order.day,
        order.channel,
        amount=sum((i.amount for i in items), Decimal(0)),
        lines=items,
    )


async def test_migration_gives_existing_lines_their_facts_contact_and_day(pg_pool, pg_schema, tmp_path):
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("000[1-6]_*.sql")):
        shutil.copy(path, before / path.name)
    await migrate_service(pg_pool, schema=pg_schema, directory=before)
    await pg_pool.executemany(
        "INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, amount) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (TENANT, "order-placed", "o1", "wm1", date(2024, 4, 2), Decimal("150")),
            (TENANT, "order-refunded", "r1", "wm1", date(2024, 4, 2), Decimal("-100")),
            (TENANT, "order-placed", "o2", "wm2", date(2023, 1, 9), Decimal("30")),
            (TENANT, "message-sent", "m1", "wm2", date(2024, 4, 30), Decimal("0")),
        ],
    )
    await pg_pool.executemany(
        "INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, category, sku, amount) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (TENANT, "order-placed", "o1", 0, "护肤", "A", Decimal("100")),
            (TENANT, "order-placed", "o1", 1, "彩妆", "B", Decimal("50")),
            (TENANT, "order-refunded", "r1", 0, "护肤", "A", Decimal("-100")),
            (TENANT, "order-placed", "o2", 0, "护肤", "C", Decimal("30")),
        ],
    )

    applied = await migrate_service(pg_pool, schema=pg_schema, directory=MIGRATIONS)

    assert "service/0007_fact_lines_day.sql" in applied
    assert [tuple(r) for r in await pg_pool.fetch(SELECT_LINES, TENANT)] == [
        ("order-placed", "o1", 0, "wm1", date(2024, 4, 2), "护肤", "A", Decimal("100")),
        ("order-placed", "o1", 1, "wm1", date(2024, 4, 2), "彩妆", "B", Decimal("50")),
        ("order-placed", "o2", 0, "wm2", date(2023, 1, 9), "护肤", "C", Decimal("30")),
        ("order-refunded", "r1", 0, "wm1", date(2024, 4, 2), "护肤", "A", Decimal("-100")),
    ]
    not_null = await pg_pool.fetch(
        "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = 'profile_fact_lines'::regclass "
        "AND attname IN ('external_userid', 'day') ORDER BY attname"
    )
    assert [tuple(r) for r in not_null] == [("day", True), ("external_userid", True)]
    constraints = await pg_pool.fetch(
        # PostgreSQL 18 (the embedded wheel) also lists NOT NULL as constraints ('n'): checked above.
        "SELECT contype::text FROM pg_constraint WHERE conrelid = 'profile_fact_lines'::regclass "
        "AND contype <> 'n' ORDER BY 1"
    )
    assert [r["contype"] for r in constraints] == ["p"]  # the primary key; no foreign key


async def test_processor_writes_lines_with_their_facts_contact_and_day(pool):
    order = _order("o1", 3, ("护肤", "A", "100"), ("彩妆", "B", "60"))
    async with pool.acquire() as conn, conn.transaction():
        await profiles.insert_facts(
            conn, TENANT, [("wm1", order), ("wm1", _refund("r1", order, ("护肤", "A", "100")))]
        )
        # The same order again (a re-sent event), even under another contact, adds no line.
        await profiles.insert_facts(conn, TENANT, [("wm2", order)])
    assert [tuple(r) for r in await pool.fetch(SELECT_LINES, TENANT)] == [
        ("order-placed", "o1", 0, "wm1", TODAY - timedelta(days=3), "护肤", "A", Decimal("100")),
        ("order-placed", "o1", 1, "wm1", TODAY - timedelta(days=3), "彩妆", "B", Decimal("60")),
        ("order-refunded", "r1", 0, "wm1", TODAY - timedelta(days=3), "护肤", "A", Decimal("-100")),
    ]


async def test_a_history_is_read_with_its_lines_inline_and_older_facts_through_the_lines_table(pool):
    """Facts carry a copy of their lines (migration 0012): reading a history back needs no
    lookup per fact. Facts written before it (no copy) are read through the lines table, alike."""
    order = _order("o1", 3, ("护肤", "A", "100.50"), ("彩妆", "B", "60"))
    refund = _refund("r1", order, ("护肤", "A", "100.50"))
    plain = _order("o2", 1)  # no lines
    async with pool.acquire() as conn, conn.transaction():
        await profiles.insert_facts(conn, TENANT, [("wm1", order), ("wm1", refund), ("wm1", plain)])
    inline = await pool.fetch(
        "SELECT event_key, lines::text AS lines FROM profile_facts WHERE tenant_id = $1 ORDER BY event_key",
        TENANT,
    )
    assert [(r["event_key"], json.loads(r["lines"])) for r in inline] == [
        ("o1", [["护肤", "A", "100.50"], ["彩妆", "B", "60"]]),
        ("o2", []),
        ("r1", [["护肤", "A", "-100.50"]]),
    ]
    types = ["order-placed", "order-refunded"]
    async with pool.acquire() as conn:
        read = await profiles.load_facts(conn, TENANT, ["wm1"], types, lines=True)
        plan = await _plan(conn, profiles.SELECT_FACTS_WITH_LINES, TENANT, ["wm1"], types, analyze=True)
    assert sorted(read["wm1"], key=lambda f: f.key) == [order, plain, refund]
    assert "never executed" in plan  # no line was looked up

    await pool.execute("UPDATE profile_facts SET lines = NULL")  # as written before 0012
    async with pool.acquire() as conn:
        assert sorted(
            (await profiles.load_facts(conn, TENANT, ["wm1"], types, lines=True))["wm1"], key=lambda f: f.key
        ) == [order, plain, refund]


async def test_erasure_deletes_the_contacts_lines_and_only_theirs(pool):
    erased, kept = _order("o1", 1, ("护肤", "A", "100")), _order("o2", 1, ("护肤", "A", "100"))
    async with pool.acquire() as conn, conn.transaction():
        await profiles.insert_facts(
            conn,
            TENANT,
            [("wm1", erased), ("wm1", _refund("r1", erased, ("护肤", "A", "40"))), ("wm2", kept)],
        )
        # Another tenant's contact of the same id keeps everything.
        await profiles.insert_facts(conn, "other", [("wm1", _order("o1", 1, ("护肤", "A", "100")))])
    async with pool.acquire() as conn, conn.transaction():
        await profiles.erase(conn, TENANT, ["wm1"])
    assert [(r["event_key"], r["external_userid"]) for r in await pool.fetch(SELECT_LINES, TENANT)] == [
        ("o2", "wm2")
    ]
    assert [(r["event_key"], r["external_userid"]) for r in await pool.fetch(SELECT_LINES, "other")] == [
        ("o1", "wm1")
    ]
    assert await pool.fetchval("SELECT count(*) FROM profile_facts WHERE tenant_id = $1", TENANT) == 1


async def test_category_over_a_long_window_counts_through_processor_written_lines(pool):
    """A 3650-day category window sees an order from nine years ago and none from before it; an
    order with two matching lines counts once; refunded lines lower the category's amount."""
    old = _order("o-old", 3300, ("护肤", "A", "800"))
    twice = _order("o-two", 10, ("护肤", "A", "100"), ("护肤", "B", "50"), ("彩妆", "C", "30"))
    outside = _order("o-out", 3650, ("护肤", "A", "900"))
    contacts = {
        "wm-old-and-new": (old, twice, _refund("r-two", twice, ("护肤", "A", "100"))),
        "wm-one-order": (_order("o-one", 10, ("护肤", "A", "100"), ("护肤", "B", "50")),),
        "wm-too-old": (outside,),
        "wm-makeup": (_order("o-mk", 5, ("彩妆", "C", "2000")),),
    }
    async with pool.acquire() as conn, conn.transaction():
        await profiles.insert_facts(
            conn, TENANT, [(euid, f) for euid, facts in contacts.items() for f in facts]
        )
        await conn.executemany(
            "INSERT INTO profiles (tenant_id, external_userid) VALUES ($1, $2)",
            [(TENANT, e) for e in contacts],
        )
    rules = {
        "two skincare orders in 3650 days": (
            {"event": "order-placed", "count": {"gte": 2}, "within_days": 3650, "category": "护肤"},
            {"wm-old-and-new"},
        ),
        "one skincare order at most": (
            {"event": "order-placed", "count": {"lte": 1}, "within_days": 3650, "category": "护肤"},
            {"wm-one-order", "wm-too-old", "wm-makeup"},
        ),
        "skincare amount >= 850 in 3650 days": (
            {"event": "order-placed", "amount": {"gte": "850"}, "within_days": 3650, "category": "护肤"},
            {"wm-old-and-new"},  # 800 + 150 - 100
        ),
        "skincare at a pos in 3650 days": (
            {
                "event": "order-placed",
                "count": {"gte": 1},
                "within_days": 3650,
                "category": "护肤",
                "channel": "pos",
            },
            {"wm-old-and-new", "wm-one-order"},
        ),
        "no skincare in 3650 days": (
            {"no_event": "order-placed", "within_days": 3650, "category": "护肤"},
            {"wm-too-old", "wm-makeup"},
        ),
    }
    for name, (data, expected) in rules.items():
        rule = parse_rule(data)
        predicate = compile_sql(rule, SqlParams(today=TODAY), first_arg=2)
        rows = await pool.fetch(
            f"SELECT p.external_userid FROM profiles p WHERE p.tenant_id = $1 AND {predicate.sql}",
            TENANT,
            *predicate.args,
        )
        assert {r["external_userid"] for r in rows} == expected, name
        by_python = {
            euid
            for euid, facts in contacts.items()
            if evaluate(rule, Profile(TENANT, euid, facts=facts), TODAY)
        }
        assert by_python == expected, name


async def _plan(conn: asyncpg.Connection, sql: str, *args: object, analyze: bool = False) -> str:
    explain = "EXPLAIN (ANALYZE, COSTS OFF)" if analyze else "EXPLAIN"
    return "\n".join(r[0] for r in await conn.fetch(f"{explain} {sql}", *args))


async def test_processor_statements_never_take_the_preview_indexes(pool):
    """On tables never analyzed (as after a deploy), the processor's reads and erasure by contact
    or by fact key cannot use an index that needs a condition on day."""
    facts = [
        (f"wm{n % 50}", _order(f"o{n}", n % 400, ("护肤", "A", "10"), ("彩妆", "B", "5")))
        for n in range(2000)
    ]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await profiles.insert_facts(conn, TENANT, facts)
        euids, types = ["wm1", "wm2"], ["order-placed", "order-refunded"]
        plans = [
            await _plan(conn, profiles.SELECT_FACTS, TENANT, euids, types),
            await _plan(conn, profiles.SELECT_FACTS_WITH_LINES, TENANT, euids, types),
            await _plan(conn, profiles.ERASE_LINES, TENANT, euids),
            await _plan(conn, profiles.ERASE_FACTS, TENANT, euids),
            await _plan(conn, identity.SELECT_ORDER_FACTS, TENANT, ["o1", "o2"]),
        ]
    for plan in plans:
        assert not [name for name in PREVIEW_INDEXES if name in plan], plan


async def test_a_category_window_reads_the_lines_alone(pool):
    """Without a header filter, an item-filtered window reads no fact: the lines carry the contact
    and the day it groups and bounds by."""
    facts = [(f"wm{n % 50}", _order(f"o{n}", n % 400, ("护肤", "A", "10"))) for n in range(500)]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await profiles.insert_facts(conn, TENANT, facts)
        for within in (30, 3650):
            for metric in ({"count": {"gte": 1}}, {"count": {"gte": 2}}, {"amount": {"gte": "20"}}):
                rule = parse_rule(
                    {"event": "order-placed", **metric, "within_days": within, "category": "护肤"}
                )
                predicate = compile_sql(rule, SqlParams(today=TODAY), first_arg=2)
                plan = await _plan(
                    conn,
                    f"SELECT count(*) FROM profiles p WHERE p.tenant_id = $1 AND {predicate.sql}",
                    TENANT,
                    *predicate.args,
                )
                assert " on profile_fact_lines l" in plan, plan
                assert " on profile_facts " not in plan, plan
