"""/v1/tag-groups and /v1/tags: the tenant's tag catalogue.

Admins and operators manage it; guides read it. Names are unique among a tenant's groups and
among a group's tags (409 otherwise), as is a WeCom tag id among the tenant's tags. Lists come
in display order: groups by ``order``, tags by ``order`` within their group (then by name).

Deleting a tag that contacts carry answers 202 with the job that untags them (each with a
``contact-tagged`` removal event); the tag disappears from every read at once. Deleting a group
deletes its tags the same way.

Segments read tags by name: renaming a tag queues the re-evaluation of its contacts for the
segments reading the old or the new name (:mod:`tag_svc.tags.name_syncs`). Renaming or deleting a
group or tag linked to WeCom is pushed to WeCom (``edit_corp_tag``, ``del_corp_tag``) by the
worker, with retries (:mod:`tag_svc.tags.edits`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from scrm_shared.auth import AdminOrOperator, AnyRole, Principal
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool
from tag_svc.api.tag_rules import refuse_rename_cycle
from tag_svc.schemas import (
    Deletion,
    Tag,
    TagGroup,
    TagGroupIn,
    TagGroupPatch,
    TagIn,
    TagNameSync,
    TagPatch,
)
from tag_svc.tags import edits
from tag_svc.tags.domain import Conflict
from tag_svc.tags.store import catalog as store
from tag_svc.tags.store import name_syncs

groups_router = APIRouter(prefix="/v1/tag-groups", tags=["tags"])
tags_router = APIRouter(prefix="/v1/tags", tags=["tags"])

_CONFLICT_RESPONSE = {409: {"description": "A name or WeCom tag id is taken."}}
_DELETED_RESPONSES = {
    202: {"model": Deletion, "description": "Deleted; contacts that carried it are being untagged."},
    204: {"description": "Deleted; no contact carried it."},
}


def conflict(exc: Conflict) -> Problem:
    titles = {
        "group-name": ("Tag group name taken", "another tag group of this tenant has this name"),
        "tag-name": ("Tag name taken", "another tag of this group has this name"),
        "wecom-tag-id": ("WeCom tag id taken", "another tag of this tenant mirrors this WeCom tag"),
    }
    title, detail = titles[exc.what]
    return Problem(409, title, detail, type=f"{exc.what}-taken")


def group_not_found() -> Problem:
    return Problem(404, "Tag group not found", type="tag-group-not-found")


def tag_not_found(missing: list[uuid.UUID] | None = None) -> Problem:
    extra = {"tag_ids": [str(t) for t in missing]} if missing else {}
    return Problem(404, "Tag not found", type="tag-not-found", **extra)


def shape_tag(row: store.TagRow) -> Tag:
    return Tag(
        tag_id=row.tag_id,
        group_id=row.group_id,
        group_name=row.group_name,
        name=row.name,
        order=row.sort_order,
        wecom_tag_id=row.wecom_tag_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _shape_group(row: store.GroupRow, tags: list[store.TagRow]) -> TagGroup:
    return TagGroup(
        group_id=row.group_id,
        name=row.name,
        order=row.sort_order,
        wecom_group_id=row.wecom_group_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        tags=[shape_tag(t) for t in tags],
    )


def _deleted(jobs: list[uuid.UUID]) -> Response:
    if not jobs:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    body = Deletion(job_ids=jobs).model_dump_json()
    return Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------


@groups_router.post(
    "",
    response_model=TagGroup,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tag group (with its tags)",
    responses=_CONFLICT_RESPONSE,
)
async def create_group(body: TagGroupIn, principal: AdminOrOperator, pool: Pool) -> TagGroup:
    """Create a group and, in the same transaction, the tags listed with it."""
    tenant = principal.tenant_id
    try:
        async with pool.acquire() as conn, conn.transaction():
            group = await store.create_group(
                conn, tenant, name=body.name, sort_order=body.order, wecom_group_id=body.wecom_group_id
            )
            for t in body.tags:
                await store.create_tag(
                    conn, tenant, group.group_id, name=t.name, sort_order=t.order, wecom_tag_id=t.wecom_tag_id
                )
            tags = await store.list_tags(conn, tenant, group_id=group.group_id)
    except Conflict as exc:
        raise conflict(exc) from None
    return _shape_group(group, tags)


@groups_router.get("", response_model=list[TagGroup], summary="The tenant's tag groups and their tags")
async def list_groups(principal: AnyRole, pool: Pool) -> list[TagGroup]:
    """Every group by order, each with its tags by order."""
    async with pool.acquire() as conn:
        groups = await store.list_groups(conn, principal.tenant_id)
        tags = await store.list_tags(conn, principal.tenant_id)
    by_group: dict[uuid.UUID, list[store.TagRow]] = {}
    for t in tags:
        by_group.setdefault(t.group_id, []).append(t)
    return [_shape_group(g, by_group.get(g.group_id, [])) for g in groups]


@groups_router.get("/{group_id}", response_model=TagGroup, summary="One tag group and its tags")
async def get_group(group_id: uuid.UUID, principal: AnyRole, pool: Pool) -> TagGroup:
    async with pool.acquire() as conn:
        group = await store.get_group(conn, principal.tenant_id, group_id)
        if group is None:
            raise group_not_found()
        tags = await store.list_tags(conn, principal.tenant_id, group_id=group_id)
    return _shape_group(group, tags)


@groups_router.patch(
    "/{group_id}",
    response_model=TagGroup,
    summary="Rename, reorder or relink a tag group",
    responses=_CONFLICT_RESPONSE,
)
async def update_group(
    group_id: uuid.UUID, body: TagGroupPatch, principal: AdminOrOperator, pool: Pool
) -> TagGroup:
    """Change the fields given. Renaming does not rewrite past events (they carry the name of
    their time); a linked group's new name is pushed to WeCom."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            group = await edits.update_group(
                conn,
                principal.tenant_id,
                group_id,
                name=body.name,
                sort_order=body.order,
                wecom_group_id=body.wecom_group_id,
                set_wecom_group_id="wecom_group_id" in body.model_fields_set,
                push=True,
            )
            if group is None:
                raise group_not_found()
            tags = await store.list_tags(conn, principal.tenant_id, group_id=group_id)
    except Conflict as exc:
        raise conflict(exc) from None
    return _shape_group(group, tags)


