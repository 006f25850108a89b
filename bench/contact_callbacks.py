"""contact-svc's WeCom callback endpoint: callbacks/s accepted, and how fast they reach Kafka.

Starts the real API process (``contact-svc api``, its own schema, on a free port) against the
bench broker and PostgreSQL, configures a tenant through ``PUT /v1/wecom/config``, then POSTs
``CALLBACKS`` distinct, signed and encrypted ``add_external_contact`` callbacks with at most
``CONCURRENCY`` in flight (encryption is done beforehand: it is WeCom's work, not ours). Each
accepted callback is verified, decrypted, parsed, archived and enqueued in one transaction; the
app's outbox relay publishes the ``friend-added`` events.

Figures: accepted callbacks/s with the request latency (p50, p99), and callbacks/s from the first
POST until the last event is on ``friend-added``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import BenchContext, Figure
from contact_svc.config import ContactSettings
from contact_svc.wecom.crypto import WeComCrypto
from scrm_shared.auth import issue_token
from scrm_shared.testing.infra import free_port

NAME = "contact_callbacks"
CALLBACKS = 5_000
WARMUP = 200
CONCURRENCY = 32
PARTITIONS = 6
TENANT = "bench-callbacks"
STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 120.0
VISIBLE_SAMPLES = 300
VISIBLE_CONCURRENCY = 4


@dataclass(frozen=True)
class Callback:
    params: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class RunningApi:
    base_url: str
    jwt_secret: str
    env: dict[str, str]


def build_callbacks(crypto: WeComCrypto, n: int, *, start: int = 0) -> list[Callback]:
    """``n`` distinct add_external_contact callbacks for ``crypto``'s corp, signed and encrypted."""
    out = []
    for i in range(start, start + n):
        customer = f"wm{uuid.UUID(int=i + 1).hex}"
        plaintext = (
            f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
            "<FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{1716950000 + i}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event>"
            "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
            f"<UserID><![CDATA[guide{i % 50:03d}]]></UserID>"
            f"<ExternalUserID><![CDATA[{customer}]]></ExternalUserID>"
            f"<State><![CDATA[store-sh-{i % 20:03d}]]></State>"
            f"<WelcomeCode><![CDATA[WC{secrets.token_hex(12)}]]></WelcomeCode></xml>"
        ).encode()
        timestamp, nonce = str(1716950000 + i), str(secrets.randbelow(10**10))
        encrypted, sig = crypto.seal(plaintext, timestamp, nonce)
        body = (
            f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
        ).encode()
        out.append(Callback({"msg_signature": sig, "timestamp": timestamp, "nonce": nonce}, body))
    return out


@contextlib.asynccontextmanager
async def contact_api(ctx: BenchContext, schema: str) -> AsyncIterator[RunningApi]:
    """``contact-svc api`` as a subprocess on a free port, until the block ends (then SIGTERM)."""
    port = free_port()
    jwt_secret = secrets.token_hex(16)
    env = {
        **os.environ,
        "SCRM_ENV": "dev",
        "SCRM_DATABASE_URL": ctx.dsn,
        "SCRM_KAFKA_BOOTSTRAP": ctx.bootstrap,
        "SCRM_DB_SCHEMA": schema,
        "SCRM_CONTACT_PORT": str(port),
        "SCRM_JWT_SECRET": jwt_secret,
        "SCRM_TOPIC_PARTITIONS": str(PARTITIONS),
        "SCRM_LOG_LEVEL": "WARNING",
    }
    env.pop("SCRM_OTLP_ENDPOINT", None)
    log_path = ctx.workdir / f"{NAME}-api.log"
    executable = Path(sys.executable).parent / "contact-svc"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(str(executable), "api", env=env, stdout=log, stderr=log)
        try:
            base_url = f"http://127.0.0.1:{port}"
            await _wait_ready(base_url, proc, log_path)
            yield RunningApi(base_url=base_url, jwt_secret=jwt_secret, env=env)
        finally:
            await _terminate(proc)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def contact_worker(ctx: BenchContext, api: RunningApi) -> AsyncIterator[None]:
    """``contact-svc worker`` beside the API (same schema and settings), until the block ends."""
    env = {**api.env, "SCRM_WORKER_METRICS_PORT": str(free_port())}
    log_path = ctx.workdir / f"{NAME}-worker.log"
    executable = Path(sys.executable).parent / "contact-svc"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(executable), "worker", env=env, stdout=log, stderr=log
        )
        try:
            yield
        finally:
            await _terminate(proc)


