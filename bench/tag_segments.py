"""tag-svc's live segment processor: throughput with 20 live segments, and order-to-member latency.

Throughput: ``EVENTS`` order-placed events for ``CONTACTS`` contacts of one tenant (placed over the
last 60 days, 1-3 lines, several channels, stores and categories) are produced to a topic first
(cold: the contacts are new, so most orders enter several segments), then as many again for the
same contacts (warm: histories in place), then a third time by two processor processes side by
side (half of the partitions each, as two worker replicas share a consumer group: the way to use
more cores). The processor's consume loop (the shared ``BatchConsumer`` with
``tag_svc.processor.build_segment_handler``, partitions assigned directly) applies them with 20
live segments defined, the outbox relay publishing the ``segment-changed`` events beside it, as
in the worker. Figure: events/s from the first poll until every offset is consumed, and its
ratio to ``consume_validate_per_s`` (bench.limits, same run; measured here on the same topic when
this benchmark runs alone). With them, where the CPU of the cold and the warm pass went: the
processor's process (its relay included), PostgreSQL and the broker, in microseconds per order,
and how busy the machine's cores were (``bench.harness.CpuMeter``). ``BENCH_SEG_EVENTS`` sets
``EVENTS`` (a quick run).

Latency: the processor and the relay keep running on a fresh topic, the segments API runs as its
own process (as deployed, apart from the worker), background orders (encoded before the run, as
another system would send them) arrive at ``LATENCY_RATE`` events/s (then again at
``BUSY_RATE``, a third to a half of what one process sustains), and
``PROBES`` times a new contact places its first order: the time from just before producing it
until ``GET /v1/segments/{id}/members`` lists the contact (polled every ``POLL_S``). Figures: p50,
p99, max. A run that has not sent every probe within ``LATENCY_BUDGET_S`` stops there, and one
whose probe is still not listed ``PROBE_GRACE_S`` later says it fell behind (that probe's time is
a lower bound): the benchmark ends whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import BenchContext, CpuMeter, CpuSplit, Figure
from scrm_shared.auth import issue_token
from scrm_shared.db.migrations import migrate_service
from scrm_shared.db.outbox import OutboxRelay
from scrm_shared.db.pool import create_pool
from scrm_shared.events import OrderPlacedEvent, new_event, parse_event
from scrm_shared.kafka.consumer import BatchConsumer, Handler
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import TopicSpec, ensure_topics, platform_topics
from scrm_shared.service import ServiceSpec, create_service_app, run_api
from scrm_shared.service.worker import WorkerDeps, worker_gc
from scrm_shared.testing.infra import free_port
from tag_svc.api import segments as segments_api
from tag_svc.config import TagSettings
from tag_svc.processor import build_segment_handler
from tag_svc.processor.model import rule_inputs
from tag_svc.processor.store import catalog
from tag_svc.segments import parse_rule

NAME = "tag_segments"
EVENTS = int(os.environ.get("BENCH_SEG_EVENTS", "40000"))
CONTACTS = 15_000
PARTITIONS = 6
TENANT = "bench-segments"
LATENCY_RATE = 500
BUSY_RATE = 1000  # a third to a half of what one process sustains here: the latency under real load
PROBES = 200
LATENCY_BUDGET_S = 150  # a run that has not sent every probe by then stops (40-70 s here when it keeps up)
PROBE_GRACE_S = 30  # how much longer the last probe may take before the run counts as fallen behind
BACKGROUND_S = 60  # seconds of background orders encoded before a latency run (26 s and 40 s here)
POLL_S = 0.02
MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "tag-svc" / "migrations"

# 20 segments, as a brand would define them; 15 of them read orders, so an order re-evaluates
# 15 rules for its contact.
RULES: list[dict[str, Any]] = [
    {"all": [{"event": "order-placed", "count": {"gte": 2}, "within_days": 30}]},
    {"all": [{"event": "order-placed", "count": {"gte": 3}, "within_days": 7}]},
    {"all": [{"event": "order-placed", "count": {"gte": 1}, "within_days": 90}]},
    {"event": "order-placed", "count": {"gte": 5}, "within_days": 365},
    {"event": "order-placed", "amount": {"gte": "500"}, "within_days": 90},
    {"event": "order-placed", "amount": {"gte": "1000"}, "within_days": 365, "category": "护肤"},
    {"event": "order-placed", "count": {"gte": 2}, "within_days": 60, "category": "护肤"},
    {"event": "order-placed", "distinct_days": {"gte": 2}, "within_days": 30},
    {
        "all": [
            {"event": "order-placed", "amount": {"gte": "500"}, "within_days": 90},
            {"no_event": "order-placed", "within_days": 30},
        ]
    },
    {"event": "order-placed", "count": {"gte": 1}, "within_days": 30, "channel": "mall"},
    {"event": "order-placed", "count": {"gte": 1}, "within_days": 30, "store_id": ["sh-012", "sh-013"]},
    {"rfm": "重要价值客户"},
    {"any": [{"rfm": "重要挽留客户"}, {"rfm": "一般挽留客户"}]},
    {"all": [{"tag": "VIP"}, {"event": "order-placed", "count": {"gte": 1}, "within_days": 30}]},
    {"not": {"event": "order-placed", "count": {"gte": 1}, "between_days_ago": [30, 180]}},
    {"all": [{"tag": "高价值"}]},
    {"attr": "store_id", "eq": "sh-012"},
    {"attr": "first_added_at", "days_since": {"gte": 7, "lte": 14}},
    {"event": "message-sent", "count": {"gte": 3}, "within_days": 7, "kind": "broadcast"},
    {"event": "friend-added", "count": {"gte": 1}, "within_days": 3650, "state": "poster-sh012"},
]
PROBE_RULE = 2  # count >= 1 within 90 days: a contact's first order makes it a member
ORDER_RULES = sum("order-placed" in rule_inputs(parse_rule(r)).reads for r in RULES)

SKUS = [("SK-FTE-230", "护肤", "1540.00"), ("MAC-RB", "彩妆", "190.00"), ("FEI-A2", "母婴", "328.00")]


def order_event(
    rng: random.Random, n: int, euid: str, now: datetime, *, age_days: float | None = None
) -> OrderPlacedEvent:
    lines = [rng.choice(SKUS) for _ in range(rng.randint(1, 3))]
    items = [{"sku": s, "category": c, "quantity": 1, "unit_price": p} for s, c, p in lines]
    age = rng.uniform(0, 60) if age_days is None else age_days
    return new_event(
        OrderPlacedEvent,
        tenant_id=TENANT,
        source="pos-bench",
        data={
            "order_id": f"ORD{n:09d}-{uuid.uuid4().hex[:6]}",
            "channel": rng.choice(["pos", "pos", "mall", "mini-program"]),
            "store_id": rng.choice(["sh-012", "sh-013", "bj-001"]),
            "customer": {"external_userid": euid},
            "items": items,
            "total_amount": sum((Decimal(p) for _, _, p in lines), Decimal("0.00")),
            "placed_at": now - timedelta(days=age),
        },
    )


async def define_segments(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """The 20 segments, live from the start (there are no profiles to backfill yet)."""
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for n, rule in enumerate(RULES):
            parsed = parse_rule(rule)
            segment_id = uuid.uuid4()
            await catalog.insert_segment(
                conn, TENANT, segment_id, f"s{n:02d}", parsed.to_json(), rule_inputs(parsed).rfm, 0
            )
            ids.append(segment_id)
        await conn.execute("UPDATE segments SET status = 'live' WHERE tenant_id = $1", TENANT)
    return ids


async def produce(bootstrap: str, topic: str, events: list[OrderPlacedEvent]) -> None:
    producer = create_producer(bootstrap, client_id="bench-segments")
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, value=e.to_bytes(), key=e.key())
        await producer.flush()
    finally:
        await producer.stop()


async def assigned(
    bootstrap: str,
    topic: str,
    deps: WorkerDeps,
    handler: Handler,
    partitions: Sequence[int] = range(PARTITIONS),
) -> BatchConsumer:
    raw = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-seg-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    consumer = BatchConsumer(
        bootstrap=bootstrap,
        group_id="bench",
        topics=[topic],
        handler=handler,
        producer=deps.producer,
        service="tag-svc",
        topic_contracts={topic: "order-placed"},
        consumer=raw,
    )
    await consumer.start()
    raw.assign([TopicPartition(topic, p) for p in partitions])
    return consumer


async def validate_rate(bootstrap: str, topic: str, n: int) -> float:
    """consume + decode + validate on ``topic`` (the limit, when bench.limits did not run)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for r in records:
                    parse_event("order-placed", r.value)
                seen += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def throughput(
    ctx: BenchContext, deps: WorkerDeps, handler: Handler, topic: str
) -> tuple[float, float, float, CpuSplit]:
    """Events/s of the processor over the whole backlog, the seconds it took, how much longer
    the relay (running beside it, as in the worker) needed to publish every transition, and where
    the CPU went while the backlog was applied."""
    consumer = await assigned(ctx.bootstrap, topic, deps, handler)
    relay = OutboxRelay(deps.pool, deps.producer, service="tag-svc")
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop))
    meter = CpuMeter()
    try:
        meter.start()
        started = time.perf_counter()
        while consumer.stats.consumed < EVENTS:
            await consumer.poll_once()
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        stop.set()
        await relay_task
        while await relay.run_once():  # what the relay had not published yet
            pass
        drained = time.perf_counter() - started - elapsed
    finally:
        stop.set()
        await relay_task
        await consumer.stop()
    return EVENTS / elapsed, elapsed, drained, cpu


