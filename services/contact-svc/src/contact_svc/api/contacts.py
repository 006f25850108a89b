"""/v1/contacts: list, read, link identities, erase.

The tenant always comes from the token. A guide sees only the contacts that guide actively
follows; a contact of another tenant (or outside a guide's scope) is 404, never 403, so its
existence does not leak.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AwareDatetime

from contact_svc.domain.identities import LinkRequest
from contact_svc.domain.listing import (
    InvalidCursor,
    Position,
    SortOrder,
    cursor_key,
    decode_cursor,
    encode_cursor,
    like_pattern,
)
from contact_svc.schemas import Contact, ContactDetail, ContactPage, Follow, IdentityLinkIn, IdentityLinkOut
from contact_svc.store import contacts as store
from contact_svc.store import identities as identity_store
from scrm_shared.auth import AdminOnly, AnyRole, Principal
from scrm_shared.problems import Problem

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's connection pool (built by the lifespan)."""
    return request.app.state.pool  # type: ignore[no-any-return]


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def _cursor_key(request: Request) -> bytes:
    return cursor_key(request.app.state.settings.jwt_secret.get_secret_value())


def _not_found() -> Problem:
    return Problem(404, "Contact not found", type="contact-not-found")


def _guide(principal: Principal) -> str | None:
    return principal.staff_id if principal.is_guide else None


def _shape(row: asyncpg.Record, follows: list[asyncpg.Record], principal: Principal) -> dict[str, object]:
    privileged = principal.role in ("admin", "operator")
    return {
        "contact_id": row["contact_id"],
        "external_userid": row["external_userid"],
        "name": row["name"],
        "avatar": row["avatar"],
        "gender": row["gender"],
        "unionid": row["unionid"] if privileged else None,
        "status": row["status"],
        "first_added_at": row["first_added_at"],
        "follows": [
            Follow(
                staff_id=f["staff_id"],
                state=f["state"],
                store_id=f["store_id"],
                added_at=f["added_at"],
                status=f["status"],
                deleted_by=f["deleted_by"],
                # a remark is one staff member's note: a guide reads only their own
                remark=f["remark"] if privileged or f["staff_id"] == principal.staff_id else None,
            )
            for f in follows
        ],
    }


@router.get("", response_model=ContactPage, summary="List contacts (filtered, cursor-paginated)")
async def list_contacts(
    request: Request,
    principal: AnyRole,
    pool: Pool,
    external_userid: Annotated[str | None, Query(max_length=256)] = None,
    staff_id: Annotated[str | None, Query(max_length=256, description="Followed by (any status).")] = None,
    store_id: Annotated[str | None, Query(max_length=256)] = None,
    state: Annotated[
        str | None, Query(max_length=256, description="Channel code that brought the friend.")
    ] = None,
    status_: Annotated[
        str | None,
        Query(alias="status", pattern="^(active|lost|erased)$", description="active, lost or erased"),
    ] = None,
    added_from: Annotated[AwareDatetime | None, Query(description="first_added_at >= this")] = None,
    added_to: Annotated[AwareDatetime | None, Query(description="first_added_at < this")] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Name contains (literally).")
    ] = None,
    sort: Annotated[SortOrder, Query(description="first_added_at, or -first_added_at (newest first)")] = (
        "-first_added_at"
    ),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ContactPage:
    """Contacts of the caller's tenant (a guide: the ones they follow), newest first by default.

    Follow ``next_cursor`` for the next page; a cursor only works with the filters and sort it
    came from.
    """
    filters = store.ContactFilter(
        external_userid=external_userid,
        staff_id=staff_id,
        store_id=store_id,
        state=state,
        status=status_,
        added_from=added_from,
        added_to=added_to,
        name_pattern=like_pattern(q) if q is not None else None,
    )
    key = _cursor_key(request)
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor, sort=sort, scope=filters.scope(), key=key)
        except InvalidCursor as exc:
            raise Problem(422, "Invalid cursor", str(exc), type="invalid-cursor") from None
    async with pool.acquire() as conn:
        rows = await store.list_contacts(
            conn,
            principal.tenant_id,
            filters,
            guide=_guide(principal),
            sort=sort,
            after=after,
            limit=limit + 1,
        )
        page = rows[:limit]
        follows = await store.follows_of(conn, principal.tenant_id, [r["external_userid"] for r in page])
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(
            Position(last["first_added_at"], last["contact_id"]), sort=sort, scope=filters.scope(), key=key
        )
    return ContactPage(
        items=[Contact(**_shape(r, follows[r["external_userid"]], principal)) for r in page],
        next_cursor=next_cursor,
    )


