"""tag-svc: tag groups and tags, manual, bulk and WeCom-side tagging, rule-based tagging, live
segment membership.

Run the API with `tag-svc api` (port 8002, SCRM_TAG_PORT) and the worker with `tag-svc worker`
(its consume loop, the bulk tag job runner and the WeCom tag pusher); `make run` starts both with
the rest of the platform.
"""

from __future__ import annotations

from pathlib import Path

from scrm_shared.service import ServiceSpec
from scrm_shared.service.cli import service_cli
from tag_svc.api import ROUTERS
from tag_svc.config import TagSettings
from tag_svc.stream import BACKGROUND, TOPICS, build_faust, build_handler
from tag_svc.tags.store.wecom import SEALED

SPEC = ServiceSpec(
    name="tag-svc",
    schema="tag",
    migrations=Path(__file__).resolve().parents[2] / "migrations",
    routers=ROUTERS,
    sealed=SEALED,
    description="tag groups and tags, rule-based tagging, live segment membership",
)

cli = service_cli(
    SPEC,
    TagSettings,
    topics=TOPICS,
    build_handler=build_handler,
    background=BACKGROUND,
    faust_app=build_faust,
)
