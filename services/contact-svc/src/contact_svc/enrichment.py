"""Enrichment: fill in the WeCom profile (name, avatar, gender, unionid) of new contacts.

WeCom's callbacks carry ids only, so a contact first exists without a profile
(``contacts.enriched_at IS NULL``). This background task of contact-svc's worker asks WeCom's
``externalcontact/get`` for each such contact of every tenant that configured an app secret,
and publishes ``contact-updated`` (``changed: ["profile"]``, plus ``"unionid"`` when WeCom knows
it) through the outbox in the transaction that sets ``enriched_at``; the read model applies the
event like any other. Per contact:

- profile found: ``contact-updated`` published, ``enriched_at`` set (one transaction);
- WeCom says there is no such external contact (84061, 40096): ``enriched_at`` set, nothing
  published;
- the contact was erased (or enriched by another worker) meanwhile: nothing at all;
- any other failure of this contact: it waits (1 min, doubling, at most 6 h) before its next try,
  and the others carry on;
- the corp's credentials are refused, or WeCom stays throttled or unreachable after the client's
  retries: the tenant is left until the next pass (other tenants carry on).

Only one worker process enriches at a time (a PostgreSQL advisory lock), so replicas do not spend
the corp's API quota twice. Nothing here logs personal data: tenant ids, counts and errcodes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from prometheus_client import Counter

from contact_svc.config import ContactSettings
from contact_svc.store import enrichment as store
from contact_svc.wecom.client import CorpClient, ExternalContact, WeComClient, WeComError
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.db.pool import advisory_key
from scrm_shared.events.contacts import ContactUpdated, ContactUpdatedEvent
from scrm_shared.events.envelope import new_event
from scrm_shared.events.primitives import ID_MAX_LENGTH
from scrm_shared.secrets import SecretBox
from scrm_shared.service import WorkerDeps

log = logging.getLogger(__name__)

TOPIC = "contact-updated"
BATCH_SIZE = 100  # contacts per tenant per pass
CONCURRENCY = 4  # WeCom calls in flight per tenant: well under its per-corp concurrency limit
FIRST_RETRY_WAIT = timedelta(minutes=1)
MAX_RETRY_WAIT = timedelta(hours=6)
NAME_MAX = 256
AVATAR_MAX = 2048

Outcome = Literal["published", "unchanged", "not_found", "skipped", "failed"]

CONTACTS_ENRICHED = Counter(
    "scrm_contact_enrichment_total",
    "Contacts handled by enrichment, by outcome (published, unchanged, not_found, skipped, failed).",
    ["outcome"],
)


@dataclass
class EnrichmentReport:
    """What one pass did: contacts per outcome, and the tenants it had to leave for later."""

    outcomes: Tally[str] = field(default_factory=Tally)
    tenants: int = 0
    tenants_deferred: list[str] = field(default_factory=list)
    # Some tenant filled its whole batch: more contacts are probably waiting.
    backlog: bool = False
    leader: bool = True

    @property
    def handled(self) -> int:
        return sum(self.outcomes.values())


class _DeferTenant(Exception):
    """The tenant's remaining contacts would fail alike (credentials, throttling, outage)."""

    def __init__(self, error: WeComError) -> None:
        super().__init__(error.errcode)
        self.error = error


