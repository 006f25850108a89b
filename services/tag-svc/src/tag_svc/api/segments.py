"""/v1/segments: define segments, preview a rule, read members, a contact's segments, size history.

Admins and operators define, edit, delete and preview segments; any role reads them, and a guide
reads only the members among the contacts they follow (another contact's segments are 404 to
them, so its existence does not leak).

A created or edited segment starts ``backfilling``: the worker computes it over the existing
profiles in chunks (progress in ``backfill``) and then it is ``live``. Meanwhile every contact an
event touches is evaluated at once, so membership is never stale for active contacts.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Query, Request, Response, status

from scrm_shared.auth import AdminOrOperator, AnyRole
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.events import SegmentDeleted, SegmentDeletedEvent, new_event
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool, Settings
from tag_svc.api.segment_models import (
    BackfillProgress,
    ContactSegment,
    ContactSegments,
    Member,
    Members,
    Preview,
    PreviewIn,
    Segment,
    SegmentIn,
    Segments,
    SizeHistory,
    SizeOnDay,
)
from tag_svc.api.tag_rules import refuse_segment_cycle
from tag_svc.processor.evaluate import SOURCE
from tag_svc.processor.model import utc_now
from tag_svc.processor.store import Executor, catalog
from tag_svc.processor.tenants import ensure_rfm, timezones
from tag_svc.segments import InvalidRule, Rule, SqlParams, day_in, parse_rule, uses_rfm

__all__ = ["contacts_router", "router"]

router = APIRouter(prefix="/v1/segments", tags=["segments"])
contacts_router = APIRouter(prefix="/v1/contacts", tags=["segments"])

PREVIEW_SAMPLE = 20
ExternalUserId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"\S")]
_NOT_FOUND = {404: {"description": "No such segment for this tenant."}}
_INVALID = {422: {"description": "The rule is invalid: `errors` lists each fault with its JSON path."}}


def now_of(request: Request) -> datetime:
    """Now, from the app's clock when it has one (tests set ``app.state.clock``)."""
    clock = getattr(request.app.state, "clock", None) or utc_now
    return clock()  # type: ignore[no-any-return]


async def today_of(db: Executor, request: Request, tenant_id: str) -> tuple[datetime, date]:
    """Now, and today in the tenant's timezone."""
    now = now_of(request)
    zones = await timezones(db, [tenant_id])
    return now, day_in(now, zones[tenant_id])


def parse_or_422(data: Any) -> Rule:
    """The parsed rule, or a 422 problem listing every fault (JSON path into the rule)."""
    try:
        return parse_rule(data)
    except InvalidRule as exc:
        raise Problem(
            422,
            "Invalid rule",
            f"{len(exc.errors)} fault{'s' if len(exc.errors) != 1 else ''} in the rule; see errors "
            "(paths start at the rule: $ is the rule itself)",
            type="invalid-rule",
            errors=exc.as_list(),
        ) from None


def not_found() -> Problem:
    return Problem(404, "Segment not found", type="segment-not-found")


def name_taken() -> Problem:
    return Problem(
        409, "Segment name taken", "another segment of this tenant has that name", type="segment-exists"
    )


def segment_out(row: asyncpg.Record) -> Segment:
    backfilling = row["status"] == "backfilling"
    return Segment(
        segment_id=row["segment_id"],
        name=row["name"],
        rule=row["rule"],
        status=row["status"],
        size=row["size"],
        backfill=BackfillProgress(
            processed=row["backfill_processed"], total=row["backfill_total"], cause=row["backfill_cause"]
        )
        if backfilling
        else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Segment,
    summary="Define a segment",
    responses={409: {"description": "The name is taken."}, **_INVALID},
)
async def create_segment(
    body: SegmentIn, request: Request, principal: AdminOrOperator, pool: Pool
) -> Segment:
    """Create a segment; it is backfilled over the existing contacts, then live."""
    rule = parse_or_422(body.rule)
    tenant = principal.tenant_id
    async with pool.acquire() as conn, conn.transaction():
        _, today = await today_of(conn, request, tenant)
        if uses_rfm(rule):
            await ensure_rfm(conn, tenant, today)  # derived now, not inside a processor batch
        total = await catalog.count_profiles(conn, tenant)
        try:
            row = await catalog.insert_segment(
                conn, tenant, uuid.uuid4(), body.name, rule.to_json(), uses_rfm(rule), total
            )
        except asyncpg.UniqueViolationError:
            raise name_taken() from None
    return segment_out(row)


