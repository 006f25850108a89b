"""tag-svc at 1M profiles: segment preview time, and the processor's memory.

Seeding: a fresh schema (tag-svc's migrations) gets ``CONTACTS`` profiles of one tenant and their
facts from set-based SQL (``INSERT ... SELECT`` over ``generate_series``; pseudo-random through
``hashint4``, so every run seeds the same data): ``ORDERS`` orders over the last 365 days with 1-3
item lines (channels, stores and categories as in bench.tag_segments; ~600k buyers, a VIP group
buying more), 2% of them refunded, ``MESSAGES`` messages, one friend-add per contact plus re-adds
of one in ten, tags on a share of the contacts, first adds spread over three years (recent ones
more often). Facts go in in day order, as they arrive in production; item lines carry their order's
contact and day, as the processor writes them. The secondary indexes (and any foreign key of these
tables) are dropped for the load and rebuilt after it (the same definitions), then
VACUUM ANALYZE (as autovacuum would leave the tables) and a CHECKPOINT (so the load's writes are
not flushed during the measurements). Figure: the seconds all of that took.

Preview: ``POST /v1/segments/preview`` as the endpoint runs it (``catalog.preview_rule`` with the
tenant's today and RFM thresholds and the default settings: the 1M contacts split into
``SCRM_TAG_PREVIEW_PARALLELISM`` key ranges counted side by side in one snapshot, each one
statement giving its count and its first 20 matches, planned for the window, without JIT) for
each of the 20 rules of bench.tag_segments, ``RUNS`` times: the first run is reported as cold, the best of the others as
the warm time. Figures: warm time per rule, p50 and max over the rules, rules over the goal.

Memory: the 20 segments are defined live with their members as a backfill leaves them (filled by
``INSERT ... SELECT`` with the same compiled predicates), then the processor
(``build_segment_handler`` driven by ``BatchConsumer`` with the outbox relay beside it, as
bench.tag_segments runs it) runs in a subprocess over ``EVENTS`` order-placed events of contacts
spread over the 1M, so the RSS is its own: before the first poll, after the last one, and the
peak (VmHWM), with the events/s it reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import BenchContext, Figure
from bench.tag_segments import (
    PARTITIONS,
    RULES,
    TENANT,
    define_segments,
    order_event,
    produce,
    standalone_processor,
)
from scrm_shared.db.migrations import migrate_service
from scrm_shared.db.pool import create_pool
from scrm_shared.kafka.topics import TopicSpec, ensure_topics, platform_topics
from tag_svc.config import TagSettings
from tag_svc.processor.store import catalog
from tag_svc.processor.tenants import ensure_rfm, timezones
from tag_svc.segments import SqlParams, compile_sql, day_in, parse_rule, uses_rfm

NAME = "tag_profiles"
CONTACTS = 1_000_000
ORDERS = 3_000_000
MESSAGES = 1_500_000
EVENTS = 50_000
RUNS = 3
GOAL_MS = 1000
CHILD_TIMEOUT_S = 600
MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "tag-svc" / "migrations"
TABLES = ["profiles", "profile_facts", "profile_fact_lines"]

# The catalogue the orders draw from (categories as bench.tag_segments: 护肤, 彩妆, 母婴, ...).
CATALOGUE = [
    ("SK-FTE-230", "护肤", "1540.00"),
    ("SK-LXN-50", "护肤", "890.00"),
    ("LAN-ADV-30", "护肤", "1080.00"),
    ("EST-ANR-50", "护肤", "760.00"),
    ("SHI-ULT-50", "护肤", "690.00"),
    ("CLN-MST-125", "护肤", "310.00"),
    ("KIE-UFC-50", "护肤", "420.00"),
    ("FRS-SOY-150", "护肤", "280.00"),
    ("MAC-RB", "彩妆", "190.00"),
    ("YSL-RP-21", "彩妆", "350.00"),
    ("ARM-LS-405", "彩妆", "380.00"),
    ("NARS-BL-01", "彩妆", "290.00"),
    ("DIOR-999", "彩妆", "350.00"),
    ("CPB-FDN-10", "彩妆", "560.00"),
    ("FEI-A2", "母婴", "328.00"),
    ("AP-NB1-800", "母婴", "268.00"),
    ("PJ-WIP-80", "母婴", "158.00"),
    ("MOM-LTN-300", "母婴", "98.00"),
    ("JML-WS-100", "香水", "1250.00"),
    ("CHL-N5-50", "香水", "1380.00"),
    ("DIP-DOS-75", "香水", "1020.00"),
    ("AES-HB-500", "个护", "310.00"),
    ("SOD-SH-400", "个护", "120.00"),
    ("OLY-BW-300", "个护", "89.90"),
]

# hashint4 of a seeded number, made non-negative: the seeding's only source of randomness.
_H = "(hashint4({}) & 2147483647)"
_STORE = "(ARRAY['sh', 'bj', 'gz', 'hz'])[1 + {0} % 4] || '-0' || lpad(({0} / 4 % 20 + 1)::text, 2, '0')"
_STAFF = "'staff-' || lpad(({})::text, 3, '0')"

# Arguments: $1 tenant, $2 today (tenant-local), $3 contacts.
SEED_PROFILES = f"""
INSERT INTO profiles (tenant_id, external_userid, state, store_id, staff_ids, gender, status,
                      first_added_at, first_added_day, tags)
