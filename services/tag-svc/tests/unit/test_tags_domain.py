"""Pure rules of tagging: idempotent diffs, WeCom tag diffs, events, push plans, job chunking,
push backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scrm_shared.events import ContactTaggedEvent, parse_event
from tag_svc.tags.domain import (
    Actor,
    Change,
    PushPlan,
    TagRef,
    absent,
    job_status,
    next_chunk,
    present,
    push_backoff,
    push_plans,
    tagged_events,
    unique_in_order,
    wecom_diff,
)

AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def ref(name: str, wecom: str | None = None) -> TagRef:
    return TagRef(tag_id=uuid.uuid5(uuid.NAMESPACE_OID, name), name=name, group_name="组", wecom_tag_id=wecom)


A, B, C = ref("A", "etA"), ref("B", "etB"), ref("C")
MAPPING = {"etA": A, "etB": B}


def test_adding_what_is_there_and_removing_what_is_not_change_nothing():
    assert absent({1, 2}, [2, 3, 3, 1, 4]) == [3, 4]
    assert absent({1, 2}, [1, 2, 1]) == []
    assert present({1, 2}, [2, 3, 2]) == [2]
    assert present(set(), [1]) == []
    assert unique_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_wecom_diff_maps_adds_and_removes_and_counts_unknown_ids():
    diff = wecom_diff(old=["etA", "etZ"], new=["etB", "etY"], mapping=MAPPING)
    assert diff.add == (B,)
    assert diff.remove == (A,)
    assert diff.unknown == ("etY", "etZ")


def test_wecom_diff_of_the_same_set_is_empty_whatever_the_order():
    diff = wecom_diff(old=["etB", "etA"], new=["etA", "etB"], mapping=MAPPING)
    assert (diff.add, diff.remove, diff.unknown) == ((), (), ())


def test_first_snapshot_adds_everything_mapped():
    diff = wecom_diff(old=[], new=["etA", "etB", "etQ"], mapping=MAPPING)
    assert set(diff.add) == {A, B} and diff.remove == () and diff.unknown == ("etQ",)


def test_a_tag_another_staff_member_still_carries_is_not_removed():
    diff = wecom_diff(old=["etA", "etB"], new=[], mapping=MAPPING, held_elsewhere={"etA"})
    assert diff.remove == (B,)


def test_events_carry_the_change_who_and_when():
    changes = [Change("wm-1", A, "added"), Change("wm-2", C, "removed")]
    events = tagged_events("acme", changes, Actor("staff", actor_id="zhang.wei", staff_id="zhang.wei"), AT)
    assert [e.data.external_userid for e in events] == ["wm-1", "wm-2"]
    first = events[0]
    assert isinstance(first, ContactTaggedEvent)
    assert first.key() == b"acme:wm-1"
    assert first.occurred_at == AT and first.data.tagged_at == AT
    assert (first.data.tag_id, first.data.tag_name, first.data.group_name) == (str(A.tag_id), "A", "组")
    assert (first.data.change, first.data.by, first.data.actor_id) == ("added", "staff", "zhang.wei")
    assert events[1].data.change == "removed"
    assert len({e.event_id for e in events}) == 2
    # What goes on the wire is a valid contact-tagged event.
    parsed = parse_event("contact-tagged", first.to_bytes())
    assert isinstance(parsed, ContactTaggedEvent) and parsed == first


def test_push_plans_only_for_synced_tags_and_never_for_wecom_itself():
    changes = [
        Change("wm-1", A, "added"),
        Change("wm-1", B, "added"),
        Change("wm-1", C, "added"),  # not synced with WeCom
        Change("wm-2", A, "removed"),
    ]
    assert push_plans(changes, Actor("operator", actor_id="op")) == [
        PushPlan("wm-1", None, add_tag=("etA", "etB")),
        PushPlan("wm-2", None, remove_tag=("etA",)),
    ]
    assert push_plans(changes, Actor("staff", actor_id="g", staff_id="g"))[0].staff_id == "g"
    assert push_plans(changes, Actor("wecom", actor_id="s1", staff_id="s1")) == []
    assert push_plans([Change("wm-1", C, "added")], Actor("operator")) == []


def test_job_chunks_cover_every_contact_once():
    total, size, processed, chunks = 2_503, 1_000, 0, []
    while n := next_chunk(total, processed, size):
        chunks.append(n)
        processed += n
        assert job_status(total, processed) == ("done" if processed == total else "running")
    assert chunks == [1_000, 1_000, 503]
    assert job_status(total, 0) == "queued"
    assert next_chunk(10, 10, 1_000) == 0
    assert next_chunk(10, 12, 1_000) == 0
    with pytest.raises(ValueError):
        next_chunk(10, 0, 0)


def test_push_backoff_doubles_up_to_the_cap():
    base, cap = timedelta(seconds=5), timedelta(minutes=1)
    assert [push_backoff(n, base, cap).total_seconds() for n in range(0, 6)] == [0, 5, 10, 20, 40, 60]
    assert push_backoff(10_000, base, cap) == cap
