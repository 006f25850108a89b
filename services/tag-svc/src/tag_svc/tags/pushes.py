"""Draining the WeCom push queue: a background task of tag-svc's worker.

Tag changes made here (by guides, operators, jobs, rules; never those WeCom made) on tags synced
with WeCom are queued in ``wecom_pushes`` in the transaction of the change. :class:`Pusher` leases
due rows, calls mark_tag and deletes each row that went through, recording what it set on the
staff member's relation (so WeCom's next snapshot of that relation does not read as an edit).

Renames and deletions of linked groups and tags made here (:mod:`tag_svc.tags.edits`) are rows of
the same queue, pushed with ``edit_corp_tag`` and ``del_corp_tag``, with the same retries; a
tenant's catalogue rows go out in the order they were queued.

Whom to push as: a guide's change goes to the guide's own relation. Otherwise (operators, jobs)
an addition goes to the staff member who added the contact last and still follows it (from
friend-added), and a removal to every staff member whose WeCom relation carries the tag (or,
when none is known, that same latest one).

Failures: a retryable one (WeCom busy or throttled, unreachable, no credentials yet, no staff
member known yet) waits ``retry_base`` doubling up to ``retry_cap``; after ``max_attempts``, or
at once for an error that retrying cannot fix, the row is kept as ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter

from scrm_shared.service import WorkerDeps
from scrm_shared.service.worker import BackgroundTask
from tag_svc.config import TagSettings
from tag_svc.tags.domain import push_backoff
from tag_svc.tags.store import contacts
from tag_svc.tags.store import wecom as store
from tag_svc.tags.wecom import WeComTagAdapter, WeComTagError, open_adapter

__all__ = ["PushReport", "Pusher", "push_task", "run_wecom_pushes"]

log = logging.getLogger(__name__)

PUSHES = Counter(
    "scrm_tag_wecom_pushes",
    "Pushes to WeCom by call (mark_tag, edit_corp_tag, del_corp_tag) and outcome (pushed, retry, failed).",
    ["api", "outcome"],
)

NO_STAFF = "no-staff"
LEASE = timedelta(seconds=120)


@dataclass
class PushReport:
    outcomes: Tally[str] = field(default_factory=Tally)

    @property
    def handled(self) -> int:
        return sum(self.outcomes.values())


class Pusher:
    """Pushes due rows of the queue (every tenant's) through ``adapter``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        adapter: WeComTagAdapter,
        *,
        batch: int = 100,
        max_attempts: int = 8,
        retry_base: timedelta = timedelta(seconds=5),
        retry_cap: timedelta = timedelta(hours=1),
        lease: timedelta = LEASE,
    ) -> None:
        self.pool = pool
        self.adapter = adapter
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.lease = lease

    async def run_once(self) -> PushReport:
        """Push one batch of due rows; returns what happened to them."""
        report = PushReport()
        for push in await store.claim_pushes(self.pool, self.batch, self.lease):
            outcome = await self._push(push) if push.kind == "mark_tag" else await self._push_catalog(push)
            report.outcomes[outcome] += 1
            PUSHES.labels(push.kind, outcome).inc()
        return report

    async def _push_catalog(self, push: store.QueuedPush) -> str:
        try:
            if push.kind == "edit_corp_tag":
                assert push.wecom_id is not None  # the table's check
                await self.adapter.edit_corp_tag(push.tenant_id, push.wecom_id, name=push.wecom_name)
            else:
                await self.adapter.del_corp_tag(
                    push.tenant_id, tag_ids=push.del_tag_ids, group_ids=push.del_group_ids
                )
        except WeComTagError as exc:
            # Repeating either is harmless: a rename sets the name, a deletion that went through
            # but was not recorded fails next time (the id is gone) and is kept as failed.
            return await self._retry_or_fail(push, f"errcode {exc.errcode}", retryable=exc.retryable)
        await store.delete_push(self.pool, push.tenant_id, push.id)
        return "pushed"

    async def _push(self, push: store.QueuedPush) -> str:
        euid = push.external_userid
        assert euid is not None  # a mark_tag row's (the table's check)
        targets = await self._targets(push, euid)
        if not targets:
            return await self._retry_or_fail(push, NO_STAFF, retryable=True)
        try:
            for staff_id in targets:
                await self.adapter.mark_tag(push.tenant_id, staff_id, euid, push.add_tag, push.remove_tag)
        except WeComTagError as exc:
            # Pushing to one staff member twice is harmless: mark_tag sets, it does not toggle.
            return await self._retry_or_fail(push, f"errcode {exc.errcode}", retryable=exc.retryable)
        async with self.pool.acquire() as conn, conn.transaction():
            for staff_id in targets:
                await contacts.apply_pushed(
                    conn, push.tenant_id, euid, staff_id, push.add_tag, push.remove_tag
                )
            await store.delete_push(conn, push.tenant_id, push.id)
        return "pushed"

    async def _targets(self, push: store.QueuedPush, euid: str) -> list[str]:
        targets: list[str] = []
        if push.remove_tag:
            targets += await contacts.snapshot_holders(self.pool, push.tenant_id, euid, push.remove_tag)
        if push.staff_id is not None and push.staff_id not in targets:
            targets.append(push.staff_id)
        if not targets:
            latest = await contacts.latest_follower(self.pool, push.tenant_id, euid)
            targets += [latest] if latest is not None else []
        return targets

    async def _retry_or_fail(self, push: store.QueuedPush, error: str, *, retryable: bool) -> str:
        attempts = push.attempts + 1
        if retryable and attempts < self.max_attempts:
            wait = push_backoff(attempts, self.retry_base, self.retry_cap)
            await store.retry_push(self.pool, push.tenant_id, push.id, wait=wait, error=error)
            return "retry"
        await store.fail_push(self.pool, push.tenant_id, push.id, error=error)
        log.warning(
            "wecom tag push failed", extra={"tenant_id": push.tenant_id, "api": push.kind, "error": error}
        )
        return "failed"


