"""tag-svc keeps each tenant's WeCom app secret sealed in PostgreSQL, reads it back for its
WeCom calls, and re-seals at start-up what an older key (or none) left behind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from scrm_shared.secrets import PREFIX, new_key
from scrm_shared.service import create_service_app
from tag_svc.config import TagSettings
from tag_svc.main import SPEC
from tag_svc.tags.store import wecom as store

pytestmark = pytest.mark.integration

SECRET = "Xq9_Ld-3kVbN7sTzRw8YcHfGpJmA2eUoQiEnBvCx"
SELECT_STORED = "SELECT secret FROM wecom_credentials WHERE tenant_id = $1"


async def test_the_secret_is_stored_sealed_and_read_back(
    client: httpx.AsyncClient, auth, tenant: str, pool: asyncpg.Pool, tag_settings: TagSettings
):
    resp = await client.put(
        "/v1/wecom/credentials",
        json={"corp_id": "ww5823bf96", "secret": SECRET},
        headers=auth(tenant, "admin"),
    )
    assert resp.status_code == 200, resp.text
    stored = await pool.fetchval(SELECT_STORED, tenant)
    assert stored.startswith(f"{PREFIX}dev:") and SECRET not in stored
    creds = await store.get_credentials(pool, tag_settings.secret_box, tenant)
    assert creds is not None and creds.secret == SECRET
    # The stored value moved to another tenant's row does not open there.
    other = f"o{tenant}"
    await pool.execute(
        "INSERT INTO wecom_credentials (tenant_id, corp_id, secret) VALUES ($1, 'ww', $2)", other, stored
    )
    with pytest.raises(ValueError, match="does not open"):
        await store.get_credentials(pool, tag_settings.secret_box, other)


async def test_start_up_reseals_plaintext_and_older_keys(tag_settings: TagSettings, tenant: str):
    old, new = f"k1:{new_key()}", f"k2:{new_key()}"
    plain, rotated = f"p{tenant}", f"r{tenant}"

    first = with_keys(tag_settings, old)
    async with running(first) as pool:
        await pool.execute(  # a row from before sealing existed
            "INSERT INTO wecom_credentials (tenant_id, corp_id, secret) VALUES ($1, 'ww', $2)", plain, SECRET
        )
        await store.upsert_credentials(pool, first.secret_box, rotated, corp_id="ww", secret=SECRET)
        assert await pool.fetchval(SELECT_STORED, plain) == SECRET
        assert (await pool.fetchval(SELECT_STORED, rotated)).startswith(f"{PREFIX}k1:")

    # The operator puts a new key first and restarts: both rows end up under k2...
    second = with_keys(tag_settings, f"{new},{old}")
    async with running(second) as pool:
        for tenant_id in (plain, rotated):
            stored = await pool.fetchval(SELECT_STORED, tenant_id)
            assert stored.startswith(f"{PREFIX}k2:") and SECRET not in stored

    # ...so the old key can go.
    last = with_keys(tag_settings, new)
    async with running(last) as pool:
        for tenant_id in (plain, rotated):
            creds = await store.get_credentials(pool, last.secret_box, tenant_id)
            assert creds is not None and creds.secret == SECRET


def with_keys(settings: TagSettings, keys: str) -> TagSettings:
    return TagSettings(**{**settings.model_dump(exclude={"secrets_keys"}), "secrets_keys": keys})


@contextlib.asynccontextmanager
async def running(settings: TagSettings) -> AsyncIterator[asyncpg.Pool]:
    """The tag-svc API started (and stopped) with ``settings``; yields its pool."""
    app = create_service_app(SPEC, settings)
    async with app.router.lifespan_context(app):
        yield app.state.pool
