"""Tag and segment events (produced by tag-svc).

Topics ``contact-tagged`` and ``segment-changed``, both keyed by the customer's
``external_userid`` so one contact's tag and segment changes are consumed in order; and
``segment-deleted``, keyed by the segment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import Id, Timestamp

__all__ = [
    "ContactTagged",
    "ContactTaggedEvent",
    "SegmentChanged",
    "SegmentChangedEvent",
    "SegmentDeleted",
    "SegmentDeletedEvent",
]


class ContactTagged(Payload):
    """A tag was added to or removed from a contact."""

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    tag_id: Id = Field(description="tag-svc's id of the tag.")
    tag_name: str = Field(min_length=1, max_length=64, description="The tag's name when the change happened.")
    group_name: str | None = Field(default=None, max_length=64, description="The tag's group.")
    change: Literal["added", "removed"]
    by: Literal["staff", "operator", "rule", "wecom"] = Field(
        description="Who tagged: a guide, an operator (console/bulk job), a segment rule, or WeCom itself."
    )
    actor_id: str | None = Field(
        default=None, max_length=128, description="staff_id, operator subject, segment_id or WeCom userid."
    )
    tagged_at: Timestamp


class ContactTaggedEvent(EventEnvelope):
    """``contact-tagged`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["contact-tagged"]
    version: Literal[1]
    data: ContactTagged

    def subject(self) -> str:
        return self.data.external_userid


class SegmentChanged(Payload):
    """A contact entered or left a segment (emitted only on transitions)."""

    segment_id: Id
    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    change: Literal["entered", "exited"]
    at: Timestamp = Field(
        description="When membership changed (the causing event's time, or the moment a window passed)."
    )
    cause: Literal["event", "time", "backfill", "rule-edited", "erased"] = Field(
        description="event: an event changed the profile; time: a window passed with no event; "
        "backfill: a new segment was computed; rule-edited: the segment's rule changed; erased: PIPL erasure."
    )
    cause_event_id: str | None = Field(
        default=None, description="event_id of the causing event, for 'event'."
    )


class SegmentChangedEvent(EventEnvelope):
    """``segment-changed`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["segment-changed"]
    version: Literal[1]
    data: SegmentChanged

    def subject(self) -> str:
        return self.data.external_userid


class SegmentDeleted(Payload):
    """A segment was deleted: its memberships ended all at once, without one exit per member.

    Whoever keeps state per segment (campaigns aimed at it, metrics by segment) drops it here.
    """

    segment_id: Id
    name: str = Field(min_length=1, max_length=128, description="The segment's name when it was deleted.")
    size: int = Field(ge=0, description="How many contacts were members when it was deleted.")
    deleted_at: Timestamp


class SegmentDeletedEvent(EventEnvelope):
    """``segment-deleted`` v1, keyed ``<tenant_id>:<segment_id>``."""

    type: Literal["segment-deleted"]
    version: Literal[1]
    data: SegmentDeleted

    def subject(self) -> str:
        return self.data.segment_id