SELECT $1, 'wm' || lpad(i::text, 8, '0'),
       (ARRAY['poster-sh012', 'poster-sh013', 'poster-bj001', 'qr-counter', 'live-0618', 'mall-banner',
              NULL])[1 + h1 % 7],
       CASE WHEN h1 % 4 <> 3 THEN {_STORE.format("h3")} END,
       CASE WHEN h2 % 10 = 0 THEN '{{}}'::text[]
            WHEN h2 % 10 < 3 THEN ARRAY[{_STAFF.format("h3 % 300")}, {_STAFF.format("h3 % 300 + 300")}]
            ELSE ARRAY[{_STAFF.format("h3 % 300")}] END,
       (ARRAY[0, 1, 2, 2, NULL]::smallint[])[1 + h4 % 5],
       CASE WHEN h2 % 10 = 0 THEN 'lost' ELSE 'active' END,
       (($2::date - d) + make_interval(secs => h5 % 86400)) AT TIME ZONE 'Asia/Shanghai',
       $2::date - d,
       array_remove(ARRAY[CASE WHEN h6 % 100 < 15 THEN 'VIP' END, CASE WHEN h6 % 100 >= 95 THEN '高价值' END,
                          CASE WHEN d < 30 THEN '新客' END], NULL)
FROM (SELECT i, {_H.format("i")} AS h1, {_H.format("i # 11")} AS h2, {_H.format("i # 22")} AS h3,
             {_H.format("i # 33")} AS h4, {_H.format("i # 44")} AS h5, {_H.format("i # 55")} AS h6,
             floor(1095 * power({_H.format("i # 66")} / 2147483648.0::float8, 1.5))::int AS d
      FROM generate_series(0, $3::int - 1) AS i) x
"""

# One friend-add per contact on its first-added day, and a later re-add of one contact in ten.
SEED_FRIEND_ADDS = f"""
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, store_id, state)
SELECT * FROM (
    SELECT p.tenant_id, 'friend-added',
           coalesce(p.staff_ids[1], 'staff-000') || '@' || to_char(p.first_added_at AT TIME ZONE 'UTC',
           'YYYY-MM-DD"T"HH24:MI:SS+00:00') || '/' || p.external_userid,
           p.external_userid, p.first_added_day, p.store_id, p.state
    FROM profiles p WHERE p.tenant_id = $1 AND p.first_added_day IS NOT NULL
    UNION ALL
    SELECT p.tenant_id, 'friend-added', {_STAFF.format("h % 300")} || '@re/' || p.external_userid,
           p.external_userid, p.first_added_day + h % ($2::date - p.first_added_day + 1), p.store_id,
           (ARRAY['poster-sh012', 'qr-counter', 'live-0618'])[1 + h % 3]
    FROM (SELECT *, {_H.format("hashtext(external_userid)")} AS h FROM profiles) p
    WHERE p.tenant_id = $1 AND p.first_added_day IS NOT NULL AND p.h % 10 = 0
) adds ORDER BY 5
"""

# Arguments: $1 tenant, $2 today, $3 messages, $4 contacts.
SEED_MESSAGES = f"""
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, kind, campaign_id)
SELECT $1, 'message-sent', 'MSG' || lpad(n::text, 10, '0'),
       'wm' || lpad(({_H.format("n")} % $4::int)::text, 8, '0'), $2::date - {_H.format("n # 201")} % 365,
       k.kind, CASE WHEN k.kind = 'broadcast' THEN 'cmp-' || lpad(({_H.format("n # 203")} % 40)::text, 3, '0') END
