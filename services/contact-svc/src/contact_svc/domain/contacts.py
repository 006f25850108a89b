"""Pure rules of the contacts read model: follow relations, contact profiles and status.

Events reach the worker twice and out of order (friend-added and friend-deleted travel on
different topics), so every rule here is a *merge*: commutative, associative and idempotent.
Folding a batch's events in any order, and merging the result with what the database holds in any
order, gives the same row. The store's upsert statements implement the same merges in SQL; these
functions fold one batch into one row per key (an upsert can touch a row only once per statement)
and are what the unit tests pin down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from scrm_shared.events import (
    ContactUpdatedEvent,
    Event,
    FriendAddedEvent,
    FriendDeletedEvent,
    OrderPlacedEvent,
    TransferFailedEvent,
)

__all__ = [
    "ContactPatch",
    "ContactStatus",
    "FollowEdit",
    "FollowState",
    "FollowStatus",
    "ReadModelPlan",
    "TransferFailure",
    "contact_status",
    "merge_follow",
    "merge_patch",
    "plan_read_model",
]

FollowStatus = Literal["active", "deleted"]
ContactStatus = Literal["active", "lost", "erased"]
DeletedBy = Literal["staff", "customer"]

# Sorts before every real time: "never seen".
_NEVER = datetime.min.replace(tzinfo=UTC)

TRANSFER_DELETE_SOURCE = "TRANSFER"
"""``delete_source`` of a follow ended by a transfer made through this service."""
TRANSFER_FAILED_SOURCE = "TRANSFER_FAILED"
"""``delete_source`` of the taker's follow when WeCom reports the transfer failed."""


@dataclass(frozen=True, slots=True)
class FollowState:
    """What is known of one (customer, staff member) relation.

    Two independent registers, each keeping its newest value:

    - the *add* (``added_at``, ``state``, ``store_id``): the newest friend-added seen, which says
      when the current (or last) friendship began and which channel brought it;
    - the *status* (``status``, ``deleted_*``, ``last_event_at``): the newest add or delete seen.
      An event older than ``last_event_at`` changes nothing. At equal times a delete wins (WeCom
      times are whole seconds; an add and a delete in one second most likely mean "gone").
    """

    last_event_at: datetime
    status: FollowStatus = "active"
    deleted_by: DeletedBy | None = None
    delete_source: str | None = None
    deleted_at: datetime | None = None
    added_at: datetime | None = None
    state: str = ""
    store_id: str | None = None

    @classmethod
    def added(cls, at: datetime, *, state: str = "", store_id: str | None = None) -> FollowState:
        """The relation as a friend-added at ``at`` describes it."""
        return cls(last_event_at=at, added_at=at, state=state, store_id=store_id)

    @classmethod
    def deleted(cls, at: datetime, *, by: DeletedBy, source: str | None = None) -> FollowState:
        """The relation as a friend-deleted at ``at`` describes it (no add information)."""
        return cls(last_event_at=at, status="deleted", deleted_by=by, delete_source=source, deleted_at=at)

    @classmethod
    def active_since(cls, at: datetime) -> FollowState:
        """Evidence that the relation was active at ``at`` (an edit, a failed transfer's undo)."""
        return cls(last_event_at=at)


def _status_rank(f: FollowState) -> tuple[datetime, int, str, str]:
    # The trailing members only make ties deterministic, so merge() stays commutative.
    return (f.last_event_at, f.status == "deleted", f.deleted_by or "", f.delete_source or "")


def _add_rank(f: FollowState) -> tuple[datetime, str, str]:
    return (f.added_at or _NEVER, f.state, f.store_id or "")


def merge_follow(a: FollowState, b: FollowState) -> FollowState:
    """Merge two views of one relation; the result does not depend on which came first."""
    status = a if _status_rank(a) >= _status_rank(b) else b
    add = a if _add_rank(a) >= _add_rank(b) else b
    return replace(status, added_at=add.added_at, state=add.state, store_id=add.store_id)


def fold_follows(states: Iterable[FollowState]) -> FollowState:
    """Merge several views of one relation (at least one)."""
    it = iter(states)
    out = next(it)
    for s in it:
        out = merge_follow(out, s)
    return out


def contact_status(follow_statuses: Iterable[FollowStatus], *, erased: bool = False) -> ContactStatus:
    """A contact is ``active`` while any staff member follows it, else ``lost``; erasure is final."""
    if erased:
        return "erased"
    return "active" if any(s == "active" for s in follow_statuses) else "lost"


