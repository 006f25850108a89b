"""What a decrypted WeCom callback means for the platform: the events it announces.

``change_external_contact`` callbacks, by ``ChangeType``:

==============================  ===================  =========================================
ChangeType                      topic                notes
==============================  ===================  =========================================
add_external_contact            friend-added         State, WelcomeCode of the channel code
add_half_external_contact       friend-added         the customer added the guide without the
                                                     guide's confirmation (免验证添加)
del_external_contact            friend-deleted       deleted_by "staff"; Source e.g.
                                                     DELETE_BY_TRANSFER (在职继承)
del_follow_user                 friend-deleted       deleted_by "customer"
edit_external_contact           contact-updated      WeCom does not say what changed
                                                     (remark/description/corp tags): "profile"
transfer_fail                   transfer-failed      FailReason customer_refused /
                                                     customer_limit_exceed
==============================  ===================  =========================================

Any other message or event maps to no event (it is still archived and acknowledged).

Event ids derive from the tenant and the sha256 of the decrypted payload (uuid5): WeCom's retry
of a callback, or a replay from the archive, yields the very same event_id, so consumers dedupe
it even if it got past the archive's own dedupe.

Pure: no I/O, no framework imports.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from contact_svc.wecom.callback import WeComMessage
from scrm_shared.events import (
    ContactUpdatedEvent,
    EventEnvelope,
    FriendAddedEvent,
    FriendDeletedEvent,
    TransferFailedEvent,
    new_event,
)

__all__ = [
    "CHANGE_EXTERNAL_CONTACT",
    "EVENT_ID_NAMESPACE",
    "MAPPED_CHANGE_TYPES",
    "SOURCE",
    "Outgoing",
    "UnmappableCallback",
    "event_id_for",
    "events_for",
    "payload_hash",
]

SOURCE = "wecom-callback"
"""The envelope's ``source`` of every event built from a WeCom callback."""

CHANGE_EXTERNAL_CONTACT = "change_external_contact"

EVENT_ID_NAMESPACE = uuid.UUID("4f5c2a1e-8b0d-5e7a-9c3b-2d6e1f0a7b94")
"""uuid5 namespace of callback-derived event ids (fixed forever: changing it re-identifies events)."""


class UnmappableCallback(ValueError):
    """An external-contact change lacks a field its event needs (message names fields, not values)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event to enqueue on ``topic``."""

    topic: str
    event: EventEnvelope


def payload_hash(payload: bytes) -> str:
    """sha256 hex of the decrypted payload: WeCom's retries of one callback hash the same."""
    return hashlib.sha256(payload).hexdigest()


def event_id_for(tenant_id: str, digest: str, topic: str) -> uuid.UUID:
    """The deterministic event_id of the ``topic`` event of the callback hashed ``digest``."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{tenant_id}:{digest}:{topic}")


def events_for(tenant_id: str, message: WeComMessage, digest: str) -> list[Outgoing]:
    """The events a callback announces (empty for messages the platform does not map).

    Raises :class:`UnmappableCallback` when an external-contact change lacks what its event
    needs (ids, a valid CreateTime): such a callback is refused rather than half-announced.
    """
    if message.event != CHANGE_EXTERNAL_CONTACT:
        return []
    mapper = _MAPPERS.get(message.change_type or "")
    if mapper is None:
        return []
    event_cls, topic, build = mapper
    occurred_at = _create_time(message)
    try:
        event = new_event(
            event_cls,
            tenant_id=tenant_id,
            source=SOURCE,
            data=build(message, occurred_at),
            occurred_at=occurred_at,
            event_id=event_id_for(tenant_id, digest, topic),
        )
    except ValidationError as exc:
        raise UnmappableCallback(f"{message.change_type}: {_describe(exc)}") from None
    return [Outgoing(topic=topic, event=event)]


def _friend_added(m: WeComMessage, at: datetime) -> dict[str, Any]:
    return {
        "external_userid": m.get("ExternalUserID"),
        "staff_id": m.get("UserID"),
        "state": m.get("State") or "",
        # WeCom omits it once the pair has chatted; "" would be a code nobody can use.
        "welcome_code": m.get("WelcomeCode") or None,
        "added_at": at,
    }


def _friend_deleted_by(deleted_by: str) -> Callable[[WeComMessage, datetime], dict[str, Any]]:
    def build(m: WeComMessage, at: datetime) -> dict[str, Any]:
        return {
            "external_userid": m.get("ExternalUserID"),
            "staff_id": m.get("UserID"),
            "deleted_by": deleted_by,
            "source": (m.get("Source") or None) if deleted_by == "staff" else None,
            "deleted_at": at,
        }

    return build


def _contact_updated(m: WeComMessage, at: datetime) -> dict[str, Any]:
    return {
        "external_userid": m.get("ExternalUserID"),
        "staff_id": m.get("UserID") or None,
        "changed": ["profile"],
        "updated_at": at,
    }


def _transfer_failed(m: WeComMessage, at: datetime) -> dict[str, Any]:
    return {
        "external_userid": m.get("ExternalUserID"),
        "staff_id": m.get("UserID"),
        "fail_reason": m.get("FailReason") or None,
        "failed_at": at,
    }


_Builder = Callable[[WeComMessage, datetime], dict[str, Any]]
_MAPPERS: dict[str, tuple[type[EventEnvelope], str, _Builder]] = {
    "add_external_contact": (FriendAddedEvent, "friend-added", _friend_added),
    "add_half_external_contact": (FriendAddedEvent, "friend-added", _friend_added),
    "del_external_contact": (FriendDeletedEvent, "friend-deleted", _friend_deleted_by("staff")),
    "del_follow_user": (FriendDeletedEvent, "friend-deleted", _friend_deleted_by("customer")),
    "edit_external_contact": (ContactUpdatedEvent, "contact-updated", _contact_updated),
    "transfer_fail": (TransferFailedEvent, "transfer-failed", _transfer_failed),
}

MAPPED_CHANGE_TYPES = frozenset(_MAPPERS)
"""The ChangeTypes of ``change_external_contact`` that announce an event."""


def _create_time(message: WeComMessage) -> datetime:
    raw = message.get("CreateTime") or ""
    if not raw.isascii() or not raw.isdigit():
        raise UnmappableCallback(f"{message.change_type}: CreateTime is missing or not Unix seconds")
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise UnmappableCallback(f"{message.change_type}: CreateTime is out of range") from None


def _describe(exc: ValidationError) -> str:
    # Where and why only: pydantic's own message would quote the rejected values.
    parts = [
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
    ]
    return "; ".join(parts)
