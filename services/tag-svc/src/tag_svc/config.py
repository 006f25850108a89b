"""Settings of tag-svc (env prefix SCRM_; port from SCRM_TAG_PORT, the rest SCRM_TAG_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from scrm_shared.service import ServiceSettings


class TagSettings(ServiceSettings):
    port: int = Field(default=8002, validation_alias=AliasChoices("SCRM_TAG_PORT"))

    # Bulk tag jobs: contacts per transaction, and how often an idle runner looks for new jobs.
    tag_job_chunk_size: int = Field(default=1000, ge=1, le=10_000)
    tag_job_poll_seconds: float = Field(default=1.0, gt=0)

    # Pushing tag changes made here to WeCom (externalcontact/mark_tag). "recording" keeps the
    # calls in memory (WeCom is unreachable locally and in tests); "http" calls WeCom's API with
    # each tenant's credentials (PUT /v1/wecom/credentials). Unset: "http" in prod, else "recording".
    tag_wecom_adapter: Literal["recording", "http"] | None = None
    tag_wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    tag_wecom_timeout_seconds: float = Field(default=10.0, gt=0)
    tag_wecom_push_poll_seconds: float = Field(default=1.0, gt=0)
    tag_wecom_push_batch: int = Field(default=100, ge=1, le=1000)
    # A failed push is retried after retry_base, doubling up to retry_cap, max_attempts in all.
    tag_wecom_push_max_attempts: int = Field(default=8, ge=1)
    tag_wecom_push_retry_base_seconds: float = Field(default=5.0, ge=0)
    tag_wecom_push_retry_cap_seconds: float = Field(default=3600.0, ge=0)

    # Orders whose customer identity (unionid, member id, phone hash) has not linked to any
    # contact within this many days are dropped from the pending queue.
    tag_pending_order_ttl_days: int = Field(default=180, ge=1)

    # The live segment processor: transactions a batch is applied in side by side (split by
    # contact), and how many facts it keeps in memory between batches (0: none).
    tag_segment_lanes: int = Field(default=2, ge=1, le=8)
    tag_segment_fact_cache_facts: int = Field(default=200_000, ge=0)

    # Segment previews: a rule whose plan PostgreSQL estimates at preview_split_min_cost or more
    # (its planner's cost units; 0: always) over a tenant of at least
    # preview_split_min_contacts is counted as this many contact ranges side by side (one
    # connection and one PostgreSQL backend each, one snapshot). At 1M profiles on the 2-core dev
    # VM (with migration 0011), two ranges took 20-60 % off every rule slower than 250 ms and
    # left the fast ones within 30 ms (tags and attributes, 100-200 ms, about 20-30 ms slower);
    # the floor keeps the cheapest (a tag alone: 27,000) whole.
    tag_preview_parallelism: int = Field(default=2, ge=1, le=8)
    tag_preview_split_min_contacts: int = Field(default=50_000, ge=0)
    tag_preview_split_min_cost: float = Field(default=30_000, ge=0)

    @property
    def effective_wecom_adapter(self) -> Literal["recording", "http"]:
        if self.tag_wecom_adapter is not None:
            return self.tag_wecom_adapter
        return "http" if self.env == "prod" else "recording"
