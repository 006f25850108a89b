"""Payload rules, the envelope, new_event and keys."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scrm_shared.events import (
    ACCEPTED_VERSIONS,
    EVENT_CLASSES,
    TOPIC_TYPES,
    DeadLetter,
    DeadLetterEvent,
    FriendAdded,
    FriendAddedEvent,
    FriendDeletedEvent,
    MessageSentEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefundedEvent,
    new_event,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "valid"


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def order_data(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(golden("order-placed.v1.pos-discount.json")["data"])
    data.update(changes)
    return data


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[Any, ...], str]]:
    return [(e["loc"], e["msg"]) for e in exc.value.errors()]


# --- envelope -------------------------------------------------------------------------------


def test_registry_names_one_class_per_type_and_topic() -> None:
    assert set(EVENT_CLASSES) == {
        "friend-added",
        "friend-deleted",
        "contact-updated",
        "transfer-failed",
        "contact-identified",
        "contacts-transferred",
        "contact-erased",
        "contact-tagged",
        "segment-changed",
        "segment-deleted",
        "message-sent",
        "order-placed",
        "order-refunded",
        "dead-letter",
    }
    assert set(TOPIC_TYPES) == set(EVENT_CLASSES)
    assert all(versions == (1,) for versions in ACCEPTED_VERSIONS.values())
    for type_name, cls in EVENT_CLASSES.items():
        assert (cls.TYPE, cls.VERSION) == (type_name, 1)


def test_event_id_must_be_a_uuid() -> None:
    raw = golden("friend-added.v1.json")
    event = FriendAddedEvent.model_validate(raw)
    assert event.event_id == uuid.UUID(raw["event_id"])
    for bad in ("20240501-0001", "", 42):
        with pytest.raises(ValidationError) as info:
            FriendAddedEvent.model_validate({**raw, "event_id": bad})
        assert info.value.errors()[0]["loc"] == ("event_id",)


def test_type_and_version_are_required_and_fixed() -> None:
    raw = golden("friend-added.v1.json")
    for missing in ("type", "version"):
        with pytest.raises(ValidationError):
            FriendAddedEvent.model_validate({k: v for k, v in raw.items() if k != missing})
    with pytest.raises(ValidationError):
        FriendAddedEvent.model_validate({**raw, "type": "friend-deleted"})
    with pytest.raises(ValidationError):
        FriendAddedEvent.model_validate({**raw, "version": 2})


def test_envelope_rejects_naive_occurred_at_and_blank_source() -> None:
    raw = golden("friend-added.v1.json")
    with pytest.raises(ValidationError, match="no UTC offset"):
        FriendAddedEvent.model_validate({**raw, "occurred_at": "2024-05-01T10:02:13"})
    with pytest.raises(ValidationError):
        FriendAddedEvent.model_validate({**raw, "source": "  "})


def test_unknown_fields_are_tolerated_at_every_level() -> None:
    raw = golden("friend-added.v1.json")
    raw["schema_hint"] = "x"
    raw["data"]["new_wecom_field"] = {"nested": [1, 2]}
    event = FriendAddedEvent.model_validate(raw)
    assert event.data.external_userid == raw["data"]["external_userid"]
    # Ignored, not carried: a consumer re-emitting an event sends only what it understands.
    assert b"new_wecom_field" not in event.to_bytes()


def test_events_are_immutable() -> None:
    event = FriendAddedEvent.model_validate(golden("friend-added.v1.json"))
    with pytest.raises(ValidationError):
        event.tenant_id = "other"  # type: ignore[misc]


def test_new_event_fills_type_version_id_and_aware_now() -> None:
    before = datetime.now(UTC)
    data = FriendAdded(external_userid="wmX", staff_id="guide-1", added_at=before)
    event = new_event(FriendAddedEvent, tenant_id="acme", source="contact-svc", data=data)
    assert (event.type, event.version) == ("friend-added", 1)
    assert event.event_id.version == 4
    assert event.occurred_at.tzinfo is not None
    assert before <= event.occurred_at <= datetime.now(UTC)
    fixed = uuid.uuid4()
    at = datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=8)))
    again = new_event(
        FriendAddedEvent, tenant_id="acme", source="s", data=data, occurred_at=at, event_id=fixed
    )
    assert (again.event_id, again.occurred_at) == (fixed, at)


def test_new_event_validates_like_a_consumer() -> None:
    with pytest.raises(ValidationError):
        new_event(OrderPlacedEvent, tenant_id="acme", source="pos", data=order_data(total_amount="1.00"))
    with pytest.raises(ValidationError):
        new_event(OrderPlacedEvent, tenant_id="Not A Slug", source="pos", data=order_data())


# --- orders ---------------------------------------------------------------------------------


def test_order_lines_must_add_up_to_the_total() -> None:
    with pytest.raises(ValidationError) as info:
        OrderPlaced.model_validate(order_data(total_amount="3440.01"))
    ((loc, msg),) = errors_of(info)
    assert loc == ()
    assert "3440.01" in msg and "3740.00" in msg and "300.00" in msg


def test_discount_path_is_accepted_and_absent_discount_means_zero() -> None:
    order = OrderPlaced.model_validate(order_data())
    assert order.lines_total == Decimal("3740.00")
    assert order.discount_amount == Decimal("300.00")
    assert order.total_amount == order.lines_total - order.discount_amount
    no_discount = OrderPlaced.model_validate(order_data(discount_amount=None, total_amount="3740.00"))
    assert no_discount.discount_amount is None
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(order_data(discount_amount=None))  # 3440 != 3740 - 0


def test_discount_cannot_exceed_the_lines() -> None:
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(order_data(discount_amount="3800.00", total_amount="0.00"))
    free = OrderPlaced.model_validate(order_data(discount_amount="3740.00", total_amount="0.00"))
    assert free.total_amount == 0


def test_customer_needs_at_least_one_identity() -> None:
    for customer in ({}, {"external_userid": None, "unionid": None}):
        with pytest.raises(ValidationError, match="customer needs at least one of") as info:
            OrderPlaced.model_validate(order_data(customer=customer))
        assert errors_of(info)[0][0] == ("customer",)
    for key, value in [
        ("external_userid", "wmX"),
        ("unionid", "oX"),
        ("member_id", "M1"),
        ("phone_hash", "0" * 64),
    ]:
        assert getattr(OrderPlaced.model_validate(order_data(customer={key: value})).customer, key) == value


def test_empty_customer_ids_are_rejected_not_treated_as_absent() -> None:
    with pytest.raises(ValidationError) as info:
        OrderPlaced.model_validate(order_data(customer={"member_id": "  ", "unionid": "oX"}))
    assert errors_of(info)[0][0] == ("customer", "member_id")


def test_phone_hash_must_be_lowercase_sha256_hex() -> None:
    for bad in ("+8613800138000", "E" * 64, "e" * 63):
        with pytest.raises(ValidationError) as info:
            OrderPlaced.model_validate(order_data(customer={"phone_hash": bad}))
        assert bad not in str(errors_of(info))


def test_order_needs_items_with_positive_whole_quantities() -> None:
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(order_data(items=[]))
    line = order_data()["items"][0]
    for quantity in (0, -1, 1.5, "1"):
        with pytest.raises(ValidationError):
            OrderPlaced.model_validate(
                order_data(
                    items=[{**line, "quantity": quantity}], total_amount="1690.00", discount_amount=None
                )
            )


def test_currency_defaults_to_cny_and_must_be_iso() -> None:
    data = order_data()
    del data["currency"]
    assert OrderPlaced.model_validate(data).currency == "CNY"
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(order_data(currency="rmb"))


def test_refund_items_are_optional_and_amount_authoritative() -> None:
    event = OrderRefundedEvent.model_validate(golden("order-refunded.v1.minimal.json"))
    assert event.data.items is None and event.data.currency == "CNY"
    full = OrderRefundedEvent.model_validate(golden("order-refunded.v1.json"))
    assert full.data.items is not None and full.data.amount == Decimal("460.00")


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "cls", "subject_path"),
    [
        ("friend-added.v1.json", FriendAddedEvent, ("data", "external_userid")),
        ("friend-deleted.v1.customer.json", FriendDeletedEvent, ("data", "external_userid")),
        ("message-sent.v1.json", MessageSentEvent, ("data", "external_userid")),
        ("order-placed.v1.pos-discount.json", OrderPlacedEvent, ("data", "order_id")),
        ("order-refunded.v1.json", OrderRefundedEvent, ("data", "order_id")),
    ],
)
def test_key_is_tenant_colon_subject(sample: str, cls: type, subject_path: tuple[str, str]) -> None:
    raw = golden(sample)
    event = cls.model_validate(raw)
    assert event.key() == f"{raw['tenant_id']}:{raw[subject_path[0]][subject_path[1]]}".encode()


def test_a_refund_is_keyed_like_its_order() -> None:
    order = OrderPlacedEvent.model_validate(golden("order-placed.v1.pos-discount.json"))
    refund = OrderRefundedEvent.model_validate(golden("order-refunded.v1.json"))
    assert refund.key() == order.key() == b"acme:SH012-20240504-000317"


def _dead(key: bytes | None, topic: str = "order-placed") -> DeadLetterEvent:
    return new_event(
        DeadLetterEvent,
        tenant_id="acme",
        source="metrics-svc",
        data=DeadLetter(
            topic=topic,
            partition=0,
            offset=7,
            key_b64=None if key is None else base64.b64encode(key).decode(),
            value_b64=base64.b64encode(b"\xff").decode(),
            headers=[{"key": "traceparent", "value_b64": ""}],  # type: ignore[list-item]
            error="value is not UTF-8",
            error_kind="undecodable",
            consumer_group="metrics-svc",
            failed_at=datetime.now(UTC),
        ),
    )


def test_dead_letter_key_follows_the_original_subject_or_topic() -> None:
    assert _dead(b"acme:SO-1").key() == b"acme:SO-1"
    assert _dead(b"acme:wm:with:colons").key() == b"acme:wm:with:colons"
    assert _dead(None).key() == b"acme:order-placed"
    assert _dead(b"no-colon").key() == b"acme:order-placed"
    assert _dead(b"acme:").key() == b"acme:order-placed"
    assert _dead(b"\xff\xfe:\xfa").key().startswith(b"acme:")


def test_dead_letter_keeps_the_original_bytes() -> None:
    event = _dead(b"acme:SO-1")
    assert event.data.original_key() == b"acme:SO-1"
    assert event.data.original_value() == b"\xff"
    assert event.data.headers[0].value_b64 == ""
    with pytest.raises(ValidationError):
        DeadLetter.model_validate({**event.data.model_dump(), "error_kind": "boom"})
    with pytest.raises(ValidationError):
        DeadLetter.model_validate({**event.data.model_dump(), "offset": -1})