@router.get("", response_model=Segments, summary="List segments")
async def list_segments(principal: AnyRole, pool: Pool) -> Segments:
    return Segments(items=[segment_out(r) for r in await catalog.list_segments(pool, principal.tenant_id)])


@router.post(
    "/preview", response_model=Preview, summary="Count the contacts a rule matches", responses=_INVALID
)
async def preview_rule(
    body: PreviewIn, request: Request, principal: AdminOrOperator, pool: Pool, settings: Settings
) -> Preview:
    """How many contacts match the rule today, and a sample: the SQL engine over the profiles,
    nothing written (RFM thresholds are derived first if the tenant has none). A large tenant is
    counted in contact ranges side by side (``SCRM_TAG_PREVIEW_PARALLELISM``), in one snapshot."""
    rule = parse_or_422(body.rule)
    tenant = principal.tenant_id
    _, today = await today_of(pool, request, tenant)
    rfm = await ensure_rfm(pool, tenant, today) if uses_rfm(rule) else None
    count, sample = await catalog.preview_rule(
        pool,
        tenant,
        rule,
        SqlParams(today=today, rfm=rfm),
        PREVIEW_SAMPLE,
        parallelism=settings.tag_preview_parallelism,
        min_contacts=settings.tag_preview_split_min_contacts,
        min_cost=settings.tag_preview_split_min_cost,
    )
    return Preview(count=count, sample=sample)


@router.get(
    "/{segment_id}", response_model=Segment, summary="A segment, with size and status", responses=_NOT_FOUND
)
async def get_segment(segment_id: uuid.UUID, principal: AnyRole, pool: Pool) -> Segment:
    row = await catalog.get_segment(pool, principal.tenant_id, segment_id)
    if row is None:
        raise not_found()
    return segment_out(row)


@router.put(
    "/{segment_id}",
    response_model=Segment,
    summary="Rename a segment or replace its rule",
    responses={
        **_NOT_FOUND,
        409: {"description": "The name is taken, or the rule would close a cycle of tag rules."},
        **_INVALID,
    },
)
async def update_segment(
    segment_id: uuid.UUID, body: SegmentIn, request: Request, principal: AdminOrOperator, pool: Pool
) -> Segment:
    """A new rule restarts the backfill (transitions with cause ``rule-edited``); the same rule
    (in canonical form) only renames."""
    rule = parse_or_422(body.rule)
    tenant = principal.tenant_id
    async with pool.acquire() as conn, conn.transaction():
        current = await catalog.get_segment(conn, tenant, segment_id, lock=True)
        if current is None:
            raise not_found()
        canonical = rule.to_json()
        try:
            if canonical == current["rule"]:
                row = await catalog.update_segment(conn, tenant, segment_id, body.name)
            else:
                await refuse_segment_cycle(conn, tenant, segment_id, rule)
                _, today = await today_of(conn, request, tenant)
                if uses_rfm(rule):
                    await ensure_rfm(conn, tenant, today)
                total = await catalog.count_profiles(conn, tenant)
                row = await catalog.update_segment(
                    conn, tenant, segment_id, body.name, canonical, uses_rfm(rule), total
                )
        except asyncpg.UniqueViolationError:
            raise name_taken() from None
    assert row is not None
    return segment_out(row)


