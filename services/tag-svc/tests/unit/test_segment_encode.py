"""segment-changed events written straight to bytes are the contract's events, byte for byte."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from scrm_shared.events import SegmentChanged, SegmentChangedEvent, new_event, parse_event
from tag_svc.processor.encode import new_event_ids, segment_changed_events
from tag_svc.processor.model import Cause, Transition

tenants = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
# Ids as they reach the processor: validated, so stripped and not blank; any Unicode inside.
ids = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)
offsets = st.one_of(
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    st.integers(-14 * 3600, 14 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
    st.just(UTC),
    st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/Dublin"]).map(ZoneInfo),
)
times = st.builds(
    lambda base, tz: base.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    offsets,
)
causes = st.builds(
    Cause,
    st.sampled_from(["event", "time", "backfill", "rule-edited", "erased"]),
    times,
    st.one_of(st.none(), st.uuids().map(str), ids),
)
changes = st.tuples(st.uuids(), ids, st.sampled_from(["entered", "exited"]))
# As the processor makes them: one contact's transitions share one cause object.
contact_transitions = st.builds(
    lambda cause, made: [Transition(s, e, c, cause) for s, e, c in made],
    causes,
    st.lists(changes, min_size=1, max_size=3),
)


@given(
    tenants,
    st.lists(contact_transitions, min_size=1, max_size=4).map(lambda runs: [t for run in runs for t in run]),
)
def test_encoded_events_equal_the_models_bytes(tenant_id, items):
    for encoded, t in zip(segment_changed_events(tenant_id, "tag-svc", items), items, strict=True):
        model = new_event(
            SegmentChangedEvent,
            tenant_id=tenant_id,
            source="tag-svc",
            occurred_at=t.cause.at,
            event_id=encoded.event_id,
            data=SegmentChanged(
                segment_id=str(t.segment_id),
                external_userid=t.external_userid,
                change=t.change,
                at=t.cause.at,
                cause=t.cause.kind,
                cause_event_id=t.cause.event_id,
            ),
        )
        assert encoded.to_bytes() == model.to_bytes()
        assert encoded.key() == model.key()
        assert parse_event("segment-changed", encoded.to_bytes()) == parse_event(
            "segment-changed", model.to_bytes()
        )


def test_event_ids_are_distinct_version_4_uuids():
    got = new_event_ids(1000)
    assert len(set(got)) == 1000
    assert all(isinstance(u, uuid.UUID) and u.version == 4 and u.variant == uuid.RFC_4122 for u in got)
