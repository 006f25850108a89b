"""campaign-svc: campaigns, guardrails, delivery through a WeCom adapter.

Run the API with `campaign-svc api` (port 8003, SCRM_CAMPAIGN_PORT) and the worker with `campaign-svc worker`;
`make run` starts both with the rest of the platform.
"""

from __future__ import annotations

from pathlib import Path

from campaign_svc.config import CampaignSettings
from campaign_svc.stream import TOPICS, build_handler
from scrm_shared.service import ServiceSpec
from scrm_shared.service.cli import service_cli
from scrm_shared.service.tally import ingest_router

SPEC = ServiceSpec(
    name="campaign-svc",
    schema="campaign",
    migrations=Path(__file__).resolve().parents[2] / "migrations",
    routers=(ingest_router,),
    description="campaigns, guardrails, delivery through a WeCom adapter",
)

cli = service_cli(SPEC, CampaignSettings, topics=TOPICS, build_handler=build_handler)
