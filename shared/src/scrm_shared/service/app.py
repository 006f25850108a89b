"""FastAPI app factory: lifespan (pool, producer, outbox relay), /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from scrm_shared import problems, telemetry
from scrm_shared.db.outbox import OutboxRelay
from scrm_shared.secrets import SealedColumn, reseal
from scrm_shared.service.infra import database_ready, kafka_ready, start_infra
from scrm_shared.service.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: its name, schema, migrations and routes, and the columns where it
    keeps tenants' secrets sealed (re-sealed with the current key at start-up)."""

    name: str
    schema: str
    migrations: Path
    routers: Sequence[APIRouter] = field(default_factory=tuple)
    sealed: Sequence[SealedColumn] = field(default_factory=tuple)
    description: str = ""
    version: str = "0.1.0"


def create_service_app(spec: ServiceSpec, settings: ServiceSettings) -> FastAPI:
    """Build the service's FastAPI app. Nothing connects until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        telemetry.setup(spec.name, settings)
        infra = await start_infra(
            settings, service=spec.name, schema=settings.db_schema or spec.schema, migrations=spec.migrations
        )
        app.state.pool = infra.pool
        app.state.producer = infra.producer
        if spec.sealed:
            async with infra.pool.acquire() as conn, conn.transaction():
                await reseal(conn, settings.secret_box, spec.sealed)
        stop = asyncio.Event()
        relay = OutboxRelay(infra.pool, infra.producer, service=spec.name)
        relay_task = asyncio.create_task(relay.run(stop), name=f"{spec.name}-outbox-relay")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(relay_task, 5.0)
            await infra.close()

    app = FastAPI(
        title=spec.name,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = spec.name
    problems.install(app)
    telemetry.add_http_metrics(app, spec.name)
    telemetry.instrument_app(app)
    app.include_router(_ops_router())
    for router in spec.routers:
        app.include_router(router)
    return app


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="PostgreSQL and Kafka are reachable", response_model=None)
    async def readyz(request: Request) -> JSONResponse:
        pool = getattr(request.app.state, "pool", None)
        producer = getattr(request.app.state, "producer", None)
        db_ok, kafka_ok = await asyncio.gather(
            database_ready(pool) if pool else _false(),
            kafka_ready(producer) if producer else _false(),
        )
        ok = db_ok and kafka_ok
        body = {
            "status": "ready" if ok else "unavailable",
            "checks": {"postgres": "ok" if db_ok else "fail", "kafka": "ok" if kafka_ok else "fail"},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return telemetry.metrics_response()

    return router


async def _false() -> bool:
    return False


def run_api(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve ``app`` with uvicorn on the service's host and port (blocking)."""
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
