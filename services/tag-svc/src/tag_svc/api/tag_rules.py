"""/v1/tag-rules: rule-based tagging, "when a contact enters segment S, add tag T (and remove it
on exit)" (docs/segments.md, "Rule-based tagging"; :mod:`tag_svc.tags.rules`).

Admins and operators create and delete rules; any role reads them. Creating a rule tags the
segment's current members before it answers (in chunks of ``tag_job_chunk_size``, one
transaction each, with a ``contact-tagged`` event ``by="rule"`` per contact that did not have the
tag); from then on the worker applies it to every entry and exit. A rule that would make segment
membership feed itself (a cycle through tag names) is refused with 409 and the cycle.

Deleting a rule leaves the tags it set; ``?remove_tags=true`` removes them too (except where
another rule of a segment the contact is in keeps the tag).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from scrm_shared.auth import AdminOrOperator, AnyRole
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool
from tag_svc.config import TagSettings
from tag_svc.segments import Rule
from tag_svc.tags import rules
from tag_svc.tags.store import Conn
from tag_svc.tags.store import rules as store

__all__ = [
    "TagRule",
    "TagRuleIn",
    "TagRules",
    "cycle_problem",
    "refuse_rename_cycle",
    "refuse_segment_cycle",
    "router",
]

router = APIRouter(prefix="/v1/tag-rules", tags=["tag rules"])

_NOT_FOUND = {404: {"description": "No such rule for this tenant."}}


class TagRuleIn(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    segment_id: uuid.UUID
    tag_id: uuid.UUID
    remove_on_exit: bool = Field(
        default=True, description="Remove the tag when the contact leaves the segment (if this rule set it)."
    )


class TagRule(BaseModel):
    rule_id: uuid.UUID
    segment_id: uuid.UUID
    segment_name: str
    tag_id: uuid.UUID
    tag_name: str
    group_name: str
    remove_on_exit: bool
    status: Literal["applying", "active"] = Field(
        description="applying: the segment's members at creation are still being tagged (a creation "
        "that failed half-way; post it again to resume); active: done."
    )
    applied: int = Field(description="Members tagged when the rule was created (not those that had the tag).")
    created_at: datetime
    created_by: str | None


class TagRules(BaseModel):
    items: list[TagRule]


class CycleStepOut(BaseModel):
    """Segment ``segment_id`` adds tag ``tag_id``, which the next step's segment reads (the last
    step's tag is read by the first step's segment)."""

    segment_id: uuid.UUID
    segment_name: str
    tag_id: uuid.UUID
    tag_name: str


def not_found() -> Problem:
    return Problem(404, "Tag rule not found", type="tag-rule-not-found")


def cycle_problem(exc: rules.RuleCycle) -> Problem:
    """409: the change would close a cycle of tag rules; ``cycle`` lists it step by step."""
    return Problem(
        409,
        "Tag rule cycle",
        exc.describe(),
        type="tag-rule-cycle",
        cycle=[
            CycleStepOut.model_validate(s, from_attributes=True).model_dump(mode="json") for s in exc.steps
        ],
    )


async def refuse_rename_cycle(conn: Conn, tenant_id: str, tag_id: uuid.UUID, name: str) -> None:
    """409 if renaming the tag closes a cycle of tag rules (segments read tags by name; for the
    tags API, inside the transaction that renames the tag)."""
    try:
        await rules.check_tag_rename(conn, tenant_id, tag_id, name)
    except rules.RuleCycle as exc:
        raise cycle_problem(exc) from None


async def refuse_segment_cycle(conn: Conn, tenant_id: str, segment_id: uuid.UUID, rule: Rule) -> None:
    """409 if giving the segment this rule would close a cycle of tag rules (for the segments API,
    inside the transaction that stores the rule)."""
    try:
        await rules.check_segment_rule(conn, tenant_id, segment_id, rule)
    except rules.RuleCycle as exc:
        raise cycle_problem(exc) from None


def _shape(row: store.RuleRow) -> TagRule:
    return TagRule.model_validate(row, from_attributes=True)


def _chunk_size(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return settings.tag_job_chunk_size if isinstance(settings, TagSettings) else rules.APPLY_CHUNK


@router.post(
    "",
    response_model=TagRule,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tag rule (and tag the segment's members)",
    responses={
        200: {"model": TagRule, "description": "The rule existed half-applied; its application was resumed."},
        404: {"description": "The segment or the tag does not exist."},
        409: {"description": "The segment has a rule for this tag, or the rule would close a cycle."},
    },
)
async def create_rule(
    body: TagRuleIn, request: Request, response: Response, principal: AdminOrOperator, pool: Pool
) -> TagRule:
    """Store the rule, tag the segment's current members, answer with the rule (``applied``:
    how many were tagged)."""
    tenant = principal.tenant_id
    try:
        async with pool.acquire() as conn, conn.transaction():
            rule_id, created = await rules.create_rule(
                conn,
                tenant,
                segment_id=body.segment_id,
                tag_id=body.tag_id,
                remove_on_exit=body.remove_on_exit,
                created_by=principal.subject,
            )
    except rules.UnknownSegment:
        raise Problem(404, "Segment not found", type="segment-not-found") from None
    except rules.UnknownTag:
        raise Problem(404, "Tag not found", type="tag-not-found") from None
    except rules.DuplicateRule as exc:
        raise Problem(
            409,
            "Tag rule exists",
            "the segment has a rule for this tag",
            type="tag-rule-exists",
            rule_id=str(exc.rule_id),
        ) from None
    except rules.RuleCycle as exc:
        raise cycle_problem(exc) from None
    await rules.apply_to_members(pool, tenant, rule_id, _chunk_size(request))
    row = await store.get_rule(pool, tenant, rule_id)
    if row is None:  # deleted (or its tag or segment) while it was being applied
        raise not_found()
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"{router.prefix}/{rule_id}"
    return _shape(row)


@router.get("", response_model=TagRules, summary="The tenant's tag rules")
async def list_rules(
    principal: AnyRole,
    pool: Pool,
    segment_id: Annotated[uuid.UUID | None, Query(description="Only this segment's rules.")] = None,
) -> TagRules:
    """Oldest first."""
    return TagRules(items=[_shape(r) for r in await store.list_rules(pool, principal.tenant_id, segment_id)])


@router.get("/{rule_id}", response_model=TagRule, summary="One tag rule", responses=_NOT_FOUND)
async def get_rule(rule_id: uuid.UUID, principal: AnyRole, pool: Pool) -> TagRule:
    row = await store.get_rule(pool, principal.tenant_id, rule_id)
    if row is None:
        raise not_found()
    return _shape(row)


@router.delete(
    "/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a tag rule",
    responses=_NOT_FOUND,
)
async def delete_rule(
    rule_id: uuid.UUID,
    request: Request,
    principal: AdminOrOperator,
    pool: Pool,
    remove_tags: Annotated[
        bool, Query(description="Also remove the tags this rule set (other tags stay).")
    ] = False,
) -> Response:
    """Delete the rule. The tags it set stay unless ``remove_tags=true``."""
    deleted = await rules.delete_rule(
        pool, principal.tenant_id, rule_id, remove_tags=remove_tags, chunk_size=_chunk_size(request)
    )
    if not deleted:
        raise not_found()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