@router.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a segment",
    responses=_NOT_FOUND,
)
async def delete_segment(
    request: Request, segment_id: uuid.UUID, principal: AdminOrOperator, pool: Pool
) -> Response:
    """Delete the segment with its memberships and history. One ``segment-deleted`` event says
    so (no exit per member: the segment is gone, not its members' behaviour)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await catalog.delete_segment(conn, principal.tenant_id, segment_id)
        if row is None:
            raise not_found()
        now = now_of(request)
        event = new_event(
            SegmentDeletedEvent,
            tenant_id=principal.tenant_id,
            source=SOURCE,
            occurred_at=now,
            data=SegmentDeleted(
                segment_id=str(segment_id), name=row["name"], size=row["size"], deleted_at=now
            ),
        )
        await enqueue_event(conn, "segment-deleted", event)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _encode_cursor(external_userid: str) -> str:
    return base64.urlsafe_b64encode(external_userid.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(
            400, "Invalid cursor", "pass next_cursor of the previous page", type="invalid-cursor"
        ) from None


@router.get(
    "/{segment_id}/members", response_model=Members, summary="Members of a segment", responses=_NOT_FOUND
)
async def list_members(
    segment_id: uuid.UUID,
    principal: AnyRole,
    pool: Pool,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Members:
    """Members in external_userid order, a page at a time (a guide: those they follow)."""
    tenant = principal.tenant_id
    if await catalog.get_segment(pool, tenant, segment_id) is None:
        raise not_found()
    after = _decode_cursor(cursor) if cursor else ""
    staff = principal.staff_id if principal.is_guide else None
    rows = await catalog.members_page(pool, tenant, segment_id, after, limit + 1, staff)
    page = rows[:limit]
    return Members(
        items=[Member(external_userid=r["external_userid"], entered_at=r["entered_at"]) for r in page],
        next_cursor=_encode_cursor(page[-1]["external_userid"]) if len(rows) > limit else None,
    )


@router.get(
    "/{segment_id}/history", response_model=SizeHistory, summary="Segment size per day", responses=_NOT_FOUND
)
async def size_history(
    segment_id: uuid.UUID,
    request: Request,
    principal: AnyRole,
    pool: Pool,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back, today included.")] = 30,
) -> SizeHistory:
    """Size at the end of each day (tenant timezone), with the day's entries and exits; days
    before the segment existed show 0."""
    tenant = principal.tenant_id
    if await catalog.get_segment(pool, tenant, segment_id) is None:
        raise not_found()
    _, today = await today_of(pool, request, tenant)
    first = today - timedelta(days=days - 1)
    size, rows = await catalog.history(pool, tenant, segment_id, first, today)
    by_day = {r["day"]: r for r in rows}
    items: list[SizeOnDay] = []
    for n in range(days):
        day = first + timedelta(days=n)
        row = by_day.get(day)
        if row is not None:
            size = row["size"]
        items.append(
            SizeOnDay(
                day=day,
                size=size,
                entered=row["entered"] if row is not None else 0,
                exited=row["exited"] if row is not None else 0,
            )
        )
    return SizeHistory(segment_id=segment_id, items=items)


@contacts_router.get(
    "/{external_userid}/segments", response_model=ContactSegments, summary="The segments a contact is in"
)
async def contact_segments(
    external_userid: ExternalUserId, principal: AnyRole, pool: Pool
) -> ContactSegments:
    tenant = principal.tenant_id
    if principal.is_guide and not await catalog.is_followed_by(
        pool, tenant, external_userid, principal.staff_id or ""
    ):
        raise Problem(404, "Contact not found", type="contact-not-found")
    rows = await catalog.contact_segments(pool, tenant, external_userid)
    return ContactSegments(
        external_userid=external_userid,
        segments=[
            ContactSegment(segment_id=r["segment_id"], name=r["name"], entered_at=r["entered_at"])
            for r in rows
        ],
    )
