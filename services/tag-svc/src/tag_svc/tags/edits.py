"""Edits of the catalogue and what must follow them, in the edit's transaction.

- **Segments** read tags by name. A tag's rename, whoever makes it (the tags API, or the corp tag
  sync taking WeCom's name), queues a name sync with the contacts carrying the tag
  (:mod:`tag_svc.tags.name_syncs` re-evaluates them). A deleted tag needs nothing here: its purge
  job untags its contacts with ``contact-tagged`` removals, which the processor applies like any
  other untagging.
- **WeCom**: with ``push=True`` (edits made here; the sync passes ``False``, since WeCom made
  them), renaming a group or tag linked to WeCom queues ``edit_corp_tag`` with the new name, and
  deleting one queues ``del_corp_tag`` (:mod:`tag_svc.tags.pushes` sends them). Only names are
  pushed: our order is a position, WeCom's a weight, and the next pull sets ours from WeCom's.
  A linked group's deletion deletes the WeCom group, and its tags with it (a linked tag sits in
  the WeCom group of its group: the sync keeps it there); an unlinked group's deletion deletes
  its linked tags one by one.

Every function takes a connection inside the caller's transaction and locks the group or tag
row first (``FOR UPDATE``), so "what it was" and "what it became" are read under one lock.
"""

from __future__ import annotations

import uuid

from tag_svc.tags.store import Conn, catalog, name_syncs
from tag_svc.tags.store import wecom as pushes
from tag_svc.tags.store.catalog import GroupRow, TagRow

__all__ = ["delete_group", "delete_tag", "update_group", "update_tag"]


async def update_tag(
    conn: Conn,
    tenant_id: str,
    tag_id: uuid.UUID,
    *,
    name: str | None,
    sort_order: int | None,
    group_id: uuid.UUID | None,
    wecom_tag_id: str | None,
    set_wecom_tag_id: bool,
    push: bool,
) -> TagRow | None:
    """:func:`catalog.update_tag`, then a rename's name sync and (``push``) its edit_corp_tag.
    ``None`` when the tag (or the target group) does not exist. Raises
    :class:`~tag_svc.tags.domain.Conflict` (nothing queued)."""
    before = await catalog.lock_tag_row(conn, tenant_id, tag_id)
    if before is None:
        return None
    row = await catalog.update_tag(
        conn,
        tenant_id,
        tag_id,
        name=name,
        sort_order=sort_order,
        group_id=group_id,
        wecom_tag_id=wecom_tag_id,
        set_wecom_tag_id=set_wecom_tag_id,
    )
    if row is None or row.name == before.name:
        return row
    await name_syncs.queue_sync(conn, tenant_id, tag_id, old_name=before.name, new_name=row.name)
    if push and row.wecom_tag_id is not None:
        await pushes.queue_corp_tag_edit(conn, tenant_id, row.wecom_tag_id, row.name)
    return row


async def update_group(
    conn: Conn,
    tenant_id: str,
    group_id: uuid.UUID,
    *,
    name: str | None,
    sort_order: int | None,
    wecom_group_id: str | None,
    set_wecom_group_id: bool,
    push: bool,
) -> GroupRow | None:
    """:func:`catalog.update_group`, then (``push``) a linked group's rename as edit_corp_tag.
    ``None`` when the group does not exist. Raises :class:`~tag_svc.tags.domain.Conflict`."""
    before = await catalog.lock_group_row(conn, tenant_id, group_id)
    if before is None:
        return None
    row = await catalog.update_group(
        conn,
        tenant_id,
        group_id,
        name=name,
        sort_order=sort_order,
        wecom_group_id=wecom_group_id,
        set_wecom_group_id=set_wecom_group_id,
    )
    if row is not None and push and row.name != before.name and row.wecom_group_id is not None:
        await pushes.queue_corp_tag_edit(conn, tenant_id, row.wecom_group_id, row.name)
    return row


async def delete_tag(
    conn: Conn, tenant_id: str, tag_id: uuid.UUID, *, actor_id: str | None, push: bool
) -> list[uuid.UUID] | None:
    """:func:`catalog.delete_tag` (the purge job), then (``push``) del_corp_tag of a linked tag.
    ``None`` when the tag does not exist."""
    before = await catalog.lock_tag_row(conn, tenant_id, tag_id)
    if before is None:
        return None
    jobs = await catalog.delete_tag(conn, tenant_id, tag_id, actor_id=actor_id)
    if push and before.wecom_tag_id is not None:
        await pushes.queue_corp_tag_delete(conn, tenant_id, tag_ids=[before.wecom_tag_id])
    return jobs


async def delete_group(
    conn: Conn, tenant_id: str, group_id: uuid.UUID, *, actor_id: str | None, push: bool
) -> list[uuid.UUID] | None:
    """:func:`catalog.delete_group` (its tags' purge jobs), then (``push``) del_corp_tag of the
    linked group, or of the linked tags of an unlinked group. ``None`` when the group does not
    exist."""
    group = await catalog.lock_group_row(conn, tenant_id, group_id)
    if group is None:
        return None
    # Read under the group's lock: a tag cannot be created in it meanwhile.
    linked = [
        t.wecom_tag_id for t in await catalog.list_tags(conn, tenant_id, group_id=group_id) if t.wecom_tag_id
    ]
    jobs = await catalog.delete_group(conn, tenant_id, group_id, actor_id=actor_id)
    if push:
        if group.wecom_group_id is not None:
            await pushes.queue_corp_tag_delete(conn, tenant_id, group_ids=[group.wecom_group_id])
        else:
            await pushes.queue_corp_tag_delete(conn, tenant_id, tag_ids=linked)
    return jobs
