"""Service runtime: the FastAPI app factory and the worker runner every service uses.

A service supplies its name, schema, migrations, routers and a handler builder; this package
wires Postgres, Kafka, telemetry, health/readiness, metrics and problem details the same way
for all four.
"""

from scrm_shared.service.app import ServiceSpec, create_service_app, run_api
from scrm_shared.service.settings import ServiceSettings
from scrm_shared.service.worker import WorkerDeps, run_worker

__all__ = [
    "ServiceSettings",
    "ServiceSpec",
    "WorkerDeps",
    "create_service_app",
    "run_api",
    "run_worker",
]
