"""What one batch changes for each contact (pure): facts to record, follow and tag rows, new
attributes, and why each contact is re-evaluated.

The handler resolves orders and refunds to contacts first (:mod:`.identity`), then folds every
event here into one :class:`ContactChange` per contact; :func:`apply_attributes` gives a locked
profile its new attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from scrm_shared.events import (
    ContactErasedEvent,
    ContactTaggedEvent,
    Event,
    FriendAdded,
    FriendAddedEvent,
    FriendDeletedEvent,
    MessageSentEvent,
)
from tag_svc.processor.model import Cause, ContactFact, ContactTagChange, FollowChange, Input
from tag_svc.segments import Fact, Profile, day_in, friend_added_fact, message_sent_fact

__all__ = ["BatchChanges", "ContactChange", "apply_attributes", "collect"]


@dataclass(slots=True)
class ContactChange:
    """Everything a batch does to one contact."""

    inputs: set[Input] = field(default_factory=set)
    cause: Cause | None = None
    facts: list[Fact] = field(default_factory=list)
    added: list[FriendAdded] = field(default_factory=list)
    follows_changed: bool = False
    tags_changed: bool = False
    erased: Cause | None = None

    def because(self, cause: Cause) -> None:
        """Keep the latest cause: a transition is reported as caused by the contact's last event."""
        if self.cause is None or cause.at >= self.cause.at:
            self.cause = cause


@dataclass(slots=True)
class BatchChanges:
    """One tenant's share of a batch, per contact, plus the follow and tag rows to write."""

    contacts: dict[str, ContactChange] = field(default_factory=dict)
    follows: dict[tuple[str, str], FollowChange] = field(default_factory=dict)
    tags: dict[tuple[str, str], ContactTagChange] = field(default_factory=dict)

    def of(self, external_userid: str) -> ContactChange:
        change = self.contacts.get(external_userid)
        if change is None:
            change = self.contacts[external_userid] = ContactChange()
        return change

    def drop(self, euids: Iterable[str]) -> None:
        """Forget erased contacts' changes: nothing is recorded for them any more."""
        for euid in euids:
            self.contacts.pop(euid, None)
        self.follows = {k: v for k, v in self.follows.items() if k[0] in self.contacts}
        self.tags = {k: v for k, v in self.tags.items() if k[0] in self.contacts}


def _cause(event: Event) -> Cause:
    return Cause("event", event.occurred_at, str(event.event_id))


def collect(events: Sequence[Event], placed: Sequence[ContactFact], tz: ZoneInfo) -> BatchChanges:
    """Fold a tenant's fresh events (orders and refunds already resolved into ``placed``)."""
    out = BatchChanges()
    for item in placed:
        change = out.of(item.external_userid)
        change.facts.append(item.fact)
        change.inputs.add("order-placed")
        change.because(item.cause)
    for e in events:
        if isinstance(e, FriendAddedEvent):
            d = e.data
            change = out.of(d.external_userid)
            change.facts.append(friend_added_fact(d, tz))
            change.added.append(d)
            change.inputs.update(("profile", "friend-added"))
            change.follows_changed = True
            _follow(out, d.external_userid, d.staff_id, added=d.added_at)
        elif isinstance(e, FriendDeletedEvent):
            d = e.data
            change = out.of(d.external_userid)
            change.inputs.add("profile")
            change.follows_changed = True
            _follow(out, d.external_userid, d.staff_id, deleted=d.deleted_at)
        elif isinstance(e, MessageSentEvent):
            change = out.of(e.data.external_userid)
            change.facts.append(message_sent_fact(e.data, tz))
            change.inputs.add("message-sent")
        elif isinstance(e, ContactTaggedEvent):
            d = e.data
            change = out.of(d.external_userid)
            change.inputs.add("tags")
            change.tags_changed = True
            key = (d.external_userid, d.tag_id)
            known = out.tags.get(key)
            if known is None or known.changed_at <= d.tagged_at:
                out.tags[key] = ContactTagChange(
                    d.external_userid, d.tag_id, d.tag_name, d.change == "added", d.tagged_at
                )
        elif isinstance(e, ContactErasedEvent):
            change = out.of(e.data.external_userid)
            change.erased = Cause("erased", e.data.erased_at, str(e.event_id))
            continue
        else:
            continue
        change.because(_cause(e))
    return out


def _follow(
    out: BatchChanges,
    euid: str,
    staff_id: str,
    *,
    added: datetime | None = None,
    deleted: datetime | None = None,
) -> None:
    known = out.follows.get((euid, staff_id)) or FollowChange(euid, staff_id, None, None)
    out.follows[(euid, staff_id)] = FollowChange(
        euid,
        staff_id,
        max(filter(None, (known.added_at, added)), default=None),
        max(filter(None, (known.deleted_at, deleted)), default=None),
    )


def apply_attributes(
    profile: Profile,
    change: ContactChange,
    tz: ZoneInfo,
    *,
    staff_ids: frozenset[str] | None = None,
    tags: frozenset[str] | None = None,
) -> Profile:
    """``profile`` with the attributes ``change`` gives it.

    - the first friendship (earliest ``added_at`` ever seen) sets ``first_added_at``/its day and
      the acquisition ``state`` and ``store_id``;
    - ``gender`` is the latest one reported;
    - ``staff_ids`` (when the contact's follows changed): who follows it now; ``status`` is
      ``active`` with a follower, ``lost`` without;
    - ``tags`` (when its tags changed): the names of the tags it carries.
    """
    updates: dict[str, object] = {}
    first = profile.first_added_at
    for added in sorted(change.added, key=lambda a: a.added_at):
        if first is None or added.added_at < first:
            first = added.added_at
            updates.update(
                first_added_at=added.added_at,
                first_added_day=day_in(added.added_at, tz),
                state=added.state or None,
                store_id=added.store_id,
            )
        if added.gender is not None:
            updates["gender"] = added.gender
    if staff_ids is not None:
        updates.update(staff_ids=staff_ids, status="active" if staff_ids else "lost")
    if tags is not None:
        updates["tags"] = tags
    return replace(profile, **updates) if updates else profile  # type: ignore[arg-type]
