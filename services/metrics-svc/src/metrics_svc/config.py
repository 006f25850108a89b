"""Settings of metrics-svc (env prefix SCRM_; port from SCRM_METRICS_PORT)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class MetricsSettings(ServiceSettings):
    port: int = Field(default=8004, validation_alias=AliasChoices("SCRM_METRICS_PORT"))