class Enricher:
    """One enrichment pass over every tenant with a secret (see :meth:`run_once`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        wecom: WeComClient,
        box: SecretBox,
        *,
        source: str = "contact-svc",
        batch_size: int = BATCH_SIZE,
        concurrency: int = CONCURRENCY,
        first_retry_wait: timedelta = FIRST_RETRY_WAIT,
        max_retry_wait: timedelta = MAX_RETRY_WAIT,
    ) -> None:
        self.pool = pool
        self.wecom = wecom
        self.box = box
        self.source = source
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.first_retry_wait = first_retry_wait
        self.max_retry_wait = max_retry_wait

    async def run_once(self) -> EnrichmentReport:
        """Enrich up to ``batch_size`` waiting contacts of each tenant; returns what happened.

        Returns at once (``leader=False``) when another process holds the enrichment lock.
        """
        report = EnrichmentReport()
        async with self.pool.acquire() as lock_conn:
            key = advisory_key("contact-enrichment", await store.current_schema(lock_conn))
            if not await store.try_advisory_lock(lock_conn, key):
                report.leader = False
                return report
            try:
                for creds in await store.tenants_with_secret(self.pool, self.box):
                    report.tenants += 1
                    await self._enrich_tenant(creds, report)
            finally:
                await store.advisory_unlock(lock_conn, key)
        return report

    async def _enrich_tenant(self, creds: store.Credentials, report: EnrichmentReport) -> None:
        waiting = await store.contacts_to_enrich(self.pool, creds.tenant_id, self.batch_size)
        if not waiting:
            return
        corp = self.wecom.corp(creds.corp_id, creds.secret)
        clean = True
        for start in range(0, len(waiting), self.concurrency):
            chunk = waiting[start : start + self.concurrency]
            results = await asyncio.gather(
                *(self.enrich_contact(corp, creds.tenant_id, euid) for euid in chunk), return_exceptions=True
            )
            deferred, errors = _tally(results, report, creds.tenant_id)
            clean = clean and not errors
            if deferred is not None:
                report.tenants_deferred.append(creds.tenant_id)
                log.warning(
                    "enrichment of tenant deferred to the next pass",
                    extra={
                        "tenant_id": creds.tenant_id,
                        "api": deferred.api,
                        "errcode": deferred.errcode,
                        "error_type": type(deferred).__name__,
                    },
                )
                return
        # Straight on with the next batch only while contacts leave the queue: a contact that
        # failed without a recorded wait would otherwise be fetched again in a tight loop.
        if len(waiting) == self.batch_size and clean:
            report.backlog = True

    async def enrich_contact(self, corp: CorpClient, tenant_id: str, external_userid: str) -> Outcome:
        """Fetch one contact's profile and publish it; see the module docstring for the outcomes.

        Raises :class:`_DeferTenant` when the failure concerns the whole corp rather than this
        contact.
        """
        try:
            detail = await corp.get_external_contact(external_userid)
        except WeComError as exc:
            if exc.not_found:
                async with self.pool.acquire() as conn, conn.transaction():
                    marked = await store.mark_enriched(conn, tenant_id, external_userid)
                return "not_found" if marked else "skipped"
            if exc.corp_level or exc.retryable:
                # Not this contact's fault: no wait is recorded against it.
                raise _DeferTenant(exc) from exc
            await self._record_failure(tenant_id, external_userid, exc.errcode)
            return "failed"
        try:
            return await self._publish(tenant_id, external_userid, detail.external_contact)
        except (asyncpg.PostgresError, OSError):
            raise  # the database is in trouble: recording the failure would fail too
        except Exception as exc:
            # A profile the event contract refuses: retrying at once would fail alike.
            log.warning(
                "enrichment of a contact failed",
                extra={"tenant_id": tenant_id, "error_type": type(exc).__name__},
            )
            await self._record_failure(tenant_id, external_userid, None)
            return "failed"

    async def _publish(self, tenant_id: str, external_userid: str, contact: ExternalContact) -> Outcome:
        fields = profile_fields(contact)
        async with self.pool.acquire() as conn, conn.transaction():
            # The guarded update first: it locks the contact, and an erased contact stops here.
            if not await store.mark_enriched(conn, tenant_id, external_userid):
                return "skipped"
            if fields is None:
                return "unchanged"
            event = new_event(
                ContactUpdatedEvent,
                tenant_id=tenant_id,
                source=self.source,
                data=ContactUpdated(external_userid=external_userid, updated_at=datetime.now(UTC), **fields),
            )
            await enqueue_event(conn, TOPIC, event)
        return "published"

    async def _record_failure(self, tenant_id: str, external_userid: str, errcode: int | None) -> None:
        await store.record_failed_attempt(
            self.pool,
            tenant_id,
            external_userid,
            errcode,
            first_wait=self.first_retry_wait,
            max_wait=self.max_retry_wait,
        )


def clean_profile(contact: ExternalContact) -> dict[str, Any]:
    """WeCom's profile fields (name, avatar, gender, unionid) as the event contracts accept them.

    Values a contract would refuse are dropped rather than failing the contact: an over-long name
    is cut, an over-long avatar URL, an unknown gender or an unusable unionid is left out.
    """
    fields: dict[str, Any] = {}
    if contact.name:
        fields["name"] = contact.name[:NAME_MAX]
    if contact.avatar and len(contact.avatar) <= AVATAR_MAX:
        fields["avatar"] = contact.avatar
    if contact.gender in (0, 1, 2):
        fields["gender"] = contact.gender
    unionid = (contact.unionid or "").strip()
    if unionid and len(unionid) <= ID_MAX_LENGTH:
        fields["unionid"] = unionid
    return fields


def profile_fields(contact: ExternalContact) -> dict[str, Any] | None:
    """The ``contact-updated`` fields (with ``changed``) for WeCom's profile; ``None`` when WeCom
    told us nothing."""
    fields = clean_profile(contact)
    changed = []
    if fields.keys() & {"name", "avatar", "gender"}:
        changed.append("profile")
    if "unionid" in fields:
        changed.append("unionid")
    if not changed:
        return None
    return {**fields, "changed": changed}


def _tally(
    results: Sequence[object], report: EnrichmentReport, tenant_id: str
) -> tuple[WeComError | None, int]:
    """Count a chunk's outcomes; returns the error that defers the tenant (if any) and how many
    contacts raised."""
    deferred: WeComError | None = None
    errors = 0
    for result in results:
        if isinstance(result, _DeferTenant):
            deferred = deferred or result.error
        elif isinstance(result, BaseException):
            # A database hiccup: this contact only, it is tried again next pass.
            errors += 1
            report.outcomes["failed"] += 1
            CONTACTS_ENRICHED.labels("failed").inc()
            log.warning(
                "enrichment of a contact failed",
                extra={"tenant_id": tenant_id, "error_type": type(result).__name__},
            )
        else:
            outcome = str(result)
            report.outcomes[outcome] += 1
            CONTACTS_ENRICHED.labels(outcome).inc()
    return deferred, errors


async def run_enrichment(deps: WorkerDeps, stop: asyncio.Event) -> None:
    """Background task of contact-svc's worker: an enrichment pass every
    ``enrichment_interval_seconds`` (straight away while a backlog remains), until ``stop``.

    Never raises: a failed pass is logged and the next one tries again.
    """
    settings = deps.settings
    if not isinstance(settings, ContactSettings):
        log.error("enrichment needs ContactSettings; not running", extra={"service": deps.service})
        await stop.wait()
        return
    if not settings.enrichment_enabled:
        log.info("enrichment disabled (SCRM_ENRICHMENT_ENABLED=false)")
        await stop.wait()
        return
    async with WeComClient(settings.wecom_api_base) as wecom:
        enricher = Enricher(deps.pool, wecom, settings.secret_box, source=deps.service)
        while not stop.is_set():
            report = await _pass_until_stopped(enricher, stop)
            if report is None:
                return
            if report.handled or report.tenants_deferred:
                log.info(
                    "enrichment pass",
                    extra={
                        "tenants": report.tenants,
                        "tenants_deferred": len(report.tenants_deferred),
                        **{f"contacts_{k}": v for k, v in report.outcomes.items()},
                    },
                )
            if not report.backlog:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=settings.enrichment_interval_seconds)


async def _pass_until_stopped(enricher: Enricher, stop: asyncio.Event) -> EnrichmentReport | None:
    """One pass; ``None`` when ``stop`` came first (the pass is cancelled: its open transaction
    rolls back, so a contact is either fully enriched and announced or not at all)."""
    pass_task = asyncio.create_task(enricher.run_once())
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({pass_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
        if not pass_task.done():
            pass_task.cancel()
            await asyncio.wait({pass_task})
    if pass_task.cancelled():
        return None
    exc = pass_task.exception()
    if exc is not None:
        # No traceback: database errors may quote row values (customer ids) in their detail.
        log.warning("enrichment pass failed", extra={"error_type": type(exc).__name__})
        return EnrichmentReport()
    return pass_task.result()
