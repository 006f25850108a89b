"""/v1/contacts/{external_userid}/tags: read, add and remove one contact's tags.

Any role may tag: a guide as ``staff`` (actor: their staff_id; the change is pushed to WeCom on
their own relation), admins and operators as ``operator``. A guide sees and tags only the
contacts they follow (friend-added), anything else is 404 so its existence does not leak.

Tagging is idempotent: adding a tag the contact has (or removing one it lacks) changes nothing
and publishes nothing. Every real change writes its row and enqueues its ``contact-tagged``
event in one transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from scrm_shared.auth import AnyRole, Principal
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool
from tag_svc.api.tags import tag_not_found
from tag_svc.schemas import ContactTag, ContactTags, ContactTagsAdded, ContactTagsIn
from tag_svc.tags import tagging
from tag_svc.tags.domain import Actor, absent, unique_in_order
from tag_svc.tags.store import Executor
from tag_svc.tags.store import contacts as store

router = APIRouter(prefix="/v1/contacts", tags=["contact tags"])

ExternalUserId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"\S")]


def _actor(principal: Principal) -> Actor:
    if principal.is_guide:
        return Actor("staff", actor_id=principal.staff_id, staff_id=principal.staff_id)
    return Actor("operator", actor_id=principal.subject)


async def _check_scope(conn: Executor, principal: Principal, external_userid: str) -> None:
    if principal.is_guide and not await store.is_following(
        conn, principal.tenant_id, external_userid, principal.staff_id or ""
    ):
        raise Problem(404, "Contact not found", type="contact-not-found")


async def _view(conn: Executor, tenant_id: str, external_userid: str) -> list[ContactTag]:
    return [
        ContactTag(
            tag_id=r.tag_id,
            name=r.name,
            group_id=r.group_id,
            group_name=r.group_name,
            wecom_tag_id=r.wecom_tag_id,
            by=r.tagged_by,
            actor_id=r.actor_id,
            tagged_at=r.tagged_at,
        )
        for r in await store.list_contact_tags(conn, tenant_id, external_userid)
    ]


@router.get("/{external_userid}/tags", response_model=ContactTags, summary="A contact's tags")
async def get_contact_tags(external_userid: ExternalUserId, principal: AnyRole, pool: Pool) -> ContactTags:
    """The contact's tags in display order, with who set each."""
    async with pool.acquire() as conn:
        await _check_scope(conn, principal, external_userid)
        tags = await _view(conn, principal.tenant_id, external_userid)
    return ContactTags(external_userid=external_userid, tags=tags)


@router.post(
    "/{external_userid}/tags",
    response_model=ContactTagsAdded,
    summary="Add tags to a contact",
    responses={
        404: {"description": "A tag (listed in tag_ids) or, for a guide, the contact is unknown."},
        410: {"description": "The contact was erased; it is never tagged again."},
    },
)
async def add_contact_tags(
    external_userid: ExternalUserId, body: ContactTagsIn, principal: AnyRole, pool: Pool
) -> ContactTagsAdded:
    """Add the tags the contact does not have yet (the others are left as they are)."""
    tenant = principal.tenant_id
    requested = unique_in_order(body.tag_ids)
    async with pool.acquire() as conn:
        await _check_scope(conn, principal, external_userid)
        async with conn.transaction():
            if await store.is_erased(conn, tenant, external_userid):
                raise Problem(
                    410, "Contact erased", "an erased contact is never tagged again", type="contact-erased"
                )
            refs = await store.lock_tags(conn, tenant, requested)
            missing = [t for t in requested if t not in refs]
            if missing:
                raise tag_not_found(missing)
            current = await store.contact_tag_ids(conn, tenant, external_userid)
            changes = await tagging.apply(
                conn,
                tenant,
                actor=_actor(principal),
                at=datetime.now(UTC),
                add=[(external_userid, refs[t]) for t in absent(current, requested)],
            )
        tags = await _view(conn, tenant, external_userid)
    return ContactTagsAdded(external_userid=external_userid, tags=tags, added=[c.tag.tag_id for c in changes])


@router.delete(
    "/{external_userid}/tags/{tag_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a tag from a contact",
)
async def remove_contact_tag(
    external_userid: ExternalUserId, tag_id: uuid.UUID, principal: AnyRole, pool: Pool
) -> Response:
    """Remove the tag (204 also when the contact did not have it)."""
    tenant = principal.tenant_id
    async with pool.acquire() as conn:
        await _check_scope(conn, principal, external_userid)
        async with conn.transaction():
            refs = await store.lock_tags(conn, tenant, [tag_id])
            if tag_id not in refs:
                raise tag_not_found()
            await tagging.apply(
                conn,
                tenant,
                actor=_actor(principal),
                at=datetime.now(UTC),
                remove=[(external_userid, refs[tag_id])],
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
