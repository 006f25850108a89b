"""What tag-svc's worker does with the events of a batch, inside the batch's transaction.

- ``contact-erased``: the tombstone. The contact's tags, follows, WeCom snapshots and pending
  pushes go, and nothing tags it again. No ``contact-tagged`` follows: the tombstone itself tells
  every consumer; counts elsewhere (jobs, tallies) stay.
- ``friend-added`` / ``friend-deleted``: the follow relations (a guide's scope, and whom a change
  is pushed to WeCom as).
- ``contact-updated`` with ``"tags"`` in ``changed``: a staff member's full WeCom tag set for the
  contact. The difference from that staff member's previous set, mapped through
  ``tags.wecom_tag_id``, is applied ``by="wecom"`` with ``contact-tagged`` events and no push
  back. WeCom tag ids that map to no tag here are ignored and counted; an older snapshot than the
  one applied already is ignored.
- ``segment-changed``: the tag rules of the segment (:mod:`tag_svc.tags.rules`): a contact that
  is a member now gets their tags ``by="rule"``, one that is not loses the tags they set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Counter

from scrm_shared.events import (
    ContactErasedEvent,
    ContactUpdatedEvent,
    Event,
    FriendAddedEvent,
    FriendDeletedEvent,
    SegmentChangedEvent,
)
from tag_svc.tags import rules, tagging
from tag_svc.tags.domain import Actor, wecom_diff
from tag_svc.tags.store import Conn
from tag_svc.tags.store import contacts as store

__all__ = ["WECOM_EDITS", "WECOM_UNKNOWN_TAGS", "apply_events"]

log = logging.getLogger(__name__)

WECOM_EDITS = Counter(
    "scrm_tag_wecom_edits",
    "WeCom-side tag edits (contact-updated with tags) by outcome (applied, stale, erased, no-staff).",
    ["outcome"],
)
WECOM_UNKNOWN_TAGS = Counter(
    "scrm_tag_wecom_unknown_tags", "WeCom tag ids in edits that map to no tag here (ignored)."
)

Key = tuple[str, str, str]


async def apply_events(conn: Conn, events: Sequence[Event]) -> None:
    """Apply a batch's fresh events (already claimed) in the caller's transaction."""
    # Erasure is forever, so applying it first is the same as applying it in its place.
    erased = {
        (e.tenant_id, e.data.external_userid): e.data.erased_at
        for e in events
        if isinstance(e, ContactErasedEvent)
    }
    await store.erase_contacts(conn, [(t, u, at) for (t, u), at in erased.items()])
    added: dict[Key, datetime] = {}
    deleted: dict[Key, datetime] = {}
    for e in events:
        if isinstance(e, FriendAddedEvent):
            _keep_latest(added, (e.tenant_id, e.data.external_userid, e.data.staff_id), e.data.added_at)
        elif isinstance(e, FriendDeletedEvent):
            _keep_latest(deleted, (e.tenant_id, e.data.external_userid, e.data.staff_id), e.data.deleted_at)
    await store.follows_added(conn, [(*k, at) for k, at in added.items()])
    await store.follows_deleted(conn, [(*k, at) for k, at in deleted.items()])
    # Before the WeCom edits: rule rows locked before contact_tags rows are written, the order the
    # rules API takes them in (a deadlock would only be retried, but need not happen).
    await rules.apply_segment_changes(conn, [e for e in events if isinstance(e, SegmentChangedEvent)])
    for e in events:
        if isinstance(e, ContactUpdatedEvent) and "tags" in e.data.changed:
            await apply_wecom_edit(conn, e)


async def apply_wecom_edit(conn: Conn, event: ContactUpdatedEvent) -> None:
    """Apply one staff member's new WeCom tag set for a contact (see the module docstring)."""
    data, tenant = event.data, event.tenant_id
    if data.staff_id is None or data.tag_ids is None:
        # Tags live per relation on WeCom: a set without its staff member cannot be diffed.
        WECOM_EDITS.labels("no-staff").inc()
        return
    euid, staff = data.external_userid, data.staff_id
    if await store.is_erased(conn, tenant, euid):
        WECOM_EDITS.labels("erased").inc()
        return
    snapshot = await store.lock_snapshot(conn, tenant, euid, staff)
    if (
        snapshot is not None
        and snapshot.wecom_updated_at is not None
        and snapshot.wecom_updated_at > data.updated_at
    ):
        WECOM_EDITS.labels("stale").inc()
        return
    old = frozenset(snapshot.wecom_tag_ids if snapshot is not None else ())
    new = frozenset(data.tag_ids)
    await store.save_snapshot(conn, tenant, euid, staff, sorted(new), data.updated_at)
    mapping = await store.lock_wecom_tags(conn, tenant, sorted(old ^ new))
    held = await store.held_elsewhere(conn, tenant, euid, staff) if old - new else set()
    diff = wecom_diff(old, new, mapping, held)
    if diff.unknown:
        WECOM_UNKNOWN_TAGS.inc(len(diff.unknown))
    await tagging.apply(
        conn,
        tenant,
        actor=Actor("wecom", actor_id=staff, staff_id=staff),
        at=data.updated_at,
        add=[(euid, ref) for ref in diff.add],
        remove=[(euid, ref) for ref in diff.remove],
    )
    WECOM_EDITS.labels("applied").inc()


def _keep_latest(into: dict[Key, datetime], key: Key, at: datetime) -> None:
    # One row per key per statement: ON CONFLICT cannot touch a row twice.
    if key not in into or at > into[key]:
        into[key] = at