@router.get("/{contact_id}", response_model=ContactDetail, summary="One contact")
async def get_contact(contact_id: uuid.UUID, principal: AnyRole, pool: Pool) -> ContactDetail:
    """One contact with its follows and the kinds of ids linked to it."""
    async with pool.acquire() as conn:
        row = await store.get_contact(conn, principal.tenant_id, contact_id, guide=_guide(principal))
        if row is None:
            raise _not_found()
        follows = await store.follows_of(conn, principal.tenant_id, [row["external_userid"]])
        kinds = await identity_store.linked_kinds(conn, principal.tenant_id, row["external_userid"])
    return ContactDetail(**_shape(row, follows[row["external_userid"]], principal), identities=kinds)


@router.post(
    "/{contact_id}/identities",
    response_model=IdentityLinkOut,
    status_code=status.HTTP_201_CREATED,
    summary="Link a member id, phone hash or unionid to this contact",
    responses={
        200: {"description": "Every id was linked to this contact already."},
        409: {"description": "An id belongs to another contact (nothing linked), or the contact is erased."},
    },
)
async def link_identities(
    contact_id: uuid.UUID, body: IdentityLinkIn, principal: AnyRole, pool: Pool, response: Response
) -> IdentityLinkOut:
    """Link ids to the contact and announce them (``contact-identified``); 201 when something
    new was linked, 200 when all were linked already, 409 when one belongs to another contact."""
    async with pool.acquire() as conn, conn.transaction():
        contact = await store.lock_contact(conn, principal.tenant_id, contact_id, guide=_guide(principal))
        if contact is None:
            raise _not_found()
        if contact.status == "erased":
            raise Problem(
                409, "Contact is erased", "an erased contact gets no identities", type="contact-erased"
            )
        link = LinkRequest(
            tenant_id=principal.tenant_id,
            source="api",
            at=datetime.now(UTC),
            ids=body.ids(),
            external_userid=contact.external_userid,
        )
        plan = await identity_store.link(conn, [link], all_or_nothing=True)
        if not plan.conflicts and body.unionid is not None:
            await identity_store.fill_contact_unionid(
                conn, principal.tenant_id, contact.external_userid, body.unionid
            )
    if plan.conflicts:
        identity_store.report_conflicts(plan.conflicts)
        raise Problem(
            409,
            "Identity linked to another contact",
            "nothing was linked: these ids already belong to another contact",
            type="identity-conflict",
            kinds=sorted({c.kind for c in plan.conflicts}),
        )
    if not plan.new:
        response.status_code = status.HTTP_200_OK
    return IdentityLinkOut(
        contact_id=contact.contact_id,
        external_userid=contact.external_userid,
        linked=[n.kind for n in plan.new],
        already_linked=plan.known,
    )


@router.delete(
    "/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase a contact's personal data (PIPL)",
    response_class=Response,
)
async def erase_contact(contact_id: uuid.UUID, principal: AdminOnly, pool: Pool) -> Response:
    """Erase name, avatar, unionid, remarks, identities and archived callbacks of the contact, and
    publish ``contact-erased``; the contact and its follows stay as counts."""
    async with pool.acquire() as conn, conn.transaction():
        contact = await store.lock_contact(conn, principal.tenant_id, contact_id)
        if contact is None:
            raise _not_found()
        # Erasing twice is a no-op: one tombstone per contact.
        if contact.status != "erased":
            await store.erase_contact(conn, principal.tenant_id, contact, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
