"""SQL of bulk tag jobs: the job rows (status and progress) and the contacts still to handle.

A chunk is one transaction: the runner locks the job row (``FOR UPDATE SKIP LOCKED``, so two
runners never work one job at once), takes the next items (deleting them), applies them and
advances the progress. A crash rolls all of it back: the items and the progress come back as
they were, and the next run repeats exactly that chunk.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tag_svc.tags.domain import Action, JobStatus
from tag_svc.tags.store import Conn, Executor

__all__ = [
    "JobRow",
    "advance_job",
    "claim_job",
    "create_job",
    "fail_job",
    "get_job",
    "record_failure",
    "take_items",
]

INSERT_JOB = """
INSERT INTO tag_jobs (tenant_id, job_id, tag_id, action, actor_id, total)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING tenant_id, job_id, tag_id, action, purge, actor_id, status, total, processed, changed,
          attempts, error, created_at, started_at, finished_at
"""

INSERT_JOB_ITEMS = """
INSERT INTO tag_job_items (tenant_id, job_id, seq, external_userid)
SELECT $1, $2, x.n::integer, x.e FROM unnest($3::text[]) WITH ORDINALITY AS x(e, n)
"""

SELECT_JOB = """
SELECT tenant_id, job_id, tag_id, action, purge, actor_id, status, total, processed, changed,
       attempts, error, created_at, started_at, finished_at
FROM tag_jobs WHERE tenant_id = $1 AND job_id = $2
"""

# The runner's queue scan, across tenants: the job whose last chunk is oldest goes next, so
# concurrent jobs take turns chunk by chunk and a small job is not stuck behind a big one.
CLAIM_JOB = """
SELECT tenant_id, job_id, tag_id, action, purge, actor_id, status, total, processed, changed,
       attempts, error, created_at, started_at, finished_at
FROM tag_jobs
WHERE status IN ('queued', 'running') AND next_attempt_at <= now()
ORDER BY last_chunk_at NULLS FIRST, created_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""

# Items are numbered 1..total and taken in order, so the next ones are those after `processed`:
# a range on the primary key (a "first n" scan would wade through the taken items' dead rows).
TAKE_ITEMS = """
DELETE FROM tag_job_items
WHERE tenant_id = $1 AND job_id = $2 AND seq > $3 AND seq <= $3 + $4
RETURNING seq, external_userid
"""

ADVANCE_JOB = """
UPDATE tag_jobs SET
    processed = processed + $3,
    changed = changed + $4,
    status = $5,
    started_at = COALESCE(started_at, now()),
    last_chunk_at = now(),
    finished_at = CASE WHEN $5 = 'done' THEN now() END,
    attempts = 0,
    error = NULL
WHERE tenant_id = $1 AND job_id = $2
"""

FAIL_JOB = """
UPDATE tag_jobs SET status = 'failed', error = $3, finished_at = now(), last_chunk_at = now()
WHERE tenant_id = $1 AND job_id = $2
"""

DELETE_JOB_ITEMS = "DELETE FROM tag_job_items WHERE tenant_id = $1 AND job_id = $2"

RECORD_FAILURE = """
UPDATE tag_jobs SET attempts = attempts + 1, next_attempt_at = now() + $3::interval, error = $4
WHERE tenant_id = $1 AND job_id = $2 AND status IN ('queued', 'running')
RETURNING attempts
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    tenant_id: str
    job_id: uuid.UUID
    tag_id: uuid.UUID
    action: Action
    purge: bool
    actor_id: str | None
    status: JobStatus
    total: int
    processed: int
    changed: int
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


async def create_job(
    conn: Conn,
    tenant_id: str,
    *,
    tag_id: uuid.UUID,
    action: Action,
    actor_id: str | None,
    external_userids: Sequence[str],
) -> JobRow:
    """Queue a job over ``external_userids`` (deduplicated by the caller), inside a transaction."""
    job_id = uuid.uuid4()
    row = await conn.fetchrow(INSERT_JOB, tenant_id, job_id, tag_id, action, actor_id, len(external_userids))
    await conn.execute(INSERT_JOB_ITEMS, tenant_id, job_id, list(external_userids))
    assert row is not None
    return JobRow(**dict(row))


async def get_job(conn: Executor, tenant_id: str, job_id: uuid.UUID) -> JobRow | None:
    row = await conn.fetchrow(SELECT_JOB, tenant_id, job_id)
    return JobRow(**dict(row)) if row is not None else None


async def claim_job(conn: Conn) -> JobRow | None:
    """The next due job of any tenant, locked for the caller's transaction (``None``: no work)."""
    row = await conn.fetchrow(CLAIM_JOB)
    return JobRow(**dict(row)) if row is not None else None


async def take_items(
    conn: Conn, tenant_id: str, job_id: uuid.UUID, *, processed: int, limit: int
) -> list[str]:
    """Remove and return the ``limit`` contacts after the first ``processed``, in the order they
    were given."""
    rows = await conn.fetch(TAKE_ITEMS, tenant_id, job_id, processed, limit)
    return [r["external_userid"] for r in sorted(rows, key=lambda r: r["seq"])]


async def advance_job(
    conn: Conn, tenant_id: str, job_id: uuid.UUID, *, processed: int, changed: int, status: JobStatus
) -> None:
    """Add a chunk's counts to the job and set its status (``done`` also stamps finished_at)."""
    await conn.execute(ADVANCE_JOB, tenant_id, job_id, processed, changed, status)


async def fail_job(conn: Conn, tenant_id: str, job_id: uuid.UUID, error: str) -> None:
    """Give up on a job: ``failed`` with the reason; its remaining contacts are dropped."""
    await conn.execute(FAIL_JOB, tenant_id, job_id, error)
    await conn.execute(DELETE_JOB_ITEMS, tenant_id, job_id)


async def record_failure(
    conn: Executor, tenant_id: str, job_id: uuid.UUID, *, wait: timedelta, error: str
) -> int:
    """Count a failed chunk and hold the job back for ``wait``; returns its failures so far."""
    return int(await conn.fetchval(RECORD_FAILURE, tenant_id, job_id, wait, error) or 0)
