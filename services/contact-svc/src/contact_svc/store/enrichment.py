"""SQL of enrichment (profiles fetched from WeCom) and reconciliation (follows compared with WeCom).

Every statement is a named constant with ``$n`` parameters and, except the tenant listing that
enrichment starts from, is scoped by ``tenant_id``. The connection's ``search_path`` is the
service schema (see :func:`scrm_shared.db.pool.create_pool`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from contact_svc.store.wecom import SECRET
from scrm_shared.secrets import SealedError, SecretBox

log = logging.getLogger(__name__)

Connection = asyncpg.Connection | PoolConnectionProxy
Executor = asyncpg.Pool | Connection

# --- tenants and credentials -----------------------------------------------------------------

# Enrichment's starting point: the tenants that gave us an app secret (the only cross-tenant read).
SELECT_ENRICHABLE_TENANTS = """
SELECT tenant_id, corp_id, secret
FROM wecom_config
WHERE secret IS NOT NULL AND secret <> ''
ORDER BY tenant_id
"""
SELECT_CREDENTIALS = """
SELECT tenant_id, corp_id, secret
FROM wecom_config
WHERE tenant_id = $1
"""

# --- enrichment ------------------------------------------------------------------------------

# Oldest first; contacts that failed recently wait for their retry_after (partial index
# contacts_enrich_idx covers the contacts side).
SELECT_CONTACTS_TO_ENRICH = """
SELECT c.external_userid
FROM contacts c
LEFT JOIN enrichment_attempts a
       ON a.tenant_id = c.tenant_id AND a.external_userid = c.external_userid
WHERE c.tenant_id = $1
  AND c.enriched_at IS NULL
  AND c.status <> 'erased'
  AND (a.retry_after IS NULL OR a.retry_after <= now())
ORDER BY c.created_at, c.contact_id
LIMIT $2
"""
# Guarded: a contact erased (or enriched by another worker) while we were asking WeCom is left
# alone, and nothing is published for it. Locks the row until the transaction ends.
MARK_ENRICHED = """
UPDATE contacts
SET enriched_at = now()
WHERE tenant_id = $1 AND external_userid = $2 AND enriched_at IS NULL AND status <> 'erased'
RETURNING contact_id
"""
DELETE_ATTEMPTS = """
DELETE FROM enrichment_attempts
WHERE tenant_id = $1 AND external_userid = $2
"""
# The wait doubles with every failure: $4 * 2^(attempts-1), at most $5.
RECORD_FAILED_ATTEMPT = """
INSERT INTO enrichment_attempts AS a (tenant_id, external_userid, attempts, last_errcode, retry_after)
VALUES ($1, $2, 1, $3, now() + $4::interval)
ON CONFLICT (tenant_id, external_userid) DO UPDATE
SET attempts = a.attempts + 1,
    last_errcode = EXCLUDED.last_errcode,
    retry_after = now() + least($4::interval * power(2, a.attempts), $5::interval),
    updated_at = now()
"""

# --- leader lock -----------------------------------------------------------------------------

CURRENT_SCHEMA = "SELECT current_schema()"
TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock($1)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock($1)"

# --- reconciliation --------------------------------------------------------------------------

# Staff on record, plus anyone some active follow still names (the staff table may lag behind).
SELECT_STAFF_TO_RECONCILE = """
SELECT staff_id FROM staff WHERE tenant_id = $1
UNION
SELECT staff_id FROM follows WHERE tenant_id = $1 AND status = 'active'
ORDER BY staff_id
"""
SELECT_FOLLOWS_OF_STAFF = """
SELECT external_userid, status, last_event_at
FROM follows
WHERE tenant_id = $1 AND staff_id = $2
"""


@dataclass(frozen=True)
class Credentials:
    """A tenant's WeCom corp id and app secret (the secret never goes into a repr)."""

    tenant_id: str
    corp_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class LocalFollow:
    """Our record of one staff member's relation to a customer."""

    external_userid: str = field(repr=False)
    active: bool
    last_event_at: datetime


async def tenants_with_secret(db: Executor, box: SecretBox) -> list[Credentials]:
    """Every tenant whose WeCom settings include an app secret the key ring opens (one that it
    does not open is logged and left out: the other tenants' enrichment goes on)."""
    found = []
    for r in await db.fetch(SELECT_ENRICHABLE_TENANTS):
        try:
            found.append(
                Credentials(r["tenant_id"], r["corp_id"], SECRET.open(box, r["tenant_id"], r["secret"]))
            )
        except SealedError as exc:
            log.error("wecom secret cannot be opened: %s", exc, extra={"tenant_id": r["tenant_id"]})
    return found


async def credentials(db: Executor, box: SecretBox, tenant_id: str) -> Credentials | None:
    """The tenant's WeCom credentials; ``None`` without settings or without a secret."""
    row = await db.fetchrow(SELECT_CREDENTIALS, tenant_id)
    if row is None or not row["secret"]:
        return None
    return Credentials(row["tenant_id"], row["corp_id"], SECRET.open(box, tenant_id, row["secret"]))


async def contacts_to_enrich(db: Executor, tenant_id: str, limit: int) -> list[str]:
    """external_userids of the tenant's contacts still without a WeCom profile, oldest first."""
    rows = await db.fetch(SELECT_CONTACTS_TO_ENRICH, tenant_id, limit)
    return [r["external_userid"] for r in rows]


async def mark_enriched(conn: Connection, tenant_id: str, external_userid: str) -> bool:
    """Set enriched_at and forget failed attempts; ``False`` when the contact is no longer
    waiting (erased, or enriched by someone else), in which case nothing should be published."""
    contact_id = await conn.fetchval(MARK_ENRICHED, tenant_id, external_userid)
    await conn.execute(DELETE_ATTEMPTS, tenant_id, external_userid)
    return contact_id is not None


async def record_failed_attempt(
    db: Executor,
    tenant_id: str,
    external_userid: str,
    errcode: int | None,
    *,
    first_wait: timedelta,
    max_wait: timedelta,
) -> None:
    """Note a failed fetch; the contact is skipped until its (growing) wait has passed."""
    await db.execute(RECORD_FAILED_ATTEMPT, tenant_id, external_userid, errcode, first_wait, max_wait)


async def current_schema(db: Executor) -> str:
    return str(await db.fetchval(CURRENT_SCHEMA))


async def try_advisory_lock(conn: Connection, key: int) -> bool:
    """Session-level lock (released by :func:`advisory_unlock`, or when the session resets)."""
    return bool(await conn.fetchval(TRY_ADVISORY_LOCK, key))


async def advisory_unlock(conn: Connection, key: int) -> None:
    await conn.fetchval(ADVISORY_UNLOCK, key)


async def staff_to_reconcile(db: Executor, tenant_id: str) -> list[str]:
    """The tenant's staff userids to compare with WeCom, sorted."""
    rows = await db.fetch(SELECT_STAFF_TO_RECONCILE, tenant_id)
    return [r["staff_id"] for r in rows]


async def follows_of_staff(db: Executor, tenant_id: str, staff_id: str) -> dict[str, LocalFollow]:
    """Our follow relations of one staff member (active and deleted), by external_userid."""
    rows = await db.fetch(SELECT_FOLLOWS_OF_STAFF, tenant_id, staff_id)
    return {
        r["external_userid"]: LocalFollow(r["external_userid"], r["status"] == "active", r["last_event_at"])
        for r in rows
    }
