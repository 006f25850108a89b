"""SQL of syncing the catalogue with WeCom's corp tag library (:mod:`tag_svc.tags.corp_tags`).

The sync's writes are the catalogue's own statements (:mod:`tag_svc.tags.store.catalog`); here are
only its lock and what a push reads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tag_svc.tags.store import Conn

__all__ = ["LocalOnlyGroup", "LocalOnlyTag", "local_only", "lock_sync"]

LOCK_SYNC = "SELECT pg_advisory_xact_lock(hashtextextended('tag-svc:corp-tag-sync:' || $1, 0))"

# Live groups with their live tags that mirror no WeCom tag, in display order.
SELECT_LOCAL_ONLY = """
SELECT g.group_id, g.name, g.wecom_group_id,
       array_agg(t.tag_id ORDER BY t.sort_order, t.name, t.tag_id) AS tag_ids,
       array_agg(t.name ORDER BY t.sort_order, t.name, t.tag_id) AS tag_names
FROM tag_groups g
JOIN tags t ON t.tenant_id = g.tenant_id AND t.group_id = g.group_id
WHERE g.tenant_id = $1 AND g.deleted_at IS NULL AND t.deleted_at IS NULL AND t.wecom_tag_id IS NULL
GROUP BY g.group_id, g.name, g.wecom_group_id, g.sort_order
ORDER BY g.sort_order, g.name, g.group_id
"""


@dataclass(frozen=True, slots=True)
class LocalOnlyTag:
    tag_id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class LocalOnlyGroup:
    """A live group and its live tags that mirror no WeCom tag."""

    group_id: uuid.UUID
    name: str
    wecom_group_id: str | None
    tags: tuple[LocalOnlyTag, ...]


async def lock_sync(conn: Conn, tenant_id: str) -> None:
    """Hold the tenant's sync lock until the transaction ends (one sync at a time)."""
    await conn.execute(LOCK_SYNC, tenant_id)


async def local_only(conn: Conn, tenant_id: str) -> list[LocalOnlyGroup]:
    """The groups that have tags mirroring no WeCom tag, with those tags."""
    return [
        LocalOnlyGroup(
            r["group_id"],
            r["name"],
            r["wecom_group_id"],
            tuple(LocalOnlyTag(i, n) for i, n in zip(r["tag_ids"], r["tag_names"], strict=True)),
        )
        for r in await conn.fetch(SELECT_LOCAL_ONLY, tenant_id)
    ]