FROM generate_series(1, $3::int) AS n,
     LATERAL (SELECT (ARRAY['broadcast', 'broadcast', 'broadcast', 'broadcast', 'broadcast', 'private',
                            'private', 'private', 'welcome', 'moments'])[1 + {_H.format("n # 202")} % 10] AS kind) k
ORDER BY 5
"""

# Orders: $1 tenant, $2 today, $3 orders, $4 contacts, $5 skus, $6 categories, $7 prices. A contact
# among 60% of them buys (uniformly), a tenth of the orders go to a VIP group of 3%; the contact
# number is scattered over the key space (x 7919 mod contacts). Lines: 1 (50%), 2 (30%) or 3.
_ORDERS = f"""
SELECT n, h, 'ORD' || lpad(n::text, 10, '0') AS key,
       'wm' || lpad(((CASE WHEN h % 10 = 0 THEN floor(0.03 * $4::int * {_H.format("n # 101")} / 2147483648.0::float8)
                           ELSE floor(0.6 * $4::int * {_H.format("n # 102")} / 2147483648.0::float8) END)::bigint
                     * 7919 % $4::int)::text, 8, '0') AS euid,
       $2::date - {_H.format("n # 103")} % 365 AS day,
       (ARRAY['pos', 'pos', 'pos', 'pos', 'pos', 'mall', 'mall', 'mini-program', 'mini-program',
              'third-party'])[1 + {_H.format("n # 104")} % 10] AS channel,
       {_H.format("n # 105")} AS hs,
       (ARRAY[1, 1, 1, 1, 1, 2, 2, 2, 3, 3])[1 + {_H.format("n # 106")} % 10] AS nlines
FROM (SELECT n, {_H.format("n")} AS h FROM generate_series(1, $3::int) AS n) g
"""
# Line g of order n: catalogue entry k, quantity q (x.sku, x.category, x.amount).
_LINE = f"""LATERAL (
    SELECT ($5::text[])[k] AS sku, ($6::text[])[k] AS category, ($7::numeric[])[k] * q AS amount
    FROM (SELECT 1 + h % cardinality($5::text[]) AS k, 1 + (h / 24 % 7 = 0)::int AS q
          FROM (SELECT {_H.format("o.n * 4 + g")} AS h) AS hh) AS kq) AS x"""
SEED_ORDERS = f"""
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, channel, store_id, amount)
SELECT $1, 'order-placed', o.key, o.euid, o.day, o.channel,
       CASE WHEN o.channel = 'pos' THEN {_STORE.format("o.hs")} END,
       CASE WHEN o.h % 5 = 0 THEN round(t.total * 0.9, 2) ELSE t.total END
FROM ({_ORDERS}) o,
     LATERAL (SELECT sum(x.amount) AS total FROM generate_series(0, o.nlines - 1) AS g, {_LINE}) t
ORDER BY o.day
"""
# Lines carry their order's contact and day, as the processor writes them (migration 0007).
SEED_ORDER_LINES = f"""
INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, external_userid, day, category, sku,
                                amount)
