"""/v1/wecom: the tenant's WeCom settings, and syncing the tag catalogue with WeCom.

- ``PUT /credentials`` (admins) stores the corp id and secret tag-svc calls WeCom with; ``GET``
  (admins, operators) shows the corp id only, never the secret.
- ``POST /tags/sync`` (admins) pulls WeCom's corp tag library into the catalogue (matching rules:
  :mod:`tag_svc.tags.corp_tags`) and answers what changed; ``?push_local=true`` then creates the
  local-only tags in WeCom and links them. With the recording adapter (the default outside prod)
  the library is the in-memory stand-in's (``app.state.wecom``, empty until seeded).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from scrm_shared.auth import AdminOnly, AdminOrOperator
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool, Settings, get_settings
from tag_svc.schemas import (
    CorpTagSyncIssue,
    CorpTagSyncReport,
    UnlinkedTag,
    WeComCredentials,
    WeComCredentialsIn,
)
from tag_svc.tags import corp_tags
from tag_svc.tags.corp_tags import CorpTagAdapter, SyncReport
from tag_svc.tags.store import wecom as store
from tag_svc.tags.wecom import NO_CREDENTIALS, RecordingAdapter, WeComTagError, open_http_adapter

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/wecom", tags=["wecom settings"])


def _public(creds: store.Credentials) -> WeComCredentials:
    return WeComCredentials(tenant_id=creds.tenant_id, corp_id=creds.corp_id, updated_at=creds.updated_at)


def _credentials_missing() -> Problem:
    return Problem(
        404,
        "WeCom credentials not configured",
        "this tenant has no WeCom credentials yet; PUT /v1/wecom/credentials",
        type="wecom-credentials-missing",
    )


@router.put("/credentials", response_model=WeComCredentials, summary="Set the tenant's WeCom API credentials")
async def put_credentials(
    body: WeComCredentialsIn, principal: AdminOnly, pool: Pool, settings: Settings
) -> WeComCredentials:
    creds = await store.upsert_credentials(
        pool, settings.secret_box, principal.tenant_id, corp_id=body.corp_id, secret=body.secret
    )
    log.info("wecom credentials updated", extra={"tenant_id": principal.tenant_id})
    return _public(creds)


@router.get("/credentials", response_model=WeComCredentials, summary="The tenant's WeCom API credentials")
async def get_credentials(principal: AdminOrOperator, pool: Pool, settings: Settings) -> WeComCredentials:
    """The corp id and when the credentials were set; the secret is never shown."""
    creds = await store.get_credentials(pool, settings.secret_box, principal.tenant_id)
    if creds is None:
        raise _credentials_missing()
    return _public(creds)


async def corp_tag_adapter(request: Request) -> AsyncIterator[CorpTagAdapter]:
    """The corp tag library the settings ask for: the app's in-memory stand-in (made on first use,
    tests may set ``app.state.wecom`` first), or WeCom over HTTP for this request. (No service
    lifespan hook holds a client across requests, so a sync asks gettoken anew: syncs are rare.)"""
    state = request.app.state
    settings = get_settings(request)
    if settings.effective_wecom_adapter == "recording":
        if getattr(state, "wecom", None) is None:
            state.wecom = RecordingAdapter(keep=1000)
        yield state.wecom
        return
    async with open_http_adapter(settings, state.pool) as adapter:
        yield adapter


CorpTags = Annotated[CorpTagAdapter, Depends(corp_tag_adapter)]

_SYNC_RESPONSES = {
    404: {"description": "The tenant has no WeCom credentials (PUT /v1/wecom/credentials)."},
    502: {"description": "WeCom refused the call (its errcode is in the body); nothing was changed."},
    503: {"description": "WeCom is busy or unreachable; try again later. Nothing was changed."},
}


@router.post(
    "/tags/sync",
    response_model=CorpTagSyncReport,
    summary="Sync the tag catalogue with WeCom's corp tag library",
    responses=_SYNC_RESPONSES,
)
async def sync_tags(
    principal: AdminOnly,
    pool: Pool,
    adapter: CorpTags,
    push_local: Annotated[
        bool, Query(description="Then create the local-only tags (and their groups) in WeCom and link them.")
    ] = False,
) -> CorpTagSyncReport:
    """Pull WeCom's corp tag library: each WeCom group and tag is matched to a local one by WeCom
    id, else by name (a group's name; a tag's name within the matched group) and linked, else
    created. Linked groups and tags take WeCom's names and order; local tags whose WeCom tag is gone
    are unlinked (kept). What could not be done (a name taken locally, a rename closing a cycle of
    tag rules) is in ``issues``; the rest is done. A repeat with no change in WeCom reports zeros."""
    tenant = principal.tenant_id
    try:
        report = await _pull(pool, tenant, adapter)
        if push_local:
            report.groups_pushed, report.tags_pushed = await corp_tags.push_local(pool, tenant, adapter)
            if report.groups_pushed or report.tags_pushed:
                # The pushed tags take their place in WeCom's order now, not at the next sync.
                report.merge(await _pull(pool, tenant, adapter))
    except WeComTagError as exc:
        raise _wecom_problem(exc) from None
    log.info(
        "wecom corp tags synced",
        extra={"tenant_id": tenant, "issues": len(report.issues), **{k: getattr(report, k) for k in _LOGGED}},
    )
    return _shape(report)


_LOGGED = ("groups_created", "tags_created", "tags_linked", "tags_renamed", "tags_unlinked", "tags_pushed")


async def _pull(pool: Pool, tenant_id: str, adapter: CorpTagAdapter) -> SyncReport:
    # Read WeCom first: no network wait inside the transaction.
    library = await adapter.corp_tag_list(tenant_id)
    async with pool.acquire() as conn, conn.transaction():
        return await corp_tags.pull(conn, tenant_id, library)


def _wecom_problem(exc: WeComTagError) -> Problem:
    if exc.errcode == NO_CREDENTIALS:
        return _credentials_missing()
    if exc.retryable:
        return Problem(503, "WeCom unavailable", str(exc), type="wecom-unavailable", errcode=exc.errcode)
    return Problem(502, "WeCom refused the call", str(exc), type="wecom-error", errcode=exc.errcode)


def _shape(report: SyncReport) -> CorpTagSyncReport:
    counts = {k: v for k, v in asdict(report).items() if isinstance(v, int)}
    return CorpTagSyncReport(
        **counts,
        unlinked=[
            UnlinkedTag(tag_id=t.tag_id, group_id=t.group_id, name=t.name, wecom_tag_id=t.wecom_tag_id or "")
            for t in report.unlinked
        ],
        issues=[CorpTagSyncIssue(**asdict(i)) for i in report.issues],
    )
