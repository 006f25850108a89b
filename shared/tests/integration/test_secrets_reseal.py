"""Re-sealing at start-up against a real PostgreSQL: plaintext and older keys move to the
current key, values already current and unreadable ones stay, concurrent runs are harmless."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from scrm_shared.secrets import SealedColumn, SecretBox, new_key, reseal

pytestmark = pytest.mark.integration

TOKEN = SealedColumn("creds", "token")
SECRET = SealedColumn("creds", "secret")
OLD_KEY = new_key()
OLD = SecretBox.from_setting(f"k1:{OLD_KEY}")
LOST = SecretBox.from_setting(f"k0:{new_key()}")


async def test_reseal_moves_every_value_to_the_first_key(pg_pool: asyncpg.Pool):
    await pg_pool.execute("CREATE TABLE creds (tenant_id text PRIMARY KEY, token text NOT NULL, secret text)")
    ring = SecretBox.from_setting(f"k2:{new_key()},k1:{OLD_KEY}")
    rows = {
        "plain": ("tok-plain", "sec-plain"),  # stored before sealing existed
        "old": (TOKEN.seal(OLD, "old", "tok-old"), SECRET.seal(OLD, "old", "sec-old")),
        "current": (TOKEN.seal(ring, "current", "tok-cur"), None),
        "lost": (TOKEN.seal(LOST, "lost", "tok-lost"), ""),  # sealed with a key no longer held
    }
    for tenant, (token, secret) in rows.items():
        await pg_pool.execute("INSERT INTO creds VALUES ($1, $2, $3)", tenant, token, secret)

    # Two replicas starting together: every value is re-sealed once.
    first, second = await asyncio.gather(*(reseal(pg_pool, ring, [TOKEN, SECRET]) for _ in range(2)))
    assert first["creds.token"] + second["creds.token"] == 2
    assert first["creds.secret"] + second["creds.secret"] == 2

    stored = {r["tenant_id"]: r for r in await pg_pool.fetch("SELECT * FROM creds")}
    for tenant, token, secret in (("plain", "tok-plain", "sec-plain"), ("old", "tok-old", "sec-old")):
        assert ring.is_current(stored[tenant]["token"]) and ring.is_current(stored[tenant]["secret"])
        assert TOKEN.open(ring, tenant, stored[tenant]["token"]) == token
        assert SECRET.open(ring, tenant, stored[tenant]["secret"]) == secret
    assert stored["current"]["token"] == rows["current"][0]  # already current: untouched
    assert stored["current"]["secret"] is None
    assert stored["lost"]["token"] == rows["lost"][0]  # unreadable: left for an operator
    assert stored["lost"]["secret"] == ""  # empty stays empty, not sealed

    assert await reseal(pg_pool, ring, [TOKEN, SECRET]) == {"creds.token": 0, "creds.secret": 0}