SELECT $1, 'order-placed', o.key, g, o.euid, o.day, x.category, x.sku, x.amount
FROM ({_ORDERS}) o, generate_series(0, o.nlines - 1) AS g, {_LINE}
"""
# 2% of the orders are refunded: their first line, on the order's day with its channel and store.
SEED_REFUNDS = f"""
INSERT INTO profile_facts (tenant_id, event_type, event_key, external_userid, day, channel, store_id, amount)
SELECT $1, 'order-refunded', 'RF' || substr(o.key, 4), o.euid, o.day, o.channel,
       CASE WHEN o.channel = 'pos' THEN {_STORE.format("o.hs")} END, -x.amount
FROM ({_ORDERS}) o, generate_series(0, 0) AS g, {_LINE}
WHERE o.h % 50 = 7
ORDER BY o.day
"""
SEED_REFUND_LINES = f"""
INSERT INTO profile_fact_lines (tenant_id, event_type, event_key, line_no, external_userid, day, category, sku,
                                amount)
SELECT $1, 'order-refunded', 'RF' || substr(o.key, 4), 0, o.euid, o.day, x.category, x.sku, -x.amount
FROM ({_ORDERS}) o, generate_series(0, 0) AS g, {_LINE}
WHERE o.h % 50 = 7
"""

SECONDARY_INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = current_schema() AND i.tablename = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conname = i.indexname AND c.connamespace = current_schema()::regnamespace)
"""
FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS tab, c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
  AND c.conrelid::regclass::text = ANY($1::text[])
"""
FACT_COUNTS = "SELECT event_type, count(*) AS n FROM profile_facts WHERE tenant_id = $1 GROUP BY 1 ORDER BY 1"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def seed(pool: asyncpg.Pool, today: date) -> dict[str, int]:
    """The profiles and facts of ``TENANT`` (see the module docstring); returns facts per type."""
    skus, cats, prices = (list(c) for c in zip(*CATALOGUE, strict=True))
    orders = (TENANT, today, ORDERS, CONTACTS, skus, cats, [Decimal(p) for p in prices])
    async with pool.acquire() as a, pool.acquire() as b:
        indexes = await a.fetch(SECONDARY_INDEXES, TABLES)
        keys = await a.fetch(FOREIGN_KEYS, TABLES)
        for k in keys:
            await a.execute(f"ALTER TABLE {_ident(k['tab'])} DROP CONSTRAINT {_ident(k['conname'])}")
        for i in indexes:
            await a.execute(f"DROP INDEX {_ident(i['indexname'])}")

        async def contacts() -> None:
            await a.execute(SEED_PROFILES, TENANT, today, CONTACTS)
            await a.execute(SEED_FRIEND_ADDS, TENANT, today)
            await a.execute(SEED_MESSAGES, TENANT, today, MESSAGES, CONTACTS)

        async def purchases() -> None:
            await b.execute(SEED_ORDERS, *orders)
            await b.execute(SEED_ORDER_LINES, *orders)
            await b.execute(SEED_REFUNDS, *orders)
            await b.execute(SEED_REFUND_LINES, *orders)

        phases = [time.perf_counter()]
        await asyncio.gather(contacts(), purchases())
        phases.append(time.perf_counter())
        await a.execute("SET maintenance_work_mem = '256MB'")
        for i in indexes:
            await a.execute(i["indexdef"])
        for k in keys:
            await a.execute(
                f"ALTER TABLE {_ident(k['tab'])} ADD CONSTRAINT {_ident(k['conname'])} {k['def']}"
            )
        phases.append(time.perf_counter())
        for table in TABLES:
            await a.execute(f"VACUUM ANALYZE {_ident(table)}")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await a.execute("CHECKPOINT")  # the load's writes are not flushed during the previews
        phases.append(time.perf_counter())
        load, build, vacuum = (end - start for start, end in itertools.pairwise(phases))
        print(f"  {NAME}: seeding: rows {load:.0f} s, indexes and keys {build:.0f} s, vacuum {vacuum:.0f} s")
        return {r["event_type"]: r["n"] for r in await a.fetch(FACT_COUNTS, TENANT)}


# ---------------------------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------------------------


async def previews(pool: asyncpg.Pool, today: date) -> tuple[list[dict[str, Any]], float]:
    """Per rule: matches, cold and warm seconds of the preview as the endpoint runs it
    (``catalog.preview_rule`` with the default settings: contact ranges side by side, each one
    statement for its count and sample, custom plans, no JIT); and the seconds ``ensure_rfm``
    took to derive the tenant's thresholds (first use)."""
    started = time.perf_counter()
    rfm = await ensure_rfm(pool, TENANT, today)
    derive_s = time.perf_counter() - started
    settings = TagSettings()
    out = []
    for n, data in enumerate(RULES):
        rule = parse_rule(data)
        params = SqlParams(today=today, rfm=rfm if uses_rfm(rule) else None)
        times, count = [], 0
        for _ in range(RUNS):
            started = time.perf_counter()
            count, _ = await catalog.preview_rule(
                pool,
                TENANT,
                rule,
                params,
                20,
                parallelism=settings.tag_preview_parallelism,
                min_contacts=settings.tag_preview_split_min_contacts,
                min_cost=settings.tag_preview_split_min_cost,
            )
            times.append(time.perf_counter() - started)
        warm = min(times[1:])
        out.append({"rule": n, "count": count, "cold": times[0], "warm": warm})
        print(
            f"  {NAME} rule {n:2d}: {count:>7} contacts, preview {times[0] * 1000:6.0f} ms cold, "
            f"{warm * 1000:6.0f} ms warm",
            flush=True,
        )
    return out, derive_s


