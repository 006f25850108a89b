"""/v1/wecom/credentials: the corp id and secret tag-svc pushes tag changes to WeCom with.

``PUT`` (admins) stores them; ``GET`` (admins, operators) shows the corp id only, never the
secret.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter

from scrm_shared.auth import AdminOnly, AdminOrOperator
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool
from tag_svc.schemas import WeComCredentials, WeComCredentialsIn
from tag_svc.tags.store import wecom as store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/wecom", tags=["wecom settings"])


def _public(creds: store.Credentials) -> WeComCredentials:
    return WeComCredentials(tenant_id=creds.tenant_id, corp_id=creds.corp_id, updated_at=creds.updated_at)


@router.put("/credentials", response_model=WeComCredentials, summary="Set the tenant's WeCom API credentials")
async def put_credentials(body: WeComCredentialsIn, principal: AdminOnly, pool: Pool) -> WeComCredentials:
    creds = await store.upsert_credentials(
        pool, principal.tenant_id, corp_id=body.corp_id, secret=body.secret
    )
    log.info("wecom credentials updated", extra={"tenant_id": principal.tenant_id})
    return _public(creds)


@router.get("/credentials", response_model=WeComCredentials, summary="The tenant's WeCom API credentials")
async def get_credentials(principal: AdminOrOperator, pool: Pool) -> WeComCredentials:
    """The corp id and when the credentials were set; the secret is never shown."""
    creds = await store.get_credentials(pool, principal.tenant_id)
    if creds is None:
        raise Problem(
            404,
            "WeCom credentials not configured",
            "this tenant has no WeCom credentials yet; PUT /v1/wecom/credentials",
            type="wecom-credentials-missing",
        )
    return _public(creds)