def push_task(adapter: WeComTagAdapter) -> BackgroundTask:
    """The push loop as a background task pushing through ``adapter`` (tests pass a
    :class:`~tag_svc.tags.wecom.RecordingAdapter` they can inspect)."""

    async def task(deps: WorkerDeps, stop: asyncio.Event) -> None:
        await _loop(_pusher(deps, adapter), _poll(deps), stop)

    return task


async def run_wecom_pushes(deps: WorkerDeps, stop: asyncio.Event) -> None:
    """Background task of tag-svc's worker: push due rows with the adapter the settings name
    (:func:`~tag_svc.tags.wecom.open_adapter`), until ``stop``. Never raises."""
    settings = deps.settings if isinstance(deps.settings, TagSettings) else TagSettings()
    async with open_adapter(settings, deps.pool) as adapter:
        await _loop(_pusher(deps, adapter), _poll(deps), stop)


def _pusher(deps: WorkerDeps, adapter: WeComTagAdapter) -> Pusher:
    s = deps.settings if isinstance(deps.settings, TagSettings) else TagSettings()
    return Pusher(
        deps.pool,
        adapter,
        batch=s.tag_wecom_push_batch,
        max_attempts=s.tag_wecom_push_max_attempts,
        retry_base=timedelta(seconds=s.tag_wecom_push_retry_base_seconds),
        retry_cap=timedelta(seconds=s.tag_wecom_push_retry_cap_seconds),
    )


def _poll(deps: WorkerDeps) -> float:
    return deps.settings.tag_wecom_push_poll_seconds if isinstance(deps.settings, TagSettings) else 1.0


async def _loop(pusher: Pusher, poll: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        report = await _guarded(pusher.run_once)
        # A full batch means more rows are probably due: straight on.
        if report is None or report.handled < pusher.batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)


async def _guarded(run: Callable[[], Coroutine[Any, Any, PushReport]]) -> PushReport | None:
    try:
        return await run()
    except Exception as exc:  # the database is unreachable: wait and try again
        log.warning("wecom tag pusher failed", extra={"error_type": type(exc).__name__})
        return None
