"""Bulk tag/untag jobs: the runner, a background task of tag-svc's worker.

``POST /v1/tag-jobs`` stores a job and its contacts; the runner works through them one chunk per
transaction (:meth:`JobRunner.run_chunk`): lock the job, take its next contacts, tag or untag
them with one ``contact-tagged`` event per real change (``enqueue_events``) and the WeCom pushes,
advance the progress. Progress lives in the job row, so a crash or a restart repeats at most the
chunk that was in flight, which rolled back as a whole: no contact is counted or announced twice.

A chunk that fails is retried after ``retry_wait`` (other jobs go on meanwhile); after
``max_attempts`` failures in a row the job is ``failed``. An ``add`` job whose tag was deleted
fails at once; a deleted tag's purge job (``purge``) drops the tag row when it is done.

The same background task works through the name syncs of renamed tags
(:class:`~tag_svc.tags.name_syncs.NameSyncRunner`), a chunk of each in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import ClassVar

from prometheus_client import Counter

from scrm_shared.service import WorkerDeps
from tag_svc.config import TagSettings
from tag_svc.tags import tagging
from tag_svc.tags.chunked import CHUNK_SIZE, ChunkedRunner
from tag_svc.tags.domain import Actor, job_status, next_chunk
from tag_svc.tags.name_syncs import NameSyncRunner
from tag_svc.tags.store import Conn, catalog, contacts
from tag_svc.tags.store import jobs as store

__all__ = ["JobRunner", "run_tag_jobs"]

log = logging.getLogger(__name__)

JOB_CHUNKS = Counter(
    "scrm_tag_job_chunks", "Bulk tag job chunks, by outcome (applied, failed, job-failed).", ["outcome"]
)


class JobRunner(ChunkedRunner[store.JobRow]):
    """Works through pending tag jobs of every tenant, one chunk per call."""

    chunks: ClassVar[Counter] = JOB_CHUNKS
    given_up: ClassVar[str] = "job-failed"
    logger: ClassVar[logging.Logger] = log
    failure_message: ClassVar[str] = "tag job chunk failed"

    async def _claim(self, conn: Conn) -> store.JobRow | None:
        return await store.claim_job(conn)

    async def _chunk(self, conn: Conn, job: store.JobRow) -> str:
        """Apply one chunk of ``job`` in the caller's transaction; returns the outcome."""
        tag = await contacts.lock_tag(conn, job.tenant_id, job.tag_id)
        if tag is None or (tag.deleted and job.action == "add"):
            await store.fail_job(conn, job.tenant_id, job.job_id, "tag-deleted")
            log.info("tag job failed: its tag was deleted", extra={"tenant_id": job.tenant_id})
            return "job-failed"
        limit = next_chunk(job.total, job.processed, self.chunk_size)
        euids = (
            await store.take_items(conn, job.tenant_id, job.job_id, processed=job.processed, limit=limit)
            if limit
            else []
        )
        pairs = [(e, tag.ref) for e in euids]
        changes = await tagging.apply(
            conn,
            job.tenant_id,
            actor=Actor("operator", actor_id=job.actor_id),
            at=datetime.now(UTC),
            add=pairs if job.action == "add" else (),
            remove=pairs if job.action == "remove" else (),
            # A deleted tag is a local matter: WeCom's corp tag (if any) is not ours to clear.
            push=not job.purge,
        )
        processed = job.processed + len(euids)
        # Fewer items than the counters promise can only mean they are gone: the job is over.
        status = job_status(job.total, processed) if euids else "done"
        await store.advance_job(
            conn, job.tenant_id, job.job_id, processed=len(euids), changed=len(changes), status=status
        )
        if status == "done" and job.purge:
            await catalog.drop_deleted_tag(conn, job.tenant_id, job.tag_id, tag.group_id)
        return "applied"

    async def _record_failure(self, job: store.JobRow, error: str) -> int:
        return await store.record_failure(
            self.pool, job.tenant_id, job.job_id, wait=self.retry_wait, error=error
        )

    async def _give_up(self, conn: Conn, job: store.JobRow, error: str) -> None:
        await store.fail_job(conn, job.tenant_id, job.job_id, error)


async def run_tag_jobs(deps: WorkerDeps, stop: asyncio.Event) -> None:
    """Background task of tag-svc's worker: run due chunks of bulk jobs and of renamed tags' name
    syncs back to back (one of each in turn), and look for new ones every
    ``tag_job_poll_seconds`` while there are none, until ``stop``. Never raises."""
    settings = deps.settings
    chunk_size = settings.tag_job_chunk_size if isinstance(settings, TagSettings) else CHUNK_SIZE
    poll = settings.tag_job_poll_seconds if isinstance(settings, TagSettings) else 1.0
    runners = (JobRunner(deps.pool, chunk_size=chunk_size), NameSyncRunner(deps.pool, chunk_size=chunk_size))
    while not stop.is_set():
        worked = False
        for runner in runners:
            try:
                worked = await runner.run_chunk() or worked
            except Exception as exc:  # the database is unreachable: wait and try again
                log.warning("tag job runner failed", extra={"error_type": type(exc).__name__})
        if not worked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
