"""The service runtime on real PostgreSQL and a real broker: app lifespan, probes, worker, tally."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import faust
import pytest

from scrm_shared.events import FriendAddedEvent, new_event
from scrm_shared.kafka.producer import create_producer
from scrm_shared.kafka.topics import ensure_topics, platform_topics
from scrm_shared.service import ServiceSettings, ServiceSpec, create_service_app
from scrm_shared.service.faust_host import add_timer, create_faust_app
from scrm_shared.service.tally import ingest_router, tally_handler
from scrm_shared.service.worker import WorkerDeps, serve_worker
from scrm_shared.testing.infra import free_port, port_open
from scrm_shared.testing.plugin import asgi_client, bearer, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def spec(tmp_path: Path) -> ServiceSpec:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_init.sql").write_text("CREATE TABLE widget (id int PRIMARY KEY);\n")
    return ServiceSpec(name="test-svc", schema="unused", migrations=migrations, routers=(ingest_router,))


@pytest.fixture
def settings(kafka_bootstrap: str, pg_dsn: str, pg_schema: str) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pg_dsn,
        db_schema=pg_schema,
        startup_wait_seconds=5,
    )


def friend_added(tenant: str, n: int) -> FriendAddedEvent:
    return new_event(
        FriendAddedEvent,
        tenant_id=tenant,
        source="wecom-callback",
        data={
            "external_userid": f"wm{n:06d}",
            "staff_id": "zhang.wei",
            "state": "store-sh-012-poster",
            "added_at": datetime.now(UTC),
        },
    )


async def test_app_probes_auth_and_metrics(spec, settings, pg_schema):
    app = create_service_app(spec, settings)
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok"}

            # the service's migrations ran in its own schema, after the shared track
            tables = await app.state.pool.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", pg_schema
            )
            assert {"widget", "outbox", "processed_events", "ingest_tally"} <= {
                r["table_name"] for r in tables
            }

            unauth = await client.get("/v1/ingest/stats")
            assert unauth.status_code == 401
            assert unauth.headers["content-type"].startswith("application/problem+json")
            forbidden = await client.get(
                "/v1/ingest/stats", headers=bearer(settings, "acme", "guide", "zhang.wei")
            )
            assert forbidden.status_code == 403
            ok = await client.get("/v1/ingest/stats", headers=bearer(settings, "acme", "operator"))
            assert ok.status_code == 200
            assert ok.json() == {"tenant_id": "acme", "topics": []}

            metrics = (await client.get("/metrics")).text
            assert 'route="/v1/ingest/stats"' in metrics
            assert "scrm_http_requests_total" in metrics

            app.state.pool.terminate()  # the database is gone for this process
            down = await client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["checks"]["postgres"] == "fail"


async def test_worker_tallies_each_event_once_per_tenant(spec, settings, kafka_bootstrap):
    tenant, other = f"t{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    events = [friend_added(tenant, i) for i in range(5)] + [friend_added(other, 99)]
    await ensure_topics(kafka_bootstrap, platform_topics(partitions=3))
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        for e in events + events[:2]:  # a producer retry redelivers two of them
            await producer.send_and_wait("friend-added", e.to_bytes(), key=e.key())
    finally:
        await producer.stop()

    stop = asyncio.Event()
    group = f"g-{uuid.uuid4().hex[:8]}"
    worker = asyncio.create_task(
        serve_worker(
            spec, settings, topics=["friend-added"], build_handler=tally_handler, stop=stop, group_id=group
        )
    )
    app = create_service_app(spec, settings)
    try:
        async with app.router.lifespan_context(app):
            async with asgi_client(app) as client:

                async def tallied() -> bool:
                    if worker.done():
                        worker.result()
                    resp = await client.get("/v1/ingest/stats", headers=bearer(settings, tenant))
                    return resp.json()["topics"] == [
                        {"topic": "friend-added", "event_type": "friend-added", "consumed": 5}
                    ]

                await wait_for(tallied, timeout=30, interval=0.2)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 15)


async def test_worker_hosts_a_faust_app_whose_timers_run_beside_the_batch_loop(
    spec, settings, kafka_bootstrap, tmp_path
):
    settings = settings.model_copy(
        update={"faust_datadir": str(tmp_path / "faust"), "faust_web_port": free_port(), "port": free_port()}
    )
    ticks: list[int] = []

    def build_faust(deps: WorkerDeps) -> faust.App:
        app = create_faust_app(f"test-{uuid.uuid4().hex[:6]}", deps.settings)

        async def tick() -> None:
            ticks.append(await deps.pool.fetchval("SELECT count(*) FROM widget"))

        add_timer(app, 0.1, tick, name="count_widgets")
        return app

    stop = asyncio.Event()
    worker = asyncio.create_task(
        serve_worker(
            spec,
            settings,
            topics=["friend-added"],
            build_handler=tally_handler,
            stop=stop,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            faust_app=build_faust,
        )
    )
    try:

        async def ticked() -> bool:
            if worker.done():
                worker.result()
            return len(ticks) >= 3

        await wait_for(ticked, timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 20)
    stopped_at = len(ticks)
    assert ticks[:3] == [0, 0, 0]  # the timer reached the service's database through its deps
    assert not port_open("127.0.0.1", settings.effective_faust_web_port)
    assert len(ticks) == stopped_at  # no timer runs after the worker returned
