"""parse_event: the one door from Kafka bytes to typed events, and how it says no."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scrm_shared.events import (
    TOPIC_EVENTS,
    Customer,
    DeadLetterEvent,
    InvalidEvent,
    MessageSent,
    MessageSentEvent,
    OrderLine,
    OrderPlaced,
    OrderPlacedEvent,
    new_event,
    parse_event,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "valid"


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def rejected(topic: str, value: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(topic, value)
    exc = info.value
    assert exc.reason and str(exc) == exc.reason
    for error in exc.errors:
        assert set(error) == {"loc", "msg", "type"}
        json.dumps(error)  # goes into the dead-letter record as is
    return exc


def an_order() -> OrderPlacedEvent:
    return new_event(
        OrderPlacedEvent,
        tenant_id="acme",
        source="pos-sh-012",
        data=OrderPlaced(
            order_id="SH012-1",
            channel="pos",
            store_id="sh-012",
            customer=Customer(member_id="M1"),
            items=[
                OrderLine(sku="SK-II-FTE-230", category="护肤", quantity=1, unit_price=Decimal("1690")),
                OrderLine(sku="MAC-RL-316", category="彩妆", quantity=3, unit_price=Decimal("230.5")),
            ],
            discount_amount=Decimal("0.50"),
            total_amount=Decimal("2381.00"),
            placed_at=datetime(2024, 5, 4, 7, 31, 8, 250000, tzinfo=UTC),
        ),
    )


def test_round_trip_to_bytes_then_parse_event_is_equal() -> None:
    event = an_order()
    value = event.to_bytes()
    parsed = parse_event("order-placed", value)
    assert parsed == event
    assert isinstance(parsed, OrderPlacedEvent)
    assert parsed.to_bytes() == value


def test_to_bytes_writes_money_as_strings_and_times_with_offset() -> None:
    wire = json.loads(an_order().to_bytes())
    assert wire["data"]["total_amount"] == "2381.00"
    assert wire["data"]["discount_amount"] == "0.50"
    assert [line["unit_price"] for line in wire["data"]["items"]] == ["1690.00", "230.50"]
    assert wire["data"]["placed_at"] == "2024-05-04T07:31:08.250000Z"
    assert wire["occurred_at"].endswith("Z")
    assert wire["type"] == "order-placed" and wire["version"] == 1
    assert an_order().to_bytes().decode("utf-8")  # UTF-8, Chinese kept as text or escapes


@pytest.mark.parametrize("sample", sorted(p.name for p in GOLDEN.glob("*.json")))
def test_every_golden_sample_round_trips(sample: str) -> None:
    raw = golden(sample)
    event = parse_event(raw["type"], encode(raw))
    assert parse_event(raw["type"], event.to_bytes()) == event


def test_topic_adapters_discriminate_on_type() -> None:
    raw = golden("message-sent.v1.json")
    assert isinstance(TOPIC_EVENTS["message-sent"].validate_json(encode(raw)), MessageSentEvent)
    assert isinstance(
        TOPIC_EVENTS["dead-letter"].validate_python(golden("dead-letter.v1.json")), DeadLetterEvent
    )


def test_wrong_type_for_the_topic_is_invalid() -> None:
    exc = rejected("order-placed", encode(golden("friend-added.v1.json")))
    assert exc.kind == "invalid"
    assert "'friend-added'" in exc.reason and "order-placed" in exc.reason
    assert exc.errors[0]["loc"] == ["type"]


def test_missing_type_is_invalid() -> None:
    raw = golden("order-placed.v1.pos-discount.json")
    del raw["type"]
    assert rejected("order-placed", encode(raw)).kind == "invalid"


@pytest.mark.parametrize("version", [2, 0, 99])
def test_unsupported_version(version: int) -> None:
    raw = {**golden("order-placed.v1.pos-discount.json"), "version": version}
    exc = rejected("order-placed", encode(raw))
    assert exc.kind == "unsupported-version"
    assert f"version {version}" in exc.reason


@pytest.mark.parametrize("version", ["1", None, True, 1.5, 1.0, [1], {"v": 1}])
def test_malformed_version_is_invalid(version: Any) -> None:
    raw = {**golden("order-placed.v1.pos-discount.json"), "version": version}
    exc = rejected("order-placed", encode(raw))
    assert exc.kind == "invalid"
    assert exc.errors[0]["loc"] == ["version"]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"", "not JSON"),
        (b"order-placed SH012-1", "not JSON"),
        (b'{"event_id": ', "not JSON"),
        (b'{"total_amount": NaN}', "NaN"),
        (b"[]", "not an object"),
        (b'"text"', "not an object"),
        (b"null", "not an object"),
        (b"3440.0", "not an object"),
    ],
)
def test_undecodable_values(value: bytes, hint: str) -> None:
    exc = rejected("order-placed", value)
    assert exc.kind == "undecodable"
    assert hint in exc.reason


def test_unknown_topic() -> None:
    exc = rejected("orders-v0", encode(golden("order-placed.v1.pos-discount.json")))
    assert exc.kind == "unknown-topic"
    assert "orders-v0" in exc.reason


def test_contract_violations_list_every_error_without_input_values() -> None:
    raw = golden("order-placed.v1.pos-discount.json")
    raw["data"]["customer"] = {"phone_hash": "+8613800138000", "member_id": ""}
    raw["data"]["items"][0]["unit_price"] = 1690.0
    raw["data"]["placed_at"] = "2024-05-04 15:31:08"
    exc = rejected("order-placed", encode(raw))
    assert exc.kind == "invalid"
    locs = [tuple(e["loc"]) for e in exc.errors]
    assert ("data", "customer", "phone_hash") in locs
    assert ("data", "customer", "member_id") in locs
    assert ("data", "items", 0, "unit_price") in locs
    assert ("data", "placed_at") in locs
    assert exc.reason.startswith("4 validation errors for order-placed v1: ")
    everything = exc.reason + json.dumps(exc.errors)
    for personal in ("13800138000", "1690.0", "15:31:08"):
        assert personal not in everything


def test_reason_is_bounded_for_many_errors() -> None:
    raw = golden("order-placed.v1.pos-discount.json")
    raw["data"]["items"] = [{"sku": "", "category": "", "quantity": 0, "unit_price": 1}] * 200
    exc = rejected("order-placed", encode(raw))
    assert len(exc.errors) >= 800
    assert "more" in exc.reason and len(exc.reason) <= 1000


def test_extra_fields_from_newer_producers_are_accepted_by_parse_event() -> None:
    raw = golden("message-sent.v1.json")
    raw["delivery_channel"] = "wecom"
    raw["data"]["read_at"] = "2024-05-20T12:01:00+08:00"
    event = parse_event("message-sent", encode(raw))
    assert isinstance(event.data, MessageSent)
    assert event.data.message_id == raw["data"]["message_id"]


def test_a_dead_letter_of_a_rejected_event_parses() -> None:
    exc = rejected("order-placed", b"\xff")
    raw = golden("dead-letter.v1.json")
    raw["data"].update(error=exc.reason, error_kind=exc.kind, errors=exc.errors)
    event = parse_event("dead-letter", encode(raw))
    assert isinstance(event, DeadLetterEvent)
    assert event.data.errors[0].type == "utf8_invalid"
