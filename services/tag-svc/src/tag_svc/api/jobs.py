"""/v1/tag-jobs: tag or untag up to 100,000 contacts as a job, and follow its progress.

``POST`` stores the job and its contacts (repeats counted once) and answers 202 at once; the
worker's job runner applies it in chunks, one transaction each, with a ``contact-tagged`` event
per contact whose tags really changed. ``GET`` shows status and progress.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from scrm_shared.auth import AdminOrOperator
from scrm_shared.problems import Problem
from tag_svc.api.deps import Pool
from tag_svc.api.tags import tag_not_found
from tag_svc.schemas import TagJob, TagJobIn
from tag_svc.tags.domain import unique_in_order
from tag_svc.tags.store import contacts as tag_store
from tag_svc.tags.store import jobs as store

router = APIRouter(prefix="/v1/tag-jobs", tags=["tag jobs"])


def _shape(job: store.JobRow) -> TagJob:
    return TagJob(
        job_id=job.job_id,
        tag_id=job.tag_id,
        action=job.action,
        status=job.status,
        total=job.total,
        processed=job.processed,
        changed=job.changed,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post(
    "",
    response_model=TagJob,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Tag or untag many contacts (a job)",
    responses={404: {"description": "The tag does not exist."}},
)
async def create_job(body: TagJobIn, principal: AdminOrOperator, pool: Pool, response: Response) -> TagJob:
    """Queue the job; follow it at the ``Location`` it answers with."""
    async with pool.acquire() as conn, conn.transaction():
        # The live tag, locked: a deletion cannot slip between the check and the job.
        if not await tag_store.lock_tags(conn, principal.tenant_id, [body.tag_id]):
            raise tag_not_found()
        job = await store.create_job(
            conn,
            principal.tenant_id,
            tag_id=body.tag_id,
            action=body.action,
            actor_id=principal.subject,
            external_userids=unique_in_order(body.external_userids),
        )
    response.headers["Location"] = f"{router.prefix}/{job.job_id}"
    return _shape(job)


@router.get("/{job_id}", response_model=TagJob, summary="A tag job's status and progress")
async def get_job(job_id: uuid.UUID, principal: AdminOrOperator, pool: Pool) -> TagJob:
    job = await store.get_job(pool, principal.tenant_id, job_id)
    if job is None:
        raise Problem(404, "Tag job not found", type="tag-job-not-found")
    return _shape(job)
