"""Settings of contact-svc (env prefix SCRM_; port from SCRM_CONTACT_PORT)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class ContactSettings(ServiceSettings):
    port: int = Field(default=8001, validation_alias=AliasChoices("SCRM_CONTACT_PORT"))
    # WeCom's server API; tests and local runs point it at a stand-in (WeCom is unreachable here).
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    # Largest callback body accepted (WeCom's are a few KB).
    wecom_callback_max_bytes: int = 64 * 1024
    # Enrichment: fetch profiles of new contacts through WeCom's API (off when no tenant has a secret).
    enrichment_enabled: bool = True
    enrichment_interval_seconds: float = 2.0
