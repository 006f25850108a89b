"""Settings every service shares (env prefix ``SCRM_``).

Each service subclasses :class:`PlatformSettings` with its own fields and builds it once in
``main``; nothing reads the environment at import time.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scrm_shared.secrets import SecretBox

DEV_JWT_SECRET = "dev-only-insecure-secret-change-me"  # noqa: S105 - refused outside env=dev
# The key of dev and test stacks: 32 zero bytes, so it seals nothing worth the name. Refused in prod.
DEV_SECRETS_KEYS = "dev:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


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
    # Keys sealing tenants' secrets at rest (scrm_shared.secrets): "id:base64-of-32-bytes", comma
    # separated, the first one sealing. `scrm secrets new-key` prints a key.
    secrets_keys: SecretStr | None = None
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
        if self.secrets_keys is None:
            if self.env == "prod":
                raise ValueError("SCRM_SECRETS_KEYS is required when SCRM_ENV=prod")
            self.secrets_keys = SecretStr(DEV_SECRETS_KEYS)
        elif self.env == "prod" and self.secrets_keys.get_secret_value() == DEV_SECRETS_KEYS:
            raise ValueError("SCRM_SECRETS_KEYS must not be the dev key when SCRM_ENV=prod")
        _ = self.secret_box  # a malformed key ring fails here, at start-up, not at the first secret
        return self

    @cached_property
    def secret_box(self) -> SecretBox:
        """The key ring of ``secrets_keys``."""
        assert self.secrets_keys is not None
        return SecretBox.from_setting(self.secrets_keys.get_secret_value())
