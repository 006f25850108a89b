"""Settings every service shares (env prefix ``SCRM_``).

Each service subclasses :class:`PlatformSettings` with its own fields and builds it once in
``main``; nothing reads the environment at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-secret-change-me"  # noqa: S105 - refused outside env=dev


class PlatformSettings(BaseSettings):
    """Addresses and secrets common to every service and worker."""

    model_config = SettingsConfigDict(env_prefix="SCRM_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # SCRM_DATABASE_URL wins; the conventional DATABASE_URL is honoured too.
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("SCRM_DATABASE_URL", "DATABASE_URL"),
    )
    jwt_secret: SecretStr | None = None
    otlp_endpoint: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
    # Partition count for topics this platform creates at start-up.
    topic_partitions: int = 6
    # Retention for topics this platform creates (None: the broker's default).
    topic_retention_ms: int | None = None

    @model_validator(mode="after")
    def _secret_required_outside_dev(self) -> PlatformSettings:
        if self.jwt_secret is None:
            if self.env == "prod":
                raise ValueError("SCRM_JWT_SECRET is required when SCRM_ENV=prod")
            self.jwt_secret = SecretStr(DEV_JWT_SECRET)
        return self
