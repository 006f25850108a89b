"""Settings of tag-svc (env prefix SCRM_; port from SCRM_TAG_PORT)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class TagSettings(ServiceSettings):
    port: int = Field(default=8002, validation_alias=AliasChoices("SCRM_TAG_PORT"))
