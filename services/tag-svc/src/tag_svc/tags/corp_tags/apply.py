"""Applying the corp tag sync: a pull written in the caller's transaction, and the push of
local-only tags to WeCom."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import asyncpg

from tag_svc.tags import edits, rules
from tag_svc.tags.corp_tags.model import (
    CorpTagAdapter,
    CorpTagGroup,
    GroupStep,
    Issue,
    LocalGroup,
    LocalTag,
    NewCorpTag,
    PullPlan,
    SyncReport,
    TagStep,
    as_pushed,
    plan_pull,
)
from tag_svc.tags.domain import Conflict
from tag_svc.tags.store import Conn, catalog
from tag_svc.tags.store import corp_tags as store
from tag_svc.tags.store import rules as rule_store
from tag_svc.tags.store import wecom as pushes

__all__ = ["apply_pull", "pull", "push_local"]

S = TypeVar("S", GroupStep, TagStep)


async def pull(conn: Conn, tenant_id: str, wecom: Sequence[CorpTagGroup]) -> SyncReport:
    """Plan and apply a pull of ``wecom`` (the tenant's library as just read) inside the caller's
    transaction. One sync of a tenant at a time (a transaction-scoped lock). Renames and
    deletions made here that are still waiting to be pushed count as done in WeCom."""
    await store.lock_sync(conn, tenant_id)
    renamed, deleted = await pushes.pending_corp_tag_edits(conn, tenant_id)
    wecom = as_pushed(wecom, renamed=renamed, deleted=deleted)
    groups = [
        LocalGroup(g.group_id, g.name, g.sort_order, g.wecom_group_id)
        for g in await catalog.list_groups(conn, tenant_id)
    ]
    tags = [
        LocalTag(t.tag_id, t.group_id, t.name, t.sort_order, t.wecom_tag_id)
        for t in await catalog.list_tags(conn, tenant_id)
    ]
    return await apply_pull(conn, tenant_id, plan_pull(wecom, groups, tags))


async def apply_pull(conn: Conn, tenant_id: str, plan: PullPlan) -> SyncReport:
    """Write ``plan`` in the caller's transaction, through the catalogue's own statements (the
    tags API's): what was done, and what could not be, is the report."""
    report = SyncReport(issues=list(plan.issues))
    if any(s.rename for s in plan.tags):
        # The rename guard takes the rule-graph lock; taking it before any row lock keeps the
        # tags API's order (graph, then rows), so a sync and a PATCH never deadlock.
        await rule_store.lock_rule_graph(conn, tenant_id)

    for g in plan.unlink_groups:
        await catalog.update_group(
            conn,
            tenant_id,
            g.group_id,
            name=None,
            sort_order=None,
            wecom_group_id=None,
            set_wecom_group_id=True,
        )
        report.groups_unlinked += 1
    for t in plan.unlink_tags:
        await edits.update_tag(
            conn,
            tenant_id,
            t.tag_id,
            name=None,
            sort_order=None,
            group_id=None,
            wecom_tag_id=None,
            set_wecom_tag_id=True,
            push=False,
        )
        report.tags_unlinked += 1
        report.unlinked.append(t)

    local_groups = {s.wecom_group_id: s.group_id for s in plan.groups if s.group_id is not None}

    async def apply_group(step: GroupStep) -> None:
        if step.group_id is None:
            row = await catalog.create_group(
                conn,
                tenant_id,
                name=step.name,
                sort_order=step.sort_order,
                wecom_group_id=step.wecom_group_id,
            )
            local_groups[step.wecom_group_id] = row.group_id
            report.groups_created += 1
            return
        done = await catalog.update_group(
            conn,
            tenant_id,
            step.group_id,
            name=step.name if step.rename else None,
            sort_order=step.sort_order,
            wecom_group_id=step.wecom_group_id,
            set_wecom_group_id=True,
        )
        if done is not None:  # else deleted meanwhile: nothing to sync into
            report.groups_linked += step.link
            report.groups_renamed += step.rename
            report.groups_reordered += step.reorder

    def group_issue(step: GroupStep) -> Issue:
        return Issue(
            "group-name-taken", step.name, wecom_group_id=step.wecom_group_id, group_id=step.group_id
        )

    await _apply_all(conn, [s for s in plan.groups if s.changes], apply_group, group_issue, report)

    async def apply_tag(step: TagStep) -> None:
        group_id = local_groups.get(step.wecom_group_id)
        if group_id is None:  # its group could not be created (reported)
            return
        if step.tag_id is None:
            row = await catalog.create_tag(
                conn,
                tenant_id,
                group_id,
                name=step.name,
                sort_order=step.sort_order,
                wecom_tag_id=step.wecom_tag_id,
            )
            report.tags_created += row is not None
            return
        if step.rename:
            # Segments read tags by name: the tags API's rename guard, reported instead of refused.
            try:
                await rules.check_tag_rename(conn, tenant_id, step.tag_id, step.name)
            except rules.RuleCycle:
                report.note(
                    Issue("rename-cycle", step.name, wecom_tag_id=step.wecom_tag_id, tag_id=step.tag_id)
                )
                step = replace(step, rename=False)
        done = await edits.update_tag(
            conn,
            tenant_id,
            step.tag_id,
            name=step.name if step.rename else None,
            sort_order=step.sort_order,
            group_id=group_id if step.move else None,
            wecom_tag_id=step.wecom_tag_id,
            set_wecom_tag_id=True,
            # WeCom's own names: nothing to push back. A rename still reaches the segments.
            push=False,
        )
        if done is not None:
            report.tags_linked += step.link
            report.tags_renamed += step.rename
            report.tags_reordered += step.reorder
            report.tags_moved += step.move

    def tag_issue(step: TagStep) -> Issue:
        return Issue(
            "tag-name-taken",
            step.name,
            wecom_group_id=step.wecom_group_id,
            wecom_tag_id=step.wecom_tag_id,
            tag_id=step.tag_id,
        )

    await _apply_all(conn, [s for s in plan.tags if s.changes], apply_tag, tag_issue, report)
    return report


async def _apply_all(
    conn: Conn,
    steps: list[S],
    apply: Callable[[S], Awaitable[None]],
    issue: Callable[[S], Issue],
    report: SyncReport,
) -> None:
    """Apply each step in a savepoint. Steps refused for a taken name are retried while others
    succeed (a rename into a name another step frees); each one left is reported, and an existing
    item's link and order are still applied without the rename or move."""
    pending = steps
    refused: list[tuple[S, Conflict]] = []
    while pending:
        refused = []
        for step in pending:
            conflict = await _try(conn, apply, step)
            if conflict is not None:
                refused.append((step, conflict))
        if len(refused) == len(pending):
            break
        pending = [s for s, _ in refused]
    for step, conflict in refused:
        reported = issue(step)
        if conflict.what == "wecom-tag-id":
            reported = replace(reported, kind="wecom-tag-id-taken")
        report.note(reported)
        if isinstance(step, GroupStep) and step.group_id is not None and step.rename:
            await _try(conn, apply, replace(step, rename=False))
        elif isinstance(step, TagStep) and step.tag_id is not None and (step.rename or step.move):
            await _try(conn, apply, replace(step, rename=False, move=False))


async def _try(conn: Conn, apply: Callable[[S], Awaitable[None]], step: S) -> Conflict | None:
    try:
        async with conn.transaction():  # a savepoint: a refused write leaves the rest intact
            await apply(step)
    except Conflict as exc:
        return exc
    return None


# --- pushing local-only items ------------------------------------------------------------------


async def push_local(pool: asyncpg.Pool, tenant_id: str, adapter: CorpTagAdapter) -> tuple[int, int]:
    """Create the local-only tags in WeCom (``add_corp_tag``) and store the ids WeCom gives them,
    group by group: into the WeCom group a local group mirrors, else into a new WeCom group of the
    local group's name (which the local group is then linked to). WeCom has no empty groups: a
    local group without local-only tags is left. Returns (groups, tags) linked.

    Raises :class:`~tag_svc.tags.wecom.WeComTagError`; groups pushed before stay linked, and what
    WeCom created but was not linked here is linked by name at the next pull.
    """
    async with pool.acquire() as conn:
        local_only = await store.local_only(conn, tenant_id)
    groups = tags = 0
    for g in local_only:
        created = await adapter.add_corp_tag(
            tenant_id,
            group_id=g.wecom_group_id,
            group_name=None if g.wecom_group_id else g.name,
            # Larger first in WeCom: keep the local order among the pushed tags.
            tags=[NewCorpTag(t.name, order=len(g.tags) - i) for i, t in enumerate(g.tags)],
        )
        async with pool.acquire() as conn, conn.transaction():
            await store.lock_sync(conn, tenant_id)
            if g.wecom_group_id is None:
                linked = await catalog.update_group(
                    conn,
                    tenant_id,
                    g.group_id,
                    name=None,
                    sort_order=None,
                    wecom_group_id=created.group_id,
                    set_wecom_group_id=True,
                )
                groups += linked is not None
            ids = {t.name: t.id for t in created.tags}
            for t in g.tags:
                if t.name not in ids:
                    continue
                with contextlib.suppress(Conflict):
                    async with conn.transaction():
                        row = await edits.update_tag(
                            conn,
                            tenant_id,
                            t.tag_id,
                            name=None,
                            sort_order=None,
                            group_id=None,
                            wecom_tag_id=ids[t.name],
                            set_wecom_tag_id=True,
                            push=False,
                        )
                        tags += row is not None
    return groups, tags
