"""Pure rules of contacts: follow merges (out-of-order safe), status, profile patches, batch
planning, identity resolution, phone_hash validation, the listing cursor."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contact_svc.domain.contacts import (
    ContactPatch,
    FollowState,
    TransferFailure,
    contact_status,
    fold_follows,
    merge_follow,
    merge_patch,
    plan_read_model,
    undo_transfer,
    without_personal_data,
)
from contact_svc.domain.identities import LinkRequest, check_phone_hash, link_requests, resolve_links
from contact_svc.domain.listing import InvalidCursor, Position, decode_cursor, encode_cursor, like_pattern
from scrm_shared.events import (
    ContactUpdatedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    OrderPlacedEvent,
    TransferFailedEvent,
    new_event,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
TENANT = "acme"


def at(hours: float) -> datetime:
    return T0 + hours * H


# --- follows: out-of-order resolution -------------------------------------------------------


def test_a_delete_after_the_add_ends_the_follow_in_either_arrival_order():
    add = FollowState.added(at(0), state="poster-1", store_id="sh-012")
    delete = FollowState.deleted(at(1), by="customer")
    for merged in (merge_follow(add, delete), merge_follow(delete, add)):
        assert merged.status == "deleted"
        assert merged.deleted_by == "customer"
        assert merged.last_event_at == at(1)
        # the add's channel and time survive the deletion
        assert (merged.added_at, merged.state, merged.store_id) == (at(0), "poster-1", "sh-012")


def test_an_older_delete_changes_nothing_of_a_newer_add():
    readd = FollowState.added(at(2), state="poster-2")
    old_delete = FollowState.deleted(at(1), by="staff")
    assert merge_follow(readd, old_delete) == readd
    assert merge_follow(old_delete, readd) == readd


def test_a_readd_takes_the_new_channel_and_clears_the_deletion():
    history = [
        FollowState.added(at(0), state="poster-1"),
        FollowState.deleted(at(1), by="staff", source="DELETE_BY_TRANSFER"),
        FollowState.added(at(2), state="poster-2"),
    ]
    merged = fold_follows(history)
    assert merged.status == "active"
    assert merged.deleted_by is None and merged.delete_source is None and merged.deleted_at is None
    assert (merged.added_at, merged.state) == (at(2), "poster-2")


def test_a_delete_wins_a_tie_with_an_add_in_the_same_second():
    add = FollowState.added(at(1))
    delete = FollowState.deleted(at(1), by="customer")
    assert merge_follow(add, delete).status == "deleted"
    assert merge_follow(delete, add).status == "deleted"


def test_an_edit_seen_first_is_superseded_by_later_events_but_not_earlier_ones():
    edited = FollowState.active_since(at(3))
    assert merge_follow(edited, FollowState.deleted(at(2), by="staff")).status == "active"
    later_delete = merge_follow(edited, FollowState.deleted(at(4), by="staff"))
    assert later_delete.status == "deleted"
    # the add, however late it arrives, fills in the channel and time
    filled = merge_follow(edited, FollowState.added(at(0), state="poster-1"))
    assert (filled.status, filled.added_at, filled.state) == ("active", at(0), "poster-1")


_times = st.integers(min_value=0, max_value=6).map(lambda h: at(h))
_follow_events = st.one_of(
    st.builds(
        lambda t, s: FollowState.added(t, state=s, store_id="sh-1" if s else None),
        _times,
        st.sampled_from(["", "a", "b"]),
    ),
    st.builds(
        lambda t, by, src: FollowState.deleted(t, by=by, source=src),
        _times,
        st.sampled_from(["staff", "customer"]),
        st.sampled_from([None, "DELETE_BY_TRANSFER"]),
    ),
    st.builds(FollowState.active_since, _times),
)


@given(st.lists(_follow_events, min_size=1, max_size=7), st.randoms(use_true_random=False))
def test_merging_is_order_free_and_idempotent(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    expected = fold_follows(events)
    assert fold_follows(shuffled) == expected
    # redelivery: every event twice
    assert fold_follows(events + shuffled) == expected
    # batches: fold a prefix, then merge the rest into it
    cut = rnd.randint(1, len(events))
    assert merge_follow(fold_follows(shuffled[cut:] or [expected]), fold_follows(shuffled[:cut])) == expected


# --- contact status ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("follows", "erased", "expected"),
    [
        (["active"], False, "active"),
        (["deleted", "active"], False, "active"),
        (["deleted", "deleted"], False, "lost"),
        ([], False, "lost"),
        (["active"], True, "erased"),
    ],
)
def test_contact_status(follows, erased, expected):
    assert contact_status(follows, erased=erased) == expected


# --- contact profile patches ------------------------------------------------------------


def test_profile_patches_merge_newest_first_and_keep_the_earliest_add():
    early = ContactPatch(TENANT, "wm1", first_added_at=at(0), profile_at=at(0), name="Old", avatar="a0")
    late = ContactPatch(TENANT, "wm1", first_added_at=at(5), profile_at=at(5), name="New", gender=2)
    for merged in (merge_patch(early, late), merge_patch(late, early)):
        assert merged.first_added_at == at(0)
        assert merged.profile_at == at(5)
        assert (merged.name, merged.avatar, merged.gender) == ("New", "a0", 2)


def test_the_first_known_unionid_stays():
    a = ContactPatch(TENANT, "wm1", profile_at=at(0), unionid="u-first")
    b = ContactPatch(TENANT, "wm1", profile_at=at(1), unionid="u-other")
    assert merge_patch(a, b).unionid == "u-first"
    assert merge_patch(b, a).unionid == "u-first"


def test_patches_of_two_contacts_do_not_merge():
    with pytest.raises(ValueError):
        merge_patch(ContactPatch(TENANT, "wm1"), ContactPatch(TENANT, "wm2"))


# --- batch planning ---------------------------------------------------------------------


def _added(euid: str, staff: str, when: datetime, **extra) -> FriendAddedEvent:
    data = {"external_userid": euid, "staff_id": staff, "added_at": when, **extra}
    return new_event(FriendAddedEvent, tenant_id=TENANT, source="test", data=data)


def _deleted(euid: str, staff: str, when: datetime, by: str = "customer") -> FriendDeletedEvent:
    data = {"external_userid": euid, "staff_id": staff, "deleted_by": by, "deleted_at": when}
    return new_event(FriendDeletedEvent, tenant_id=TENANT, source="test", data=data)


def _updated(euid: str, when: datetime, **data) -> ContactUpdatedEvent:
    return new_event(
        ContactUpdatedEvent,
        tenant_id=TENANT,
        source="test",
        data={"external_userid": euid, "updated_at": when, **data},
    )


def test_a_batch_folds_to_one_row_per_contact_and_relation():
    events = [
        _deleted("wm1", "guide-a", at(1)),
        _added("wm1", "guide-a", at(0), state="poster", name="Li", store_id="sh-1"),
        _added("wm1", "guide-b", at(2)),
        _added("wm2", "guide-a", at(3), unionid="u2"),
    ]
    plan = plan_read_model(events)
    assert [p.external_userid for p in plan.contacts] == ["wm1", "wm2"]
    wm1 = plan.contacts[0]
    assert (wm1.first_added_at, wm1.name) == (at(0), "Li")
    assert plan.contacts[1].unionid == "u2"
    follows = dict(plan.follows)
    a = follows[(TENANT, "wm1", "guide-a")]
    assert (a.status, a.state, a.store_id) == ("deleted", "poster", "sh-1")
    assert follows[(TENANT, "wm1", "guide-b")].status == "active"
    assert plan.staff == [(TENANT, "guide-a"), (TENANT, "guide-b")]
    assert plan.stores == [(TENANT, "sh-1")]
    assert plan.contact_keys == [(TENANT, "wm1"), (TENANT, "wm2")]


def test_contact_updated_edits_the_follow_and_the_profile():
    plan = plan_read_model(
        [
            _updated(
                "wm1", at(1), staff_id="guide-a", changed=["remark"], remark="VIP", description="ignored"
            ),
            _updated("wm1", at(2), staff_id="guide-a", changed=["tags"], tag_ids=["t1", "t2"]),
            _updated("wm1", at(3), changed=["profile"], name="Wang", avatar="https://a/x.png"),
        ]
    )
    (edit,) = plan.edits
    assert (edit.set_remark, edit.remark) == (True, "VIP")
    assert edit.set_description is False  # not in "changed": not news
    assert (edit.set_tags, edit.tag_ids) == (True, ("t1", "t2"))
    (patch,) = plan.contacts
    assert (patch.name, patch.avatar, patch.profile_at) == ("Wang", "https://a/x.png", at(3))
    assert without_personal_data(edit).set_remark is False
    assert without_personal_data(edit).tag_ids == ("t1", "t2")


def test_a_remark_can_be_cleared():
    plan = plan_read_model([_updated("wm1", at(1), staff_id="g", changed=["remark"], remark=None)])
    (edit,) = plan.edits
    assert (edit.set_remark, edit.remark) == (True, None)


def test_transfer_failed_is_planned_and_undone_as_status_only_changes():
    failed = new_event(
        TransferFailedEvent,
        tenant_id=TENANT,
        source="test",
        data={
            "external_userid": "wm1",
            "staff_id": "taker",
            "fail_reason": "customer_refused",
            "failed_at": at(5),
        },
    )
    (failure,) = plan_read_model([failed]).transfer_failures
    assert failure == TransferFailure(TENANT, "wm1", "taker", "customer_refused", at(5))
    back, gone = undo_transfer(failure, "giver")
    assert back == ((TENANT, "wm1", "giver"), FollowState.active_since(at(5)))
    assert gone[1].status == "deleted" and gone[1].deleted_by == "customer"
    # the giver's original friendship keeps its channel
    original = merge_follow(FollowState.added(at(0), state="poster"), FollowState.deleted(at(4), by="staff"))
    assert merge_follow(original, back[1]).state == "poster"
    assert merge_follow(original, back[1]).status == "active"


def test_orders_only_add_their_staff_and_store():
    order = _order(member_id="m1")
    credited = order.model_copy(
        update={"data": order.data.model_copy(update={"staff_id": "g9", "store_id": "sh-9"})}
    )
    plan = plan_read_model([credited])
    assert (plan.staff, plan.stores) == ([(TENANT, "g9")], [(TENANT, "sh-9")])
    assert plan.contacts == [] and plan.follows == []


# --- identities -------------------------------------------------------------------------

PHONE_HASH = hashlib.sha256(b"+8613800138000").hexdigest()


def test_phone_hash_accepts_lowercase_sha256_hex():
    assert check_phone_hash(PHONE_HASH) == PHONE_HASH


@pytest.mark.parametrize("raw", ["13912345678", "+8613912345678", "+86 139-1234-5678", "(021) 6234 5678"])
def test_phone_hash_refuses_a_raw_phone_with_a_message_that_says_what_to_send(raw):
    with pytest.raises(ValueError, match="raw phone number") as info:
        check_phone_hash(raw)
    assert "sha256" in str(info.value) and "E.164" in str(info.value)
    assert raw not in str(info.value)


@pytest.mark.parametrize("bad", [PHONE_HASH.upper(), PHONE_HASH[:-1], PHONE_HASH + "0", "x" * 64, ""])
def test_phone_hash_refuses_anything_else(bad):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        check_phone_hash(bad)


def _order(**customer) -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id=TENANT,
        source="pos",
        data={
            "order_id": f"o-{uuid.uuid4().hex[:6]}",
            "channel": "pos",
            "customer": customer,
            "items": [{"sku": "s", "category": "c", "quantity": 1, "unit_price": "10.00"}],
            "total_amount": "10.00",
            "placed_at": at(0),
        },
    )


def test_link_requests_from_events():
    requests = link_requests(
        [
            _added("wm1", "g", at(0), unionid="u1"),
            _added("wm2", "g", at(0)),  # no unionid: nothing to learn
            _updated("wm3", at(1), unionid="u3", changed=["unionid"]),
            _order(external_userid="wm4", member_id="m4"),
            _order(member_id="m5", phone_hash=PHONE_HASH),
            _order(member_id="m6"),  # one id alone: nothing to learn
        ]
    )
    assert [(r.source, r.external_userid, r.ids) for r in requests] == [
        ("friend-added", "wm1", (("unionid", "u1"),)),
        ("contact-updated", "wm3", (("unionid", "u3"),)),
        ("order", "wm4", (("member_id", "m4"),)),
        ("order", None, (("member_id", "m5"), ("phone_hash", PHONE_HASH))),
    ]


def _req(ids, euid=None, source="order") -> LinkRequest:
    return LinkRequest(tenant_id=TENANT, source=source, at=at(0), ids=tuple(ids), external_userid=euid)


def test_resolve_links_new_known_and_conflicts():
    existing = {(TENANT, "member_id", "m1"): "wm1", (TENANT, "unionid", "u9"): "wm9"}
    plan = resolve_links(
        [
            _req([("member_id", "m1"), ("phone_hash", PHONE_HASH)], "wm1"),  # one known, one new
            _req([("unionid", "u9")], "wm1"),  # u9 belongs to wm9: conflict
            _req([("phone_hash", PHONE_HASH), ("member_id", "m7")]),  # via the link learned above
            _req([("member_id", "m1"), ("unionid", "u9")]),  # two owners: conflict, nothing linked
            _req([("member_id", "m8"), ("unionid", "u8")]),  # nobody known: nothing to learn
        ],
        existing,
    )
    assert [(n.kind, n.value, n.external_userid, n.origin) for n in plan.new] == [
        ("phone_hash", PHONE_HASH, "wm1", 0),
        ("member_id", "m7", "wm1", 2),
    ]
    assert plan.known == ["member_id", "phone_hash"]
    assert [(c.kind, c.source) for c in plan.conflicts] == [
        ("unionid", "order"),
        ("member_id", "order"),
        ("unionid", "order"),
    ]
    # conflicts carry no id values (they are logged)
    assert not any(hasattr(c, "value") for c in plan.conflicts)


def test_links_to_an_erased_contact_are_ignored():
    plan = resolve_links([_req([("unionid", "u1")], "wm1")], {}, erased=[(TENANT, "wm1")])
    assert plan.new == [] and plan.conflicts == []


def test_links_are_tenant_scoped():
    plan = resolve_links([_req([("member_id", "m1")], "wm2")], {("other", "member_id", "m1"): "wm1"})
    assert [n.external_userid for n in plan.new] == ["wm2"]


# --- listing: cursor and search ---------------------------------------------------------

KEY = b"k" * 32


@pytest.mark.parametrize(
    "first_added_at", [at(0), None, datetime(2024, 1, 1, 8, tzinfo=UTC) + timedelta(microseconds=7)]
)
def test_cursor_round_trip(first_added_at):
    pos = Position(first_added_at, uuid.uuid4())
    cursor = encode_cursor(pos, sort="-first_added_at", scope="f", key=KEY)
    assert cursor.isascii() and "=" not in cursor
    assert decode_cursor(cursor, sort="-first_added_at", scope="f", key=KEY) == pos


def test_cursor_is_bound_to_sort_filters_and_key():
    cursor = encode_cursor(Position(at(0), uuid.uuid4()), sort="-first_added_at", scope="f", key=KEY)
    with pytest.raises(InvalidCursor, match="another sort order or other filters"):
        decode_cursor(cursor, sort="first_added_at", scope="f", key=KEY)
    with pytest.raises(InvalidCursor, match="another sort order or other filters"):
        decode_cursor(cursor, sort="-first_added_at", scope="g", key=KEY)
    with pytest.raises(InvalidCursor, match="altered"):
        decode_cursor(cursor, sort="-first_added_at", scope="f", key=b"x" * 32)


def test_tampered_cursors_are_refused():
    cursor = encode_cursor(Position(at(0), uuid.uuid4()), sort="-first_added_at", scope="f", key=KEY)
    payload, mac = cursor.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (f"{flipped}.{mac}", f"{payload}.{mac[:-1]}", "garbage", "a.b.c", "", "é.é", "x" * 600):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad, sort="-first_added_at", scope="f", key=KEY)


def test_like_pattern_escapes_wildcards():
    assert like_pattern("Li") == "%Li%"
    assert like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"


def test_every_pair_of_follow_events_commutes():
    events = [
        FollowState.added(at(0), state="a"),
        FollowState.added(at(1), state="b"),
        FollowState.deleted(at(1), by="staff"),
        FollowState.deleted(at(2), by="customer"),
        FollowState.active_since(at(2)),
    ]
    for x, y in itertools.product(events, repeat=2):
        assert merge_follow(x, y) == merge_follow(y, x)
