"""Settings of campaign-svc (env prefix SCRM_; port from SCRM_CAMPAIGN_PORT)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class CampaignSettings(ServiceSettings):
    port: int = Field(default=8003, validation_alias=AliasChoices("SCRM_CAMPAIGN_PORT"))
