"""SQL of the WeCom side: each tenant's callback settings and the callback archive.

Every statement is a named constant with ``$n`` parameters; functions take a connection (or a
pool) so callers decide the transaction. The Token, EncodingAESKey and app secret are stored
sealed (:mod:`scrm_shared.secrets`): functions take the key ring and hand out opened values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scrm_shared.secrets import SealedColumn, SecretBox

__all__ = [
    "SEALED",
    "ArchivedCallback",
    "StoredConfig",
    "archive_callback",
    "count_archived",
    "get_config",
    "upsert_config",
]

TOKEN = SealedColumn("wecom_config", "token")
ENCODING_AES_KEY = SealedColumn("wecom_config", "encoding_aes_key")
SECRET = SealedColumn("wecom_config", "secret")
SEALED = (TOKEN, ENCODING_AES_KEY, SECRET)
"""What start-up re-seals with the current key."""

SELECT_CONFIG = """
SELECT tenant_id, corp_id, token, encoding_aes_key, agent_id, secret, updated_at
FROM wecom_config
WHERE tenant_id = $1
"""

# agent_id and secret: $5/$6 replace the stored value only when $7/$8 say the caller sent them,
# so an admin can rotate the token without re-entering a secret the API never shows again.
UPSERT_CONFIG = """
INSERT INTO wecom_config AS c (tenant_id, corp_id, token, encoding_aes_key, agent_id, secret, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (tenant_id) DO UPDATE SET
    corp_id = EXCLUDED.corp_id,
    token = EXCLUDED.token,
    encoding_aes_key = EXCLUDED.encoding_aes_key,
    agent_id = CASE WHEN $7::boolean THEN EXCLUDED.agent_id ELSE c.agent_id END,
    secret = CASE WHEN $8::boolean THEN EXCLUDED.secret ELSE c.secret END,
    updated_at = now()
RETURNING tenant_id, corp_id, token, encoding_aes_key, agent_id, secret, updated_at
"""

# A WeCom retry of the same callback hashes the same: no row, and so no second event.
INSERT_ARCHIVE = """
INSERT INTO callback_archive
    (tenant_id, payload_hash, msg_type, event, change_type, external_userid, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, payload_hash) DO NOTHING
RETURNING id
"""

COUNT_ARCHIVED = "SELECT count(*) FROM callback_archive WHERE tenant_id = $1"

Executor = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool
"""A connection (inside the caller's transaction) or the pool (a statement on its own)."""


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """A tenant's WeCom settings as stored (secrets included: never return this from the API)."""

    tenant_id: str
    corp_id: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    agent_id: str | None
    secret: str | None = field(repr=False)
    updated_at: datetime

    @classmethod
    def opened(cls, box: SecretBox, row: Mapping[str, Any]) -> StoredConfig:
        """The settings of a stored row, secrets opened (:class:`~scrm_shared.secrets.SealedError`
        when no key of the ring opens one)."""
        tenant_id = row["tenant_id"]
        return cls(
            tenant_id=tenant_id,
            corp_id=row["corp_id"],
            token=TOKEN.open(box, tenant_id, row["token"]),
            encoding_aes_key=ENCODING_AES_KEY.open(box, tenant_id, row["encoding_aes_key"]),
            agent_id=row["agent_id"],
            secret=SECRET.open_optional(box, tenant_id, row["secret"]),
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class ArchivedCallback:
    """One accepted, decrypted callback (``payload`` is the decrypted XML)."""

    tenant_id: str
    payload_hash: str
    msg_type: str | None
    event: str | None
    change_type: str | None
    external_userid: str | None
    payload: str


async def get_config(conn: Executor, box: SecretBox, tenant_id: str) -> StoredConfig | None:
    """The tenant's WeCom settings, or ``None`` when none were configured."""
    row = await conn.fetchrow(SELECT_CONFIG, tenant_id)
    return StoredConfig.opened(box, row) if row is not None else None


async def upsert_config(
    conn: Executor,
    box: SecretBox,
    *,
    tenant_id: str,
    corp_id: str,
    token: str,
    encoding_aes_key: str,
    agent_id: str | None,
    secret: str | None,
    set_agent_id: bool,
    set_secret: bool,
) -> StoredConfig:
    """Create or replace the tenant's settings; ``agent_id``/``secret`` change only when ``set_*``."""
    row = await conn.fetchrow(
        UPSERT_CONFIG,
        tenant_id,
        corp_id,
        TOKEN.seal(box, tenant_id, token),
        ENCODING_AES_KEY.seal(box, tenant_id, encoding_aes_key),
        agent_id,
        None if secret is None else SECRET.seal(box, tenant_id, secret),
        set_agent_id,
        set_secret,
    )
    return StoredConfig.opened(box, row)


async def archive_callback(conn: Executor, callback: ArchivedCallback) -> bool:
    """Archive a callback; ``False`` when this tenant already archived the same payload."""
    archived_id = await conn.fetchval(
        INSERT_ARCHIVE,
        callback.tenant_id,
        callback.payload_hash,
        callback.msg_type,
        callback.event,
        callback.change_type,
        callback.external_userid,
        callback.payload,
    )
    return archived_id is not None


async def count_archived(conn: Executor, tenant_id: str) -> int:
    """How many callbacks the tenant has archived (operations and tests)."""
    return int(await conn.fetchval(COUNT_ARCHIVED, tenant_id))