@groups_router.delete(
    "/{group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a tag group and its tags",
    responses=_DELETED_RESPONSES,
)
async def delete_group(group_id: uuid.UUID, principal: AdminOrOperator, pool: Pool) -> Response:
    """Delete the group and its tags; 202 with the untagging jobs when contacts carried them. A
    linked group (or an unlinked group's linked tags) is deleted in WeCom too."""
    async with pool.acquire() as conn, conn.transaction():
        jobs = await edits.delete_group(
            conn, principal.tenant_id, group_id, actor_id=_actor(principal), push=True
        )
    if jobs is None:
        raise group_not_found()
    return _deleted(jobs)


@groups_router.post(
    "/{group_id}/tags",
    response_model=Tag,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tag in a group",
    responses=_CONFLICT_RESPONSE,
)
async def create_tag(group_id: uuid.UUID, body: TagIn, principal: AdminOrOperator, pool: Pool) -> Tag:
    try:
        row = await store.create_tag(
            pool,
            principal.tenant_id,
            group_id,
            name=body.name,
            sort_order=body.order,
            wecom_tag_id=body.wecom_tag_id,
        )
    except Conflict as exc:
        raise conflict(exc) from None
    if row is None:
        raise group_not_found()
    return shape_tag(row)


# ---------------------------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------------------------


@tags_router.get("", response_model=list[Tag], summary="The tenant's tags, in display order")
async def list_tags(
    principal: AnyRole,
    pool: Pool,
    group_id: Annotated[uuid.UUID | None, Query(description="Only this group's tags.")] = None,
    wecom_tag_id: Annotated[
        str | None, Query(max_length=128, description="The tag mirroring this WeCom tag.")
    ] = None,
) -> list[Tag]:
    rows = await store.list_tags(pool, principal.tenant_id, group_id=group_id, wecom_tag_id=wecom_tag_id)
    return [shape_tag(r) for r in rows]


@tags_router.get("/{tag_id}", response_model=Tag, summary="One tag")
async def get_tag(tag_id: uuid.UUID, principal: AnyRole, pool: Pool) -> Tag:
    row = await store.get_tag(pool, principal.tenant_id, tag_id)
    if row is None:
        raise tag_not_found()
    return shape_tag(row)


@tags_router.get(
    "/{tag_id}/name-syncs",
    response_model=list[TagNameSync],
    summary="How the tag's renames reached the segments",
)
async def list_name_syncs(tag_id: uuid.UUID, principal: AnyRole, pool: Pool) -> list[TagNameSync]:
    """The tag's renames in the order they were made, each with the progress of its contacts'
    re-evaluation for the segments reading the old or the new name (a rename of a tag no contact
    carries has none)."""
    async with pool.acquire() as conn:
        if await store.get_tag(conn, principal.tenant_id, tag_id) is None:
            raise tag_not_found()
        syncs = await name_syncs.get_syncs(conn, principal.tenant_id, tag_id)
    return [TagNameSync.model_validate(s, from_attributes=True) for s in syncs]


@tags_router.patch(
    "/{tag_id}",
    response_model=Tag,
    summary="Rename, reorder, move or relink a tag",
    responses=_CONFLICT_RESPONSE,
)
async def update_tag(tag_id: uuid.UUID, body: TagPatch, principal: AdminOrOperator, pool: Pool) -> Tag:
    """Change the fields given; ``group_id`` moves the tag to another of the tenant's groups. A new
    name reaches the segments reading the old or the new one within seconds (the worker
    re-evaluates the tag's contacts), and WeCom when the tag is linked."""
    sent = body.model_fields_set
    try:
        async with pool.acquire() as conn, conn.transaction():
            if body.name is not None:
                # Segments read tags by name: a new name may close a cycle of tag rules.
                await refuse_rename_cycle(conn, principal.tenant_id, tag_id, body.name)
            if (
                body.group_id is not None
                and await store.get_group(conn, principal.tenant_id, body.group_id) is None
            ):
                raise group_not_found()
            row = await edits.update_tag(
                conn,
                principal.tenant_id,
                tag_id,
                name=body.name,
                sort_order=body.order,
                group_id=body.group_id,
                wecom_tag_id=body.wecom_tag_id,
                set_wecom_tag_id="wecom_tag_id" in sent,
                push=True,
            )
    except Conflict as exc:
        raise conflict(exc) from None
    if row is None:
        raise tag_not_found()
    return shape_tag(row)


@tags_router.delete(
    "/{tag_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a tag",
    responses=_DELETED_RESPONSES,
)
async def delete_tag(tag_id: uuid.UUID, principal: AdminOrOperator, pool: Pool) -> Response:
    """Delete the tag; 202 with the job untagging its contacts when any carried it (segments see
    them lose it as the job goes). A linked tag is deleted in WeCom too."""
    async with pool.acquire() as conn, conn.transaction():
        jobs = await edits.delete_tag(
            conn, principal.tenant_id, tag_id, actor_id=_actor(principal), push=True
        )
    if jobs is None:
        raise tag_not_found()
    return _deleted(jobs)


def _actor(principal: Principal) -> str | None:
    return principal.subject