async def _wait_ready(base_url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"contact-svc api exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"contact-svc api not ready within {STARTUP_TIMEOUT_S}s; see {log_path}")
            await asyncio.sleep(0.1)


async def configure_tenant(client: httpx.AsyncClient, api: RunningApi) -> WeComCrypto:
    """Give the bench tenant WeCom settings through the API; returns its crypto."""
    corp_id = f"ww{secrets.token_hex(8)}"
    token = secrets.token_hex(8)
    key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
    bearer = issue_token(ContactSettings(jwt_secret=api.jwt_secret), tenant=TENANT, role="admin")
    response = await client.put(
        "/v1/wecom/config",
        json={"corp_id": corp_id, "token": token, "encoding_aes_key": key},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    response.raise_for_status()
    return WeComCrypto.from_settings(token, key, corp_id)


async def post_all(client: httpx.AsyncClient, callbacks: list[Callback]) -> tuple[float, list[float]]:
    """POST every callback with at most ``CONCURRENCY`` in flight; (seconds, latencies)."""
    queue: asyncio.Queue[Callback] = asyncio.Queue()
    for cb in callbacks:
        queue.put_nowait(cb)
    latencies: list[float] = []
    path = f"/wecom/callback/{TENANT}"

    async def worker() -> None:
        while not queue.empty():
            cb = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(path, params=cb.params, content=cb.body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.text != "success":
                raise RuntimeError(f"callback refused: {response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, latencies


async def topic_total(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` now (sum of end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def wait_published(bootstrap: str, topic: str, expected: int) -> None:
    """Poll the topic's end offsets until it holds ``expected`` records."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while await topic_total(bootstrap, topic) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} did not reach {expected} records within {DRAIN_TIMEOUT_S}s")
        await asyncio.sleep(0.05)


async def visible(client: httpx.AsyncClient, bearer: str, external_userid: str) -> bool:
    response = await client.get(
        "/v1/contacts",
        params={"external_userid": external_userid},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    response.raise_for_status()
    return any(item["external_userid"] == external_userid for item in response.json()["items"])


def _customer(callback_index: int) -> str:
    return f"wm{uuid.UUID(int=callback_index + 1).hex}"  # as build_callbacks names them


async def measure_callback_to_visible(
    ctx: BenchContext, api: RunningApi, client: httpx.AsyncClient, crypto: WeComCrypto, backlog: int
) -> list[Figure]:
    """p50/p99 from "callback answered success" to "contact visible in GET /v1/contacts".

    Starts the worker, lets it apply the ``backlog`` of earlier callbacks, then sends
    VISIBLE_SAMPLES fresh callbacks, VISIBLE_CONCURRENCY at a time, each polled until visible.
    """
    bearer = issue_token(ContactSettings(jwt_secret=api.jwt_secret), tenant=TENANT, role="operator")
    async with contact_worker(ctx, api):
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not await visible(client, bearer, _customer(backlog - 1)):
            if time.monotonic() > deadline:
                raise TimeoutError("contact-svc worker did not catch up with the backlog")
            await asyncio.sleep(0.05)

        samples = build_callbacks(crypto, VISIBLE_SAMPLES, start=backlog)
        delays: list[float] = []
        path = f"/wecom/callback/{TENANT}"
        queue: asyncio.Queue[tuple[int, Callback]] = asyncio.Queue()
        for i, cb in enumerate(samples):
            queue.put_nowait((backlog + i, cb))

        async def one_at_a_time() -> None:
            while not queue.empty():
                index, cb = queue.get_nowait()
                response = await client.post(path, params=cb.params, content=cb.body)
                answered = time.perf_counter()
                if response.text != "success":
                    raise RuntimeError(f"callback refused: {response.status_code}")
                while not await visible(client, bearer, _customer(index)):
                    if time.perf_counter() - answered > DRAIN_TIMEOUT_S:
                        raise TimeoutError("contact never became visible")
                    await asyncio.sleep(0.005)
                delays.append(time.perf_counter() - answered)

        await asyncio.gather(*(one_at_a_time() for _ in range(VISIBLE_CONCURRENCY)))
    delays.sort()
    return [
        Figure(NAME, "callback_to_visible_p50_ms", _quantile(delays, 0.50) * 1000, "ms"),
        Figure(
            NAME,
            "callback_to_visible_p99_ms",
            _quantile(delays, 0.99) * 1000,
            "ms",
            f"goal < 1000; {VISIBLE_SAMPLES} samples, {VISIBLE_CONCURRENCY} in flight",
        ),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    schema = f"bench_contact_{uuid.uuid4().hex[:8]}"
    try:
        async with (
            contact_api(ctx, schema) as api,
            httpx.AsyncClient(
                base_url=api.base_url,
                timeout=30.0,
                limits=httpx.Limits(
                    max_connections=CONCURRENCY,
                    max_keepalive_connections=CONCURRENCY,
                    # below uvicorn's 5 s keep-alive: never reuse a connection the server is closing
                    keepalive_expiry=2.0,
                ),
            ) as client,
        ):
            crypto = await configure_tenant(client, api)
            warmup = build_callbacks(crypto, WARMUP)
            measured = build_callbacks(crypto, CALLBACKS, start=WARMUP)
            await post_all(client, warmup)
            await wait_published(ctx.bootstrap, "friend-added", WARMUP)

            started = time.perf_counter()
            seconds, latencies = await post_all(client, measured)
            await wait_published(ctx.bootstrap, "friend-added", WARMUP + CALLBACKS)
            to_kafka_seconds = time.perf_counter() - started
            visible_figures = await measure_callback_to_visible(
                ctx, api, client, crypto, backlog=WARMUP + CALLBACKS
            )
    finally:
        await _drop_schema(ctx.dsn, schema)

    latencies.sort()
    figures = [
        Figure(
            NAME, "callbacks_accepted_per_s", CALLBACKS / seconds, "callbacks/s", f"{CONCURRENCY} in flight"
        ),
        Figure(NAME, "callback_latency_p50_ms", _quantile(latencies, 0.50) * 1000, "ms"),
        Figure(NAME, "callback_latency_p99_ms", _quantile(latencies, 0.99) * 1000, "ms", "WeCom waits 5000"),
        Figure(
            NAME,
            "callbacks_to_kafka_per_s",
            CALLBACKS / to_kafka_seconds,
            "callbacks/s",
            "first POST to last friend-added on Kafka",
        ),
    ]
    return figures + visible_figures


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # The name is ours (bench_contact_ + hex), so quoting it is exact.
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
