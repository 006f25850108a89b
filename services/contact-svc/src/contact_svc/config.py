"""Settings of contact-svc (env prefix SCRM_; port from SCRM_CONTACT_PORT)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class ContactSettings(ServiceSettings):
    port: int = Field(default=8001, validation_alias=AliasChoices("SCRM_CONTACT_PORT"))