@dataclass(frozen=True, slots=True)
class ContactPatch:
    """What a batch says about one contact.

    ``first_added_at`` keeps the earliest add. Profile fields carry ``profile_at``, the time of the
    event they came from: a newer profile overwrites the fields it has, an older one only fills
    gaps. The store ignores profile fields of an erased contact.
    """

    tenant_id: str
    external_userid: str
    first_added_at: datetime | None = None
    profile_at: datetime | None = None
    name: str | None = None
    avatar: str | None = None
    gender: int | None = None
    unionid: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.external_userid)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def merge_patch(a: ContactPatch, b: ContactPatch) -> ContactPatch:
    """Merge two patches of one contact (order-free, like the upsert that applies them)."""
    if a.key != b.key:
        raise ValueError("patches of different contacts")
    newer, older = (a, b) if (a.profile_at or _NEVER) >= (b.profile_at or _NEVER) else (b, a)
    return ContactPatch(
        tenant_id=a.tenant_id,
        external_userid=a.external_userid,
        first_added_at=_min(a.first_added_at, b.first_added_at),
        profile_at=newer.profile_at,
        name=newer.name if newer.name is not None else older.name,
        avatar=newer.avatar if newer.avatar is not None else older.avatar,
        gender=newer.gender if newer.gender is not None else older.gender,
        # a unionid never changes for one person: the first known stays
        unionid=older.unionid if older.unionid is not None else newer.unionid,
    )


@dataclass(frozen=True, slots=True)
class FollowEdit:
    """A staff member's edit of a relation (``contact-updated`` with a staff_id).

    Each ``set_*`` flag says whether the event carries that field (a ``None`` with the flag set
    clears it). Within a topic one contact's edits arrive in order, so the newest edit wins per
    field; an edit of an unknown relation creates it as active at ``at``.
    """

    tenant_id: str
    external_userid: str
    staff_id: str
    at: datetime
    set_remark: bool = False
    remark: str | None = None
    set_description: bool = False
    description: str | None = None
    set_tags: bool = False
    tag_ids: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant_id, self.external_userid, self.staff_id)


def merge_edit(older: FollowEdit, newer: FollowEdit) -> FollowEdit:
    """Apply ``newer`` on top of ``older`` (both of one relation)."""
    return FollowEdit(
        tenant_id=newer.tenant_id,
        external_userid=newer.external_userid,
        staff_id=newer.staff_id,
        at=max(older.at, newer.at),
        set_remark=older.set_remark or newer.set_remark,
        remark=newer.remark if newer.set_remark else older.remark,
        set_description=older.set_description or newer.set_description,
        description=newer.description if newer.set_description else older.description,
        set_tags=older.set_tags or newer.set_tags,
        tag_ids=newer.tag_ids if newer.set_tags else older.tag_ids,
    )


def without_personal_data(edit: FollowEdit) -> FollowEdit:
    """The edit as applied to an erased contact: remark and description are not stored again."""
    return replace(edit, set_remark=False, remark=None, set_description=False, description=None)


@dataclass(frozen=True, slots=True)
class TransferFailure:
    """WeCom could not hand ``external_userid`` over to ``to_staff``."""

    tenant_id: str
    external_userid: str
    to_staff: str
    reason: str
    at: datetime


FollowKey = tuple[str, str, str]


@dataclass
class ReadModelPlan:
    """One batch folded into one change per row (keys sorted, so writers lock in one order)."""

    contacts: list[ContactPatch] = field(default_factory=list)
    follows: list[tuple[FollowKey, FollowState]] = field(default_factory=list)
    edits: list[FollowEdit] = field(default_factory=list)
    staff: list[tuple[str, str]] = field(default_factory=list)
    stores: list[tuple[str, str]] = field(default_factory=list)
    transfer_failures: list[TransferFailure] = field(default_factory=list)

    @property
    def contact_keys(self) -> list[tuple[str, str]]:
        """Every contact whose follows or profile this batch touches (sorted)."""
        keys = {p.key for p in self.contacts}
        keys.update((k[0], k[1]) for k, _ in self.follows)
        keys.update((e.tenant_id, e.external_userid) for e in self.edits)
        return sorted(keys)


def _edit_of(e: ContactUpdatedEvent) -> FollowEdit | None:
    d = e.data
    if d.staff_id is None:
        return None
    changed = set(d.changed)
    # Without a "changed" list (an older producer), a field that is present is the news.
    implicit = not changed
    edit = FollowEdit(
        tenant_id=e.tenant_id,
        external_userid=d.external_userid,
        staff_id=d.staff_id,
        at=d.updated_at,
        set_remark="remark" in changed or (implicit and d.remark is not None),
        remark=d.remark,
        set_description="description" in changed or (implicit and d.description is not None),
        description=d.description,
        set_tags=("tags" in changed or implicit) and d.tag_ids is not None,
        tag_ids=tuple(d.tag_ids or ()),
    )
    return edit if edit.set_remark or edit.set_description or edit.set_tags else None


