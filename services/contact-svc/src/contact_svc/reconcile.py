"""Reconciliation: compare our follow relations with WeCom's and repair the drift through events.

Callbacks get lost (an outage longer than WeCom's retries, a corp configured late), so now and
then ``scrm contacts reconcile --tenant T`` asks WeCom's ``externalcontact/batch/get_by_user``
for every staff member's customers and compares them with our active follows:

- on WeCom, not active here: ``friend-added`` (envelope source ``reconcile``, ``added_at`` =
  WeCom's ``createtime``, ``state`` and ``add_way`` from ``follow_info``, the profile too);
  unless we recorded the friendship's end after that createtime (WeCom goes on listing a
  customer who deleted the guide): that is counted, not repaired;
- active here, gone from WeCom: ``friend-deleted`` (``deleted_by`` ``staff``, ``source``
  ``RECONCILE``; WeCom no longer says who ended it, and the time is when we noticed).

Both go through the outbox, so the worker applies them exactly like events of callbacks. A
relation that changed within ``grace`` of the run is left alone: its callback is probably still
on its way, and acting on a half-applied change would only add noise.

Event ids are derived from the drift (tenant, staff, customer, WeCom's createtime and our last
change of the relation), so running reconcile twice before the worker caught up publishes the
same ids twice, and consumers, which dedupe on ``event_id``, apply them once.

:func:`reconcile` is the core (a :class:`Drift` report back); ``contact_svc.cli`` prints it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

from contact_svc.enrichment import clean_profile
from contact_svc.store import enrichment as store
from contact_svc.wecom.client import ContactByUser, WeComClient, WeComError
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.events.contacts import FriendAdded, FriendAddedEvent, FriendDeleted, FriendDeletedEvent
from scrm_shared.events.envelope import new_event
from scrm_shared.secrets import SecretBox

__all__ = ["Drift", "ReconcileError", "StaffDrift", "reconcile"]

SOURCE = "reconcile"
DELETE_SOURCE = "RECONCILE"
DEFAULT_GRACE = timedelta(minutes=5)
STATE_MAX = 256
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "scrm:contact-svc:reconcile")


class ReconcileError(Exception):
    """Reconciliation cannot start for this tenant (e.g. no WeCom app secret configured)."""


@dataclass
class StaffDrift:
    """One staff member: what WeCom and we each hold, and what differs.

    ``errcode`` is set when WeCom refused this staff member's listing; nothing was repaired for
    them then (a failed listing is never read as "no friends").
    """

    staff_id: str
    on_wecom: int = 0
    active_here: int = 0
    # WeCom's record, with ours when we hold the relation as deleted
    missing_here: list[tuple[ContactByUser, store.LocalFollow | None]] = field(
        default_factory=list, repr=False
    )
    gone_on_wecom: list[store.LocalFollow] = field(default_factory=list, repr=False)
    recent: int = 0
    # Listed by WeCom, but we recorded an end of the friendship after WeCom's createtime: not a
    # new add (that would carry a later createtime). WeCom keeps listing a customer who deleted
    # the guide, for one; the read model would ignore an add older than our delete anyway.
    ended_here: int = 0
    errcode: int | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.missing_here or self.gone_on_wecom)


@dataclass
class Drift:
    """The outcome of one reconciliation of a tenant."""

    tenant_id: str
    dry_run: bool
    checked_at: datetime
    staff: list[StaffDrift] = field(default_factory=list)
    published: int = 0

    @property
    def missing_here(self) -> int:
        """Relations WeCom has and we lack (repaired with friend-added)."""
        return sum(len(s.missing_here) for s in self.staff)

    @property
    def gone_on_wecom(self) -> int:
        """Relations we hold active that WeCom no longer has (repaired with friend-deleted)."""
        return sum(len(s.gone_on_wecom) for s in self.staff)

    @property
    def failed_staff(self) -> list[StaffDrift]:
        return [s for s in self.staff if s.errcode is not None]

    @property
    def drifted_staff(self) -> list[StaffDrift]:
        return [s for s in self.staff if s.drifted]


class Progress(Protocol):
    """What :func:`reconcile` reports while it runs (the CLI draws a progress bar from it)."""

    def started(self, staff_total: int) -> None: ...

    def staff_done(self, staff: StaffDrift) -> None: ...


class _NoProgress:
    def started(self, staff_total: int) -> None:
        pass

    def staff_done(self, staff: StaffDrift) -> None:
        pass


async def reconcile(
    pool: asyncpg.Pool,
    wecom: WeComClient,
    box: SecretBox,
    tenant_id: str,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Drift:
    """Compare every staff member's follows of ``tenant_id`` with WeCom and repair the drift.

    With ``dry_run`` nothing is published. Raises :class:`ReconcileError` when the tenant has no
    WeCom app secret, and :class:`WeComError` when WeCom refuses the corp's credentials (every
    staff member would fail alike); a staff member WeCom refuses is reported in their
    :class:`StaffDrift` and the others carry on.
    """
    progress = progress or _NoProgress()
    creds = await store.credentials(pool, box, tenant_id)
    if creds is None:
        raise ReconcileError(f"tenant {tenant_id!r} has no WeCom app secret configured")
    corp = wecom.corp(creds.corp_id, creds.secret)
    drift = Drift(tenant_id=tenant_id, dry_run=dry_run, checked_at=now or datetime.now(UTC))
    cutoff = drift.checked_at - grace
    staff_ids = await store.staff_to_reconcile(pool, tenant_id)
    progress.started(len(staff_ids))
    for staff_id in staff_ids:
        staff = StaffDrift(staff_id)
        drift.staff.append(staff)
        try:
            # WeCom first, then ours: a change applied here meanwhile is then seen (and recent).
            remote = {
                item.external_contact.external_userid: item
                async for item in corp.iter_contacts_by_user([staff_id])
                if item.follow_info.userid == staff_id
            }
        except WeComError as exc:
            if exc.corp_level:
                raise
            staff.errcode = exc.errcode
            local = await store.follows_of_staff(pool, tenant_id, staff_id)
            staff.active_here = sum(1 for f in local.values() if f.active)
            progress.staff_done(staff)
            continue
        local = await store.follows_of_staff(pool, tenant_id, staff_id)
        _compare(staff, remote, local, cutoff)
        if not dry_run and staff.drifted:
            drift.published += await _publish(pool, tenant_id, staff, drift.checked_at)
        progress.staff_done(staff)
    return drift


def _compare(
    staff: StaffDrift,
    remote: dict[str, ContactByUser],
    local: dict[str, store.LocalFollow],
    cutoff: datetime,
) -> None:
    staff.on_wecom = len(remote)
    staff.active_here = sum(1 for f in local.values() if f.active)
    for external_userid, item in remote.items():
        ours = local.get(external_userid)
        if ours is not None and ours.active:
            continue
        created = _created_at(item)
        if (created is not None and created > cutoff) or (ours is not None and ours.last_event_at > cutoff):
            staff.recent += 1
            continue
        if ours is not None and (created is None or ours.last_event_at >= created):
            staff.ended_here += 1
            continue
        staff.missing_here.append((item, ours))
    for external_userid, ours in local.items():
        if not ours.active or external_userid in remote:
            continue
        if ours.last_event_at > cutoff:
            staff.recent += 1
            continue
        staff.gone_on_wecom.append(ours)


async def _publish(pool: asyncpg.Pool, tenant_id: str, staff: StaffDrift, checked_at: datetime) -> int:
    """Enqueue the repairs of one staff member in one transaction; returns how many."""
    events: list[tuple[str, FriendAddedEvent | FriendDeletedEvent]] = []
    for item, ours in staff.missing_here:
        added_at = _created_at(item) or checked_at
        info = item.follow_info
        data = FriendAdded(
            external_userid=item.external_contact.external_userid,
            staff_id=staff.staff_id,
            state=(info.state or "")[:STATE_MAX],
            add_way=info.add_way if info.add_way is not None and info.add_way >= 0 else None,
            added_at=added_at,
            **clean_profile(item.external_contact),
        )
        version = f"{info.createtime}|{ours.last_event_at.isoformat() if ours else '-'}"
        event_id = _event_id(tenant_id, "add", staff.staff_id, data.external_userid, version)
        events.append(
            (
                "friend-added",
                new_event(
                    FriendAddedEvent,
                    tenant_id=tenant_id,
                    source=SOURCE,
                    data=data,
                    occurred_at=added_at,
                    event_id=event_id,
                ),
            )
        )
    for follow in staff.gone_on_wecom:
        deleted = FriendDeleted(
            external_userid=follow.external_userid,
            staff_id=staff.staff_id,
            deleted_by="staff",
            source=DELETE_SOURCE,
            deleted_at=checked_at,
        )
        event_id = _event_id(
            tenant_id, "delete", staff.staff_id, follow.external_userid, follow.last_event_at.isoformat()
        )
        events.append(
            (
                "friend-deleted",
                new_event(
                    FriendDeletedEvent,
                    tenant_id=tenant_id,
                    source=SOURCE,
                    data=deleted,
                    occurred_at=checked_at,
                    event_id=event_id,
                ),
            )
        )
    async with pool.acquire() as conn, conn.transaction():
        for topic, event in events:
            await enqueue_event(conn, topic, event)
    return len(events)


def _created_at(item: ContactByUser) -> datetime | None:
    createtime = item.follow_info.createtime
    return datetime.fromtimestamp(createtime, UTC) if createtime > 0 else None


def _event_id(tenant_id: str, kind: str, staff_id: str, external_userid: str, version: str) -> uuid.UUID:
    # Same drift, same id: a second run before the worker caught up is deduplicated downstream.
    return uuid.uuid5(_EVENT_IDS, "\x1f".join((tenant_id, kind, staff_id, external_userid, version)))
