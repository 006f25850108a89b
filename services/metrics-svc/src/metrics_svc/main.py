"""metrics-svc: live conversion metrics, read API, Prometheus and Grafana.

Run the API with `metrics-svc api` (port 8004, SCRM_METRICS_PORT) and the worker with `metrics-svc worker`;
`make run` starts both with the rest of the platform.
"""

from __future__ import annotations

from pathlib import Path

from metrics_svc.config import MetricsSettings
from metrics_svc.stream import TOPICS, build_handler
from scrm_shared.service import ServiceSpec
from scrm_shared.service.cli import service_cli
from scrm_shared.service.tally import ingest_router

SPEC = ServiceSpec(
    name="metrics-svc",
    schema="metrics",
    migrations=Path(__file__).resolve().parents[2] / "migrations",
    routers=(ingest_router,),
    description="live conversion metrics, read API, Prometheus and Grafana",
)

cli = service_cli(SPEC, MetricsSettings, topics=TOPICS, build_handler=build_handler)