async def drain(consumer: BatchConsumer) -> None:
    """Process the consumer's assigned partitions up to their current end."""
    raw = consumer.consumer
    ends = await raw.end_offsets(list(raw.assignment()))
    for tp, end in ends.items():
        while await raw.position(tp) < end:
            await consumer.poll_once()


async def two_processes(
    ctx: BenchContext, deps: WorkerDeps, handler: Handler, schema: str, topic: str
) -> tuple[float, float]:
    """Events/s of two processor processes side by side, each on half of the partitions (as two
    worker replicas in one consumer group split them), each with its relay; and the seconds the
    other process took. Timed from one start signal until both have drained their share."""
    half = PARTITIONS // 2
    env = {
        **os.environ,
        "BENCH_SEG_DSN": ctx.dsn,
        "BENCH_SEG_BOOTSTRAP": ctx.bootstrap,
        "BENCH_SEG_SCHEMA": schema,
        "BENCH_SEG_TOPIC": topic,
        "BENCH_SEG_PARTITIONS": ",".join(str(p) for p in range(half, PARTITIONS)),
    }
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bench.tag_segments import serve_processor; serve_processor()",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert other.stdin is not None and other.stdout is not None
    consumer = await assigned(ctx.bootstrap, topic, deps, handler, range(half))
    relay = OutboxRelay(deps.pool, deps.producer, service="tag-svc")
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop))
    try:
        if (line := await other.stdout.readline()) != b"ready\n":
            raise RuntimeError(f"second processor did not start: {line!r}")
        other.stdin.write(b"go\n")
        await other.stdin.drain()
        started = time.perf_counter()
        await drain(consumer)
        done = await other.stdout.readline()
        elapsed = time.perf_counter() - started
        other_seconds = float(done.split()[1])
    finally:
        stop.set()
        await relay_task
        await consumer.stop()
        if other.returncode is None:
            other.kill()
        await other.wait()
    return EVENTS / elapsed, other_seconds


