"""`make run` as a user runs it: the whole platform up, events through it, Ctrl-C leaves nothing.

Starts the real ``scrm-devstack`` command (broker from noida-db, every service API and worker
under honcho) against a fresh PostgreSQL database, then drives it over sockets only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from scrm_shared.auth import issue_token
from scrm_shared.config import PlatformSettings
from scrm_shared.events import OrderPlacedEvent, new_event, parse_event
from scrm_shared.kafka.producer import create_producer
from scrm_shared.testing.infra import free_port, port_open, with_database
from scrm_shared.testing.plugin import read_topic, wait_for

pytestmark = pytest.mark.integration

SERVICES = {"contact-svc": 1, "tag-svc": 2, "campaign-svc": 3, "metrics-svc": 4}


def free_port_base() -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000, 10)
        ports = [base + o for o in SERVICES.values()] + [base + 100 + o for o in SERVICES.values()]
        if not any(port_open("127.0.0.1", p) for p in ports):
            return base
    raise RuntimeError("no free port range")


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    bootstrap: str
    urls: dict[str, str]
    log: Path


@pytest.fixture
async def fresh_database(pg_dsn: str) -> AsyncIterator[str]:
    name = f"scrm_e2e_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(pg_dsn, name)
    try:
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def stack(fresh_database: str, tmp_path: Path) -> Iterator[Stack]:
    kafka_port, base = free_port(), free_port_base()
    log = tmp_path / "stack.log"
    env = {**os.environ, "SCRM_DATABASE_URL": fresh_database, "SCRM_ENV": "dev"}
    env.pop("DATABASE_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "scrm-devstack"),
                "--kafka-port",
                str(kafka_port),
                "--port-base",
                str(base),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    stack = Stack(
        proc=proc,
        bootstrap=f"127.0.0.1:{kafka_port}",
        urls={name: f"http://127.0.0.1:{base + o}" for name, o in SERVICES.items()},
        log=log,
    )
    try:
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def all_ready(stack: Stack) -> bool:
    if stack.proc.poll() is not None:
        raise AssertionError(f"stack exited early:\n{stack.log.read_text()[-4000:]}")
    async with httpx.AsyncClient(timeout=2) as client:
        for url in stack.urls.values():
            try:
                if (await client.get(f"{url}/readyz")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


def good_order(order_id: str) -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id="e2e",
        source="pos-sh-012",
        data={
            "order_id": order_id,
            "channel": "pos",
            "customer": {"external_userid": "wmE2E"},
            "items": [
                {"sku": "LJ-MQ-250", "category": "茶饮", "quantity": 2, "unit_price": Decimal("588.00")}
            ],
            "total_amount": Decimal("1176.00"),
            "placed_at": datetime.now(UTC),
        },
    )


async def test_make_run_serves_every_service_dead_letters_garbage_and_stops_cleanly(stack: Stack):
    await wait_for(lambda: all_ready(stack), timeout=90, interval=0.5)

    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        order = good_order("E2E-0001")
        await producer.send_and_wait("order-placed", b"this is not json", key=b"e2e:junk")
        await producer.send_and_wait("order-placed", order.to_bytes(), key=order.key())
    finally:
        await producer.stop()

    token = issue_token(PlatformSettings(), tenant="e2e", role="operator")
    headers = {"Authorization": f"Bearer {token}"}

    async def counted() -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            resp = await client.get(f"{stack.urls['metrics-svc']}/v1/ingest/stats", headers=headers)
        topics = {t["topic"]: t["consumed"] for t in resp.json()["topics"]} if resp.status_code == 200 else {}
        return topics.get("order-placed") == 1

    await wait_for(counted, timeout=30, interval=0.3)

    # every service consuming order-placed dead-letters the garbage once, under its own group
    dead = await read_topic(stack.bootstrap, "dead-letter", 4, timeout=30)
    records = [parse_event("dead-letter", r.value) for r in dead]
    assert sorted(d.data.consumer_group for d in records) == [
        "contact-svc",
        "metrics-svc",
        "tag-svc",
        "tag-svc-segments",
    ]
    assert all(d.data.error_kind == "undecodable" and d.data.topic == "order-placed" for d in records)
    assert all(json.dumps(d.data.error) for d in records)
    assert await all_ready(stack), "services must stay ready after bad input"

    children = psutil.Process(stack.proc.pid).children(recursive=True)
    assert len(children) >= 10  # broker, 4 APIs, 4 workers, banner
    stack.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(stack.proc.wait, 30)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"orphans left: {[p.pid for p in alive]}"
    assert not any(port_open("127.0.0.1", int(u.rsplit(":", 1)[1])) for u in stack.urls.values())