# ---------------------------------------------------------------------------------------------
# The processor's memory, in its own process
# ---------------------------------------------------------------------------------------------


def _memory_kb() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in kB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def _process(dsn: str, schema: str, bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    async with standalone_processor(
        dsn, bootstrap, schema, topic, range(PARTITIONS), client_id="bench-profiles-worker"
    ) as consumer:
        before = _memory_kb()
        started = time.perf_counter()
        while consumer.stats.consumed < events:
            await consumer.poll_once()
        elapsed = time.perf_counter() - started
        after = _memory_kb()
    return {
        "before_kb": before["VmRSS"],
        "after_kb": after["VmRSS"],
        "peak_kb": after["VmHWM"],
        "seconds": elapsed,
    }


def processor_child() -> None:
    """Entry point of the processor subprocess: arguments from the environment, figures as one
    JSON line on stdout."""
    env = os.environ
    result = asyncio.run(
        _process(
            env["BENCH_DSN"],
            env["BENCH_SCHEMA"],
            env["BENCH_BOOTSTRAP"],
            env["BENCH_TOPIC"],
            int(env["BENCH_EVENTS"]),
        )
    )
    print(json.dumps(result), flush=True)


# The members of a live segment as its backfill leaves them, computed by the same SQL engine.
FILL_MEMBERS = """
INSERT INTO segment_members (tenant_id, segment_id, external_userid, entered_at)
SELECT p.tenant_id, $2, p.external_userid, now() FROM profiles p
WHERE p.tenant_id = $1 AND p.status <> 'erased' AND ({predicate})
"""
SET_SIZES = """
UPDATE segments s SET size = (SELECT count(*) FROM segment_members m
                              WHERE m.tenant_id = s.tenant_id AND m.segment_id = s.segment_id)
WHERE s.tenant_id = $1
"""


async def fill_members(pool: asyncpg.Pool, today: date, segment_ids: list[uuid.UUID]) -> None:
    """Every segment's members today, as if backfilled (set-based, through ``compile_sql``)."""
    rfm = await ensure_rfm(pool, TENANT, today)
    for segment_id, data in zip(segment_ids, RULES, strict=True):
        predicate = compile_sql(parse_rule(data), SqlParams(today=today, rfm=rfm), first_arg=3)
        await pool.execute(FILL_MEMBERS.format(predicate=predicate.sql), TENANT, segment_id, *predicate.args)
    await pool.execute(SET_SIZES, TENANT)


async def processor_memory(ctx: BenchContext, pool: asyncpg.Pool, schema: str, today: date) -> dict[str, Any]:
    """Define the 20 segments live with their members, produce the orders, run the processor in a
    subprocess."""
    started = time.perf_counter()
    await fill_members(pool, today, await define_segments(pool))
    members = await pool.fetchval("SELECT count(*) FROM segment_members")
    print(f"  {NAME}: {members} memberships of the 20 segments in {time.perf_counter() - started:.0f} s")
    topic = f"bench-profiles-orders-{uuid.uuid4().hex[:8]}"
    await ensure_topics(ctx.bootstrap, [TopicSpec(topic, partitions=PARTITIONS)])
    rng = random.Random(17)
    now = datetime.now(UTC)
    await produce(
        ctx.bootstrap,
        topic,
        [order_event(rng, n, f"wm{rng.randrange(CONTACTS):08d}", now) for n in range(EVENTS)],
    )
    env = {
        **os.environ,
        "BENCH_DSN": ctx.dsn,
        "BENCH_SCHEMA": schema,
        "BENCH_BOOTSTRAP": ctx.bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_EVENTS": str(EVENTS),
        "SCRM_LOG_LEVEL": "WARNING",
    }
    env.pop("SCRM_OTLP_ENDPOINT", None)
    log_path = ctx.workdir / f"{NAME}-processor.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from bench.tag_profiles import processor_child; processor_child()",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"processor subprocess exited with {proc.returncode}; see {log_path}")
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------