def plan_read_model(events: Sequence[Event]) -> ReadModelPlan:
    """Fold a batch of (new, distinct) events into the changes the store applies.

    Handles friend-added, friend-deleted, contact-updated and transfer-failed; of an order-placed
    only its staff member and store count here (its ids feed identity resolution).
    """
    contacts: dict[tuple[str, str], ContactPatch] = {}
    follows: dict[FollowKey, FollowState] = {}
    edits: dict[FollowKey, FollowEdit] = {}
    staff: set[tuple[str, str]] = set()
    stores: set[tuple[str, str]] = set()
    failures: list[TransferFailure] = []

    def patch(p: ContactPatch) -> None:
        contacts[p.key] = merge_patch(contacts[p.key], p) if p.key in contacts else p

    def follow(key: FollowKey, s: FollowState) -> None:
        follows[key] = merge_follow(follows[key], s) if key in follows else s

    for e in events:
        t = e.tenant_id
        if isinstance(e, FriendAddedEvent):
            d = e.data
            has_profile = any(v is not None for v in (d.name, d.avatar, d.gender, d.unionid))
            patch(
                ContactPatch(
                    tenant_id=t,
                    external_userid=d.external_userid,
                    first_added_at=d.added_at,
                    profile_at=d.added_at if has_profile else None,
                    name=d.name,
                    avatar=d.avatar,
                    gender=d.gender,
                    unionid=d.unionid,
                )
            )
            follow(
                (t, d.external_userid, d.staff_id),
                FollowState.added(d.added_at, state=d.state, store_id=d.store_id),
            )
            staff.add((t, d.staff_id))
            if d.store_id is not None:
                stores.add((t, d.store_id))
        elif isinstance(e, FriendDeletedEvent):
            d = e.data
            patch(ContactPatch(tenant_id=t, external_userid=d.external_userid))
            follow(
                (t, d.external_userid, d.staff_id),
                FollowState.deleted(d.deleted_at, by=d.deleted_by, source=d.source),
            )
            staff.add((t, d.staff_id))
        elif isinstance(e, ContactUpdatedEvent):
            d = e.data
            changed = set(d.changed)
            implicit = not changed
            profile = "profile" in changed or implicit
            p = ContactPatch(
                tenant_id=t,
                external_userid=d.external_userid,
                name=d.name if profile else None,
                avatar=d.avatar if profile else None,
                gender=d.gender if profile else None,
                unionid=d.unionid,
            )
            if any(v is not None for v in (p.name, p.avatar, p.gender, p.unionid)):
                p = replace(p, profile_at=d.updated_at)
            patch(p)
            edit = _edit_of(e)
            if edit is not None:
                edits[edit.key] = merge_edit(edits[edit.key], edit) if edit.key in edits else edit
            if d.staff_id is not None:
                staff.add((t, d.staff_id))
        elif isinstance(e, OrderPlacedEvent):
            # the credited guide and the store are staff and stores of the tenant too
            if e.data.staff_id is not None:
                staff.add((t, e.data.staff_id))
            if e.data.store_id is not None:
                stores.add((t, e.data.store_id))
        elif isinstance(e, TransferFailedEvent):
            d = e.data
            # the undo changes follows: take the contact's row lock first, like every writer
            patch(ContactPatch(tenant_id=t, external_userid=d.external_userid))
            failures.append(
                TransferFailure(
                    tenant_id=t,
                    external_userid=d.external_userid,
                    to_staff=d.staff_id,
                    reason=d.fail_reason,
                    at=d.failed_at,
                )
            )
    return ReadModelPlan(
        contacts=[contacts[k] for k in sorted(contacts)],
        follows=sorted(follows.items()),
        edits=[edits[k] for k in sorted(edits)],
        staff=sorted(staff),
        stores=sorted(stores),
        transfer_failures=failures,
    )


def undo_transfer(failure: TransferFailure, from_staff: str) -> list[tuple[FollowKey, FollowState]]:
    """The follow changes of a failed transfer: the customer stays with ``from_staff``.

    Status-only changes at the failure time: the original friendship's add (time, channel) stays.
    """
    deleted_by: DeletedBy = "customer" if failure.reason == "customer_refused" else "staff"
    t, c = failure.tenant_id, failure.external_userid
    return [
        ((t, c, from_staff), FollowState.active_since(failure.at)),
        (
            (t, c, failure.to_staff),
            FollowState.deleted(failure.at, by=deleted_by, source=TRANSFER_FAILED_SOURCE),
        ),
    ]
