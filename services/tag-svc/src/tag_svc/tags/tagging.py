"""One tag change applied inside the caller's transaction: the contact_tags rows, a
``contact-tagged`` event per row that really changed (outbox), and the mark_tag pushes that carry
the change to WeCom.

The API (manual tagging), the job runner (bulk) and the worker (WeCom-side edits) all come
through :func:`apply`, so the rules hold the same everywhere: a repeat changes nothing and
publishes nothing, an erased contact is never tagged, WeCom's own changes are never pushed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Counter

from scrm_shared.db.outbox import enqueue_events
from tag_svc.tags.domain import Actor, Change, TagRef, push_plans, tagged_events
from tag_svc.tags.store import Conn
from tag_svc.tags.store import contacts as store
from tag_svc.tags.store.wecom import queue_pushes

__all__ = ["TAG_CHANGES", "TOPIC", "apply"]

TOPIC = "contact-tagged"

TAG_CHANGES = Counter(
    "scrm_tag_contact_changes",
    "Contact tags added or removed, by who tagged (staff, operator, rule, wecom).",
    ["by", "change"],
)


async def apply(
    conn: Conn,
    tenant_id: str,
    *,
    actor: Actor,
    at: datetime,
    add: Sequence[tuple[str, TagRef]] = (),
    remove: Sequence[tuple[str, TagRef]] = (),
    push: bool = True,
) -> list[Change]:
    """Add and remove (external_userid, tag) pairs; returns the changes that happened.

    The tags must have been locked by the caller (:func:`store.lock_tags` and friends) in this
    transaction. ``push=False`` queues nothing for WeCom (a deleted tag's purge).
    """
    refs = {ref.tag_id: ref for _, ref in (*add, *remove)}
    added = await store.insert_contact_tags(
        conn, tenant_id, [(e, r.tag_id) for e, r in add], by=actor.by, actor_id=actor.actor_id, at=at
    )
    removed = await store.delete_contact_tags(conn, tenant_id, [(e, r.tag_id) for e, r in remove])
    changes = [Change(e, refs[t], "added") for e, t in sorted(added)]
    changes += [Change(e, refs[t], "removed") for e, t in sorted(removed)]
    if not changes:
        return changes
    await enqueue_events(conn, TOPIC, tagged_events(tenant_id, changes, actor, at))
    if push:
        await queue_pushes(conn, tenant_id, push_plans(changes, actor))
    if added:
        TAG_CHANGES.labels(actor.by, "added").inc(len(added))
    if removed:
        TAG_CHANGES.labels(actor.by, "removed").inc(len(removed))
    return changes