async def run(ctx: BenchContext) -> list[Figure]:
    schema = f"bench_prof_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(ctx.dsn, schema=schema, min_size=2, max_size=8)
    try:
        await migrate_service(pool, schema=schema, directory=MIGRATIONS)
        await ensure_topics(ctx.bootstrap, platform_topics(partitions=PARTITIONS))
        zones = await timezones(pool, [TENANT])
        today = day_in(datetime.now(UTC), zones[TENANT])
        started = time.perf_counter()
        facts = await seed(pool, today)
        seeded_s = time.perf_counter() - started
        print(f"  {NAME}: seeded {CONTACTS} profiles, facts {facts} in {seeded_s:.0f} s", flush=True)
        rules, derive_s = await previews(pool, today)
        memory = await processor_memory(ctx, pool, schema, today)
    finally:
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()

    warm = sorted(r["warm"] * 1000 for r in rules)
    mb = 1024
    figures = [
        Figure(
            NAME,
            "seed_seconds",
            seeded_s,
            "s",
            f"{CONTACTS:,} profiles, {sum(facts.values()):,} facts (set-based SQL, indexes rebuilt, VACUUM ANALYZE)",
        ),
        Figure(
            NAME, "rfm_thresholds_derive_s", derive_s, "s", "ensure_rfm on first use (medians of the buyers)"
        ),
        Figure(
            NAME,
            "preview_p50_ms",
            statistics.median(warm),
            "ms",
            f"warm, 20 rules, count + sample; goal <= {GOAL_MS}",
        ),
        Figure(NAME, "preview_max_ms", warm[-1], "ms", f"warm, 20 rules, count + sample; goal <= {GOAL_MS}"),
        Figure(
            NAME,
            "preview_rules_over_goal",
            float(sum(w > GOAL_MS for w in warm)),
            "rules",
            f"of 20, > {GOAL_MS} ms",
        ),
    ]
    for r in rules:
        summary = json.dumps(RULES[r["rule"]], ensure_ascii=False, separators=(",", ":"))
        figures.append(
            Figure(
                NAME,
                f"preview_ms_rule{r['rule']:02d}",
                r["warm"] * 1000,
                "ms",
                f"{r['count']:,} match; cold {r['cold'] * 1000:.0f} ms; {summary[:50]}",
            )
        )
    figures += [
        Figure(
            NAME,
            "processor_events_per_s",
            EVENTS / memory["seconds"],
            "events/s",
            f"{EVENTS:,} orders over 1M",
        ),
        Figure(
            NAME,
            "processor_rss_before_mb",
            memory["before_kb"] / mb,
            "MB",
            "subprocess, before the first poll",
        ),
        Figure(NAME, "processor_rss_after_mb", memory["after_kb"] / mb, "MB", "after the last event"),
        Figure(NAME, "processor_rss_peak_mb", memory["peak_kb"] / mb, "MB", "VmHWM"),
    ]
    return figures
