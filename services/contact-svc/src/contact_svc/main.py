"""contact-svc: customers (WeCom external contacts), staff, stores, follow relations, the WeCom
callback, identity resolution, transfers and erasure.

Run the API with `contact-svc api` (port 8001, SCRM_CONTACT_PORT) and the worker with
`contact-svc worker`; `make run` starts both with the rest of the platform.
"""

from __future__ import annotations

from pathlib import Path

from contact_svc.api import ROUTERS
from contact_svc.config import ContactSettings
from contact_svc.store.wecom import SEALED
from contact_svc.stream import BACKGROUND, TOPICS, build_handler
from scrm_shared.service import ServiceSpec
from scrm_shared.service.cli import service_cli

SPEC = ServiceSpec(
    name="contact-svc",
    schema="contact",
    migrations=Path(__file__).resolve().parents[2] / "migrations",
    routers=ROUTERS,
    sealed=SEALED,
    description="customers, staff, follow relations, WeCom callback, identity resolution, erasure",
)

cli = service_cli(SPEC, ContactSettings, topics=TOPICS, build_handler=build_handler, background=BACKGROUND)
