"""Which events each topic carries, and the one way to turn a Kafka value into an event.

``parse_event(topic, value)`` is what every consume loop calls. Good events take a single
pydantic pass over the raw bytes (``TOPIC_EVENTS[topic].validate_json``); only a failing
message pays for the slower diagnosis that says *why* it failed (``InvalidEvent.kind``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError

from scrm_shared.events.contacts import (
    ContactErasedEvent,
    ContactIdentifiedEvent,
    ContactsTransferredEvent,
    ContactUpdatedEvent,
    FriendAddedEvent,
    FriendDeletedEvent,
    TransferFailedEvent,
)
from scrm_shared.events.deadletter import DeadLetterEvent
from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.events.messages import MessageSentEvent
from scrm_shared.events.orders import OrderPlacedEvent, OrderRefundedEvent
from scrm_shared.events.tags import ContactTaggedEvent, SegmentChangedEvent, SegmentDeletedEvent

__all__ = [
    "ACCEPTED_VERSIONS",
    "ALL_EVENT_CLASSES",
    "EVENT_CLASSES",
    "TOPIC_EVENTS",
    "TOPIC_TYPES",
    "Event",
    "InvalidEvent",
    "InvalidKind",
    "parse_event",
]

Event = (
    FriendAddedEvent
    | FriendDeletedEvent
    | ContactUpdatedEvent
    | TransferFailedEvent
    | ContactIdentifiedEvent
    | ContactsTransferredEvent
    | ContactErasedEvent
    | ContactTaggedEvent
    | SegmentChangedEvent
    | SegmentDeletedEvent
    | MessageSentEvent
    | OrderPlacedEvent
    | OrderRefundedEvent
    | DeadLetterEvent
)
"""Any event this package knows (every version of every type)."""

ALL_EVENT_CLASSES: tuple[type[EventEnvelope], ...] = (
    FriendAddedEvent,
    FriendDeletedEvent,
    ContactUpdatedEvent,
    TransferFailedEvent,
    ContactIdentifiedEvent,
    ContactsTransferredEvent,
    ContactErasedEvent,
    ContactTaggedEvent,
    SegmentChangedEvent,
    SegmentDeletedEvent,
    MessageSentEvent,
    OrderPlacedEvent,
    OrderRefundedEvent,
    DeadLetterEvent,
)
"""Every (type, version) class, oldest version first within a type."""

TOPIC_TYPES: dict[str, tuple[str, ...]] = {
    "friend-added": ("friend-added",),
    "friend-deleted": ("friend-deleted",),
    "contact-updated": ("contact-updated",),
    "transfer-failed": ("transfer-failed",),
    "contact-identified": ("contact-identified",),
    "contacts-transferred": ("contacts-transferred",),
    "contact-erased": ("contact-erased",),
    "contact-tagged": ("contact-tagged",),
    "segment-changed": ("segment-changed",),
    "segment-deleted": ("segment-deleted",),
    "message-sent": ("message-sent",),
    "order-placed": ("order-placed",),
    "order-refunded": ("order-refunded",),
    "dead-letter": ("dead-letter",),
}
"""The event types each topic carries (one per topic today; the envelope allows more)."""

_BY_TYPE_VERSION: dict[tuple[str, int], type[EventEnvelope]] = {
    (cls.TYPE, cls.VERSION): cls for cls in ALL_EVENT_CLASSES
}

EVENT_CLASSES: dict[str, type[EventEnvelope]] = {cls.TYPE: cls for cls in ALL_EVENT_CLASSES}
"""Type name -> the class producers build today (the newest version of the type)."""

ACCEPTED_VERSIONS: dict[str, tuple[int, ...]] = {
    t: tuple(sorted(v for (tt, v) in _BY_TYPE_VERSION if tt == t)) for t in EVENT_CLASSES
}
"""Type name -> the versions consumers built from this package accept."""


def _topic_union(types: tuple[str, ...]) -> Any:
    """A union discriminated on ``type`` (and within a type, on ``version`` once there are two)."""
    by_type: dict[str, list[type[EventEnvelope]]] = defaultdict(list)
    for (type_name, _version), cls in sorted(_BY_TYPE_VERSION.items()):
        if type_name in types:
            by_type[type_name].append(cls)
    members: list[Any] = []
    for classes in by_type.values():
        if len(classes) == 1:
            members.append(classes[0])
        else:
            members.append(Annotated[Union[tuple(classes)], Field(discriminator="version")])  # noqa: UP007
    return Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007


TOPIC_EVENTS: dict[str, TypeAdapter[Any]] = {
    topic: TypeAdapter(_topic_union(types)) for topic, types in TOPIC_TYPES.items()
}
"""Topic -> TypeAdapter over the discriminated union of the events that topic carries."""


InvalidKind = Literal["undecodable", "invalid", "unsupported-version", "unknown-topic"]

_MAX_REASON_ERRORS = 5
_MAX_REASON_CHARS = 1000


class InvalidEvent(Exception):
    """A Kafka value that is not a usable event of its topic.

    ``kind`` is one of ``undecodable`` (not UTF-8 / not JSON / not a JSON object), ``invalid``
    (breaks the contract, or a type the topic does not carry), ``unsupported-version`` and
    ``unknown-topic``. ``reason`` is a human-readable summary and ``errors`` the violations as
    ``{"loc", "msg", "type"}`` dicts; neither ever contains the offending input values.
    """

    def __init__(self, kind: InvalidKind, reason: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.kind: InvalidKind = kind
        self.reason = reason
        self.errors: list[dict[str, Any]] = errors or []

    def __repr__(self) -> str:
        return f"InvalidEvent(kind={self.kind!r}, reason={self.reason!r})"


def parse_event(topic: str, value: bytes) -> Event:
    """Decode and validate one Kafka value of ``topic``; raise :class:`InvalidEvent` if unusable."""
    adapter = TOPIC_EVENTS.get(topic)
    if adapter is None:
        raise InvalidEvent(
            "unknown-topic",
            f"no event contract for topic {_short(topic)}; known topics: {', '.join(sorted(TOPIC_EVENTS))}",
        )
    try:
        return adapter.validate_json(value)  # type: ignore[no-any-return]
    except ValidationError:
        pass  # diagnosed below: the happy path stays a single pass over the bytes
    return _diagnose(topic, value)


def _diagnose(topic: str, value: bytes) -> Event:
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            "undecodable",
            f"value is not UTF-8 ({exc.reason} at byte {exc.start})",
            [_issue([], "value is not UTF-8", "utf8_invalid")],
        ) from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError's message gives the position only, never the text.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:200]
        position = (
            f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        )
        raise InvalidEvent(
            "undecodable",
            f"value is not JSON ({detail}{position})",
            [_issue([], f"value is not JSON: {detail}", "json_invalid")],
        ) from None
    if not isinstance(obj, dict):
        raise InvalidEvent(
            "undecodable",
            f"value is JSON but not an object (got {_json_kind(obj)})",
            [_issue([], "value must be a JSON object", "model_type")],
        )

    accepted = TOPIC_TYPES[topic]
    type_name = obj.get("type")
    if type_name not in accepted:
        what = "has no 'type'" if type_name is None else f"has type {_short(type_name)}"
        raise InvalidEvent(
            "invalid",
            f"event {what}; topic {topic!r} carries: {', '.join(accepted)}",
            [_issue(["type"], f"expected one of: {', '.join(accepted)}", "union_tag_invalid")],
        )
    versions = ACCEPTED_VERSIONS[type_name]
    version = obj.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version not in versions:
        raise InvalidEvent(
            "unsupported-version",
            f"{type_name} version {version} is not supported here (accepted: "
            f"{', '.join(map(str, versions))})",
            [
                _issue(
                    ["version"], f"accepted versions: {', '.join(map(str, versions))}", "unsupported_version"
                )
            ],
        )

    # Validate against one class so error locations read "data.total_amount", not the union tag.
    # A malformed version (even an unhashable one) is reported by the newest class.
    cls = EVENT_CLASSES[type_name]
    if isinstance(version, int):
        cls = _BY_TYPE_VERSION.get((type_name, version), cls)
    try:
        return cls.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as exc:
        errors = [
            _issue(list(e["loc"]), e["msg"], e["type"])
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidEvent("invalid", _summary(f"{type_name} v{cls.VERSION}", errors), errors) from None


def _issue(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _summary(label: str, errors: list[dict[str, Any]]) -> str:
    count = len(errors)
    parts = [f"{'.'.join(map(str, e['loc'])) or '<event>'}: {e['msg']}" for e in errors[:_MAX_REASON_ERRORS]]
    more = f"; and {count - _MAX_REASON_ERRORS} more" if count > _MAX_REASON_ERRORS else ""
    reason = f"{count} validation error{'s' if count != 1 else ''} for {label}: {'; '.join(parts)}{more}"
    return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 1] + "…"


def _short(value: object) -> str:
    # Type and topic names are echoed to help the producer, but bounded: they are still input.
    text = repr(value)
    return text if len(text) <= 66 else text[:64] + "…'"


def _json_kind(obj: object) -> str:
    kinds: Mapping[type, str] = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }
    return "null" if obj is None else kinds.get(type(obj), type(obj).__name__)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity, which are not JSON (RFC 8259); refuse them as undecodable.
    raise ValueError(f"{name} is not valid JSON")
