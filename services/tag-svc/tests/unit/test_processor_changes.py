"""Folding a batch's events into per-contact changes, and the attributes they give a profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scrm_shared.events import (
    ContactErasedEvent,
    ContactTaggedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    MessageSentEvent,
    new_event,
)
from tag_svc.processor.changes import apply_attributes, collect
from tag_svc.segments import Profile

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 4, 30, 16, 30, tzinfo=UTC)  # 1 May 00:30 in Shanghai


def event(cls, at: datetime = T0, **data):  # type: ignore[no-untyped-def]
    return new_event(cls, tenant_id="acme", source="test", data=data, occurred_at=at)


def added(euid: str, staff: str, at: datetime, **data):  # type: ignore[no-untyped-def]
    return event(FriendAddedEvent, at, external_userid=euid, staff_id=staff, added_at=at, **data)


def test_collect_folds_events_per_contact():
    later = T0 + timedelta(hours=1)
    events = [
        added("wm1", "zhang", T0, state="poster-1", store_id="sh-012"),
        event(
            FriendDeletedEvent,
            later,
            external_userid="wm1",
            staff_id="zhang",
            deleted_by="customer",
            deleted_at=later,
        ),
        event(
            MessageSentEvent,
            T0,
            message_id="m1",
            external_userid="wm2",
            staff_id="li",
            kind="private",
            content_ref="x",
            sent_at=T0,
        ),
        event(
            ContactTaggedEvent,
            T0,
            external_userid="wm2",
            tag_id="t1",
            tag_name="VIP",
            change="added",
            by="rule",
            tagged_at=T0,
        ),
        event(
            ContactTaggedEvent,
            later,
            external_userid="wm2",
            tag_id="t1",
            tag_name="VIP",
            change="removed",
            by="rule",
            tagged_at=later,
        ),
        event(ContactErasedEvent, later, external_userid="wm3", contact_id="c3", erased_at=later),
    ]
    out = collect(events, [], SH)
    wm1, wm2, wm3 = out.contacts["wm1"], out.contacts["wm2"], out.contacts["wm3"]
    assert wm1.inputs == {"profile", "friend-added"}
    assert (wm1.cause.at, wm1.cause.event_id) == (later, str(events[1].event_id))  # the latest event
    assert [f.event_type for f in wm1.facts] == ["friend-added"]
    assert out.follows[("wm1", "zhang")].added_at == T0
    assert out.follows[("wm1", "zhang")].deleted_at == later
    assert wm2.inputs == {"message-sent", "tags"}
    assert out.tags[("wm2", "t1")].present is False  # the later change wins
    assert (wm3.erased.kind, wm3.inputs) == ("erased", set())
    out.drop(["wm1"])
    assert set(out.contacts) == {"wm2", "wm3"} and not out.follows


def test_attributes_come_from_the_first_friendship_and_current_follows():
    first = added("wm1", "zhang", T0, state="poster-1", store_id="sh-012", gender=2)
    again = added("wm1", "li", T0 + timedelta(days=3), state="poster-9", store_id="sh-099")
    change = collect([again, first], [], SH).contacts["wm1"]
    profile = apply_attributes(Profile("acme", "wm1"), change, SH, staff_ids=frozenset({"zhang", "li"}))
    assert (profile.state, profile.store_id, profile.gender) == ("poster-1", "sh-012", 2)
    assert (profile.first_added_at, str(profile.first_added_day)) == (T0, "2024-05-01")
    assert (profile.staff_ids, profile.status) == ({"zhang", "li"}, "active")
    # A later batch with an older add (out of order) moves the first friendship back.
    older = added("wm1", "wang", T0 - timedelta(days=30), state="", store_id=None)
    moved = apply_attributes(profile, collect([older], [], SH).contacts["wm1"], SH, staff_ids=frozenset())
    assert (moved.state, moved.store_id, moved.status, moved.gender) == (None, None, "lost", 2)
    tagged = apply_attributes(moved, change, SH, tags=frozenset({"VIP"}))
    assert tagged.tags == {"VIP"}