@contextlib.asynccontextmanager
async def standalone_processor(
    dsn: str, bootstrap: str, schema: str, topic: str, partitions: Sequence[int], *, client_id: str
) -> AsyncIterator[BatchConsumer]:
    """A processor process as a worker runs it, for a benchmark subprocess: its own pool and
    producer, the segment handler on ``partitions`` of ``topic``, the outbox relay beside it.
    Yields the consumer; everything stops on exit."""
    pool = await create_pool(dsn, schema=schema, min_size=2, max_size=8)
    producer = create_producer(bootstrap, client_id=client_id)
    await producer.start()
    settings = TagSettings(kafka_bootstrap=bootstrap, database_url=dsn, db_schema=schema)
    deps = WorkerDeps(pool=pool, producer=producer, settings=settings, service="tag-svc")
    consumer = await assigned(bootstrap, topic, deps, build_segment_handler(deps), partitions)
    stop = asyncio.Event()
    relay_task = asyncio.create_task(OutboxRelay(pool, producer, service="tag-svc").run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await relay_task
        await consumer.stop()
        await producer.stop()
        await pool.close()


def serve_processor() -> None:
    """Entry point of the second processor process (:func:`two_processes`): prints ``ready``,
    waits for ``go`` on stdin, drains its partitions, prints ``done <seconds>``."""

    async def main() -> None:
        env = os.environ
        partitions = [int(p) for p in env["BENCH_SEG_PARTITIONS"].split(",")]
        async with standalone_processor(
            env["BENCH_SEG_DSN"],
            env["BENCH_SEG_BOOTSTRAP"],
            env["BENCH_SEG_SCHEMA"],
            env["BENCH_SEG_TOPIC"],
            partitions,
            client_id="bench-segments-second",
        ) as consumer:
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            started = time.perf_counter()
            await drain(consumer)
            print(f"done {time.perf_counter() - started:.3f}", flush=True)

    with worker_gc():
        asyncio.run(main())


def serve_api() -> None:
    """Entry point of the API subprocess: the segment routes on SCRM_TAG_PORT (settings from env)."""
    settings = TagSettings()
    spec = ServiceSpec(name="tag-svc", schema="tag", migrations=MIGRATIONS, routers=(segments_api.router,))
    run_api(create_service_app(spec, settings), settings)


@contextlib.asynccontextmanager
async def api_process(ctx: BenchContext, schema: str) -> AsyncIterator[tuple[str, str]]:
    """The segments API as its own process (as deployed: the API apart from the worker), on a
    free port; yields its base URL and an operator token."""
    port = free_port()
    secret = secrets.token_hex(16)
    env = {
        **os.environ,
        "SCRM_ENV": "dev",
        "SCRM_DATABASE_URL": ctx.dsn,
        "SCRM_KAFKA_BOOTSTRAP": ctx.bootstrap,
        "SCRM_DB_SCHEMA": schema,
        "SCRM_TAG_PORT": str(port),
        "SCRM_JWT_SECRET": secret,
        "SCRM_LOG_LEVEL": "WARNING",
    }
    env.pop("SCRM_OTLP_ENDPOINT", None)
    token = issue_token(TagSettings(jwt_secret=secret), tenant=TENANT, role="operator")
    log_path = ctx.workdir / f"{NAME}-api.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from bench.tag_segments import serve_api; serve_api()",
            env=env,
            stdout=log,
            stderr=log,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
                deadline = time.monotonic() + 60
                while True:
                    if proc.returncode is not None:
                        raise RuntimeError(f"segments API exited with {proc.returncode}; see {log_path}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"segments API not ready; see {log_path}")
                    await asyncio.sleep(0.1)
            yield base_url, token
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def latency(
    ctx: BenchContext,
    deps: WorkerDeps,
    handler: Handler,
    schema: str,
    probe_segment: uuid.UUID,
    rate: int = LATENCY_RATE,
    earlier_probes: int = 0,
) -> list[float]:
    """Seconds from producing a probe order to its contact listed by the members API, with
    background orders at ``rate`` per second (``earlier_probes``: probe contacts of earlier runs,
    members already, which sort before this run's)."""
    topic = f"bench-seg-latency-{uuid.uuid4().hex[:8]}"
    await ensure_topics(ctx.bootstrap, [TopicSpec(topic, partitions=PARTITIONS)])
    consumer = await assigned(ctx.bootstrap, topic, deps, handler)
    stop = asyncio.Event()
    rng = random.Random(11)
    now = datetime.now(UTC)
    producer = create_producer(ctx.bootstrap, client_id="bench-segments-latency")
    await producer.start()

    def encoded(n: int) -> tuple[bytes, bytes]:
        e = order_event(rng, 10_000_000 + n, f"wm{rng.randrange(CONTACTS):08d}", now)
        return e.to_bytes(), e.key()

    # The background orders are built and encoded before the clock starts (a POS system does
    # that on its own machine): building them here, in the processor's process, cost it about
    # a tenth of a core at 1,000 orders/s. Past BACKGROUND_S seconds they are built on the fly.
    ready = [encoded(n) for n in range(rate * BACKGROUND_S)]

    sent = 0

    async def background() -> None:
        nonlocal sent
        n = 0
        tick = 0.01
        next_at = time.perf_counter()
        while not stop.is_set():
            for _ in range(int(rate * tick)):
                value, key = ready[n] if n < len(ready) else encoded(n)
                n += 1
                await producer.send(topic, value=value, key=key)
            sent = n
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    samples: list[float] = []
    sent_probes, behind = 0, False
    async with api_process(ctx, schema) as (base_url, token):
        client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
        tasks = [
            asyncio.create_task(consumer.run(stop)),
            asyncio.create_task(OutboxRelay(deps.pool, deps.producer, service="tag-svc").run(stop)),
            asyncio.create_task(background()),
        ]
        run_started = time.perf_counter()
        try:
            await asyncio.sleep(2.0)  # the background load reaches its pace first
            for i in range(PROBES):
                # Sorts before the background contacts ("wm..."), after earlier runs' probes.
                euid = f"a{earlier_probes + i:05d}-{uuid.uuid4().hex[:4]}"
                event = order_event(rng, 20_000_000 + i, euid, datetime.now(UTC), age_days=0)
                started = time.perf_counter()
                await producer.send(topic, value=event.to_bytes(), key=event.key())
                sent_probes += 1
                while True:
                    # Probes sort first: probe i is on a page of i + 1 members (after earlier runs').
                    page = {"limit": earlier_probes + i + 1}
                    resp = await client.get(f"/v1/segments/{probe_segment}/members", params=page)
                    if any(m["external_userid"] == euid for m in resp.json()["items"]):
                        break
                    if time.perf_counter() - run_started > LATENCY_BUDGET_S + PROBE_GRACE_S:
                        behind = True  # the processor fell behind: this probe's wait is a lower bound
                        break
                    await asyncio.sleep(POLL_S)
                samples.append(time.perf_counter() - started)
                if behind or time.perf_counter() - run_started > LATENCY_BUDGET_S:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await client.aclose()
            await consumer.stop()
            await producer.stop()
    on_the_fly = max(0, sent - len(ready))
    print(
        f"  {NAME}: latency at {rate}/s: {time.perf_counter() - run_started:.0f} s, {sent} background "
        f"orders ({on_the_fly} built during the run), {len(samples)} probes"
        + (", fell behind" if behind else ""),
        flush=True,
    )
    return LatencyRun(rate, sorted(samples), sent_probes, behind)


@dataclass(frozen=True)
class LatencyRun:
    """Probe latencies of one run, sorted; ``behind``: the processor fell behind the background
    rate and the run was cut at its budget, the last sample being a lower bound."""

    rate: int
    samples: list[float]
    probes_sent: int
    behind: bool

    def p99(self) -> float:
        return self.samples[min(len(self.samples) - 1, int(len(self.samples) * 0.99))]

    def note(self, goal: str) -> str:
        cut = ""
        if len(self.samples) < PROBES:
            cut = f", cut after {LATENCY_BUDGET_S} s" + (": fell behind" if self.behind else "")
        return "; ".join(filter(None, [goal, f"{len(self.samples)} probes at {self.rate} orders/s{cut}"]))


def cpu_figures(label: str, cpu: CpuSplit) -> list[Figure]:
    """Where one order's CPU went (processor process with its relay, PostgreSQL, broker), and
    how busy the whole machine was: what bounds the throughput on this many cores."""
    per = cpu.per(EVENTS)
    return [
        Figure(
            NAME, f"{label}_cpu_us_per_order_processor", per["this_process"], "us", "Python, relay included"
        ),
        Figure(NAME, f"{label}_cpu_us_per_order_postgres", per["postgres"], "us"),
        Figure(NAME, f"{label}_cpu_us_per_order_broker", per["broker"], "us"),
        Figure(
            NAME,
            f"{label}_machine_busy_percent",
            100 * cpu.busy_share,
            "%",
            f"of {cpu.cores} cores, idle excluded",
        ),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    with worker_gc():  # the garbage collector tuned as in a worker process
        return await _run(ctx)


async def _run(ctx: BenchContext) -> list[Figure]:
    schema = f"bench_seg_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(ctx.dsn, schema=schema, min_size=2, max_size=8)
    producer = create_producer(ctx.bootstrap, client_id="bench-segments-worker")
    await producer.start()
    try:
        await migrate_service(pool, schema=schema, directory=MIGRATIONS)
        await ensure_topics(ctx.bootstrap, platform_topics(partitions=PARTITIONS))
        segment_ids = await define_segments(pool)
        topic = f"bench-seg-orders-{uuid.uuid4().hex[:8]}"
        await ensure_topics(ctx.bootstrap, [TopicSpec(topic, partitions=PARTITIONS)])
        warm_topic = f"bench-seg-orders-warm-{uuid.uuid4().hex[:8]}"
        await ensure_topics(ctx.bootstrap, [TopicSpec(warm_topic, partitions=PARTITIONS)])
        scaled_topic = f"bench-seg-orders-2p-{uuid.uuid4().hex[:8]}"
        await ensure_topics(ctx.bootstrap, [TopicSpec(scaled_topic, partitions=PARTITIONS)])
        rng = random.Random(7)
        now = datetime.now(UTC)
        for t in (topic, warm_topic, scaled_topic):
            await produce(
                ctx.bootstrap,
                t,
                [order_event(rng, n, f"wm{rng.randrange(CONTACTS):08d}", now) for n in range(EVENTS)],
            )
        limit = ctx.limits.get("consume_validate_per_s") or await validate_rate(ctx.bootstrap, topic, EVENTS)
        settings = TagSettings(kafka_bootstrap=ctx.bootstrap, database_url=ctx.dsn, db_schema=schema)
        deps = WorkerDeps(pool=pool, producer=producer, settings=settings, service="tag-svc")
        # One processor all along, as a worker runs it (its fact cache carries over).
        handler = build_segment_handler(deps)
        # Cold: every contact is new (most orders are a first order: several entries each).
        rate, elapsed, drained, cpu = await throughput(ctx, deps, handler, topic)
        members = await pool.fetchval("SELECT count(*) FROM segment_members")
        changes = await pool.fetchval("SELECT count(*) FROM outbox")
        # Warm: the same contacts order again (histories in place, fewer transitions per order).
        warm_rate, _, _, warm_cpu = await throughput(ctx, deps, handler, warm_topic)
        warm_changes = await pool.fetchval("SELECT count(*) FROM outbox") - changes
        calm = await latency(ctx, deps, handler, schema, segment_ids[PROBE_RULE])
        busy = await latency(
            ctx,
            deps,
            handler,
            schema,
            segment_ids[PROBE_RULE],
            rate=BUSY_RATE,
            earlier_probes=calm.probes_sent,
        )
        # Last (its orders lengthen every history): two processes (two worker replicas), the
        # same contacts ordering once more.
        scaled_rate, other_seconds = await two_processes(ctx, deps, handler, schema, scaled_topic)
    finally:
        await producer.stop()
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
    return [
        Figure(
            NAME,
            "processor_events_per_s",
            rate,
            "events/s",
            f"{EVENTS} orders, {CONTACTS} contacts, 20 segments ({ORDER_RULES} read orders)",
        ),
        Figure(
            NAME, "processor_ratio_to_limit", rate / limit, "ratio", "goal >= 0.3 (naive faust agent ~0.03)"
        ),
        Figure(NAME, "processor_percent_of_limit", 100 * rate / limit, "%", "the same ratio, in percent"),
        Figure(
            NAME,
            "processor_warm_events_per_s",
            warm_rate,
            "events/s",
            f"{EVENTS} more orders of the same contacts ({warm_changes} transitions)",
        ),
        Figure(NAME, "processor_warm_ratio_to_limit", warm_rate / limit, "ratio", "goal >= 0.3"),
        Figure(
            NAME,
            "processor_2proc_events_per_s",
            scaled_rate,
            "events/s",
            f"two processes, half the partitions each ({EVENTS} more orders; the second took {other_seconds:.1f} s)",
        ),
        Figure(NAME, "processor_2proc_ratio_to_limit", scaled_rate / limit, "ratio", "goal >= 0.3"),
        *cpu_figures("cold", cpu),
        *cpu_figures("warm", warm_cpu),
        Figure(NAME, "limit_consume_validate_per_s", limit, "events/s", "what the ratio divides by"),
        Figure(NAME, "processor_seconds", elapsed, "s", "until every order was applied"),
        Figure(NAME, "outbox_drained_after_s", drained, "s", f"{changes} segment-changed events published"),
        Figure(NAME, "memberships_after", float(members), "rows"),
        Figure(NAME, "order_to_member_p50_ms", statistics.median(calm.samples) * 1000, "ms", calm.note("")),
        Figure(NAME, "order_to_member_p99_ms", calm.p99() * 1000, "ms", calm.note("goal <= 1000 (at 5k/s)")),
        Figure(NAME, "order_to_member_max_ms", calm.samples[-1] * 1000, "ms"),
        Figure(
            NAME,
            f"order_to_member_p50_ms_at_{BUSY_RATE}",
            statistics.median(busy.samples) * 1000,
            "ms",
            busy.note(""),
        ),
        Figure(
            NAME,
            f"order_to_member_p99_ms_at_{BUSY_RATE}",
            busy.p99() * 1000,
            "ms",
            busy.note("goal <= 1000 (at 5k/s)"),
        ),
    ]
