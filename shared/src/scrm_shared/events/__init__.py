"""Event contracts of the SCRM platform: the envelope, every payload, parsing and keys.

Producers build events with :func:`new_event` and send ``event.to_bytes()`` keyed by
``event.key()``; consumers call :func:`parse_event` (or use ``TOPIC_EVENTS[topic]``) and get a
typed event or an :class:`InvalidEvent` that says why. Producers outside Python validate
against the JSON Schema files in ``shared/schemas/`` (see docs/events.md).
"""

from scrm_shared.events.contacts import (
    ContactErased,
    ContactErasedEvent,
    ContactIdentified,
    ContactIdentifiedEvent,
    ContactsTransferred,
    ContactsTransferredEvent,
    ContactUpdated,
    ContactUpdatedEvent,
    FriendAdded,
    FriendAddedEvent,
    FriendDeleted,
    FriendDeletedEvent,
    TransferFailed,
    TransferFailedEvent,
)
from scrm_shared.events.deadletter import (
    DeadLetter,
    DeadLetterEvent,
    DeadLetterHeader,
    ErrorKind,
    ValidationIssue,
)
from scrm_shared.events.envelope import EventEnvelope, Payload, new_event
from scrm_shared.events.messages import MessageKind, MessageSent, MessageSentEvent
from scrm_shared.events.orders import (
    Customer,
    OrderChannel,
    OrderLine,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
)
from scrm_shared.events.primitives import B64, Currency, Id, Money, Quantity, Sha256Hex, TenantId, Timestamp
from scrm_shared.events.registry import (
    ACCEPTED_VERSIONS,
    ALL_EVENT_CLASSES,
    EVENT_CLASSES,
    TOPIC_EVENTS,
    TOPIC_TYPES,
    Event,
    InvalidEvent,
    InvalidKind,
    parse_event,
)
from scrm_shared.events.tags import (
    ContactTagged,
    ContactTaggedEvent,
    SegmentChanged,
    SegmentChangedEvent,
    SegmentDeleted,
    SegmentDeletedEvent,
)

__all__ = [
    "ACCEPTED_VERSIONS",
    "ALL_EVENT_CLASSES",
    "B64",
    "EVENT_CLASSES",
    "TOPIC_EVENTS",
    "TOPIC_TYPES",
    "ContactErased",
    "ContactErasedEvent",
    "ContactIdentified",
    "ContactIdentifiedEvent",
    "ContactTagged",
    "ContactTaggedEvent",
    "ContactUpdated",
    "ContactUpdatedEvent",
    "ContactsTransferred",
    "ContactsTransferredEvent",
    "Currency",
    "Customer",
    "DeadLetter",
    "DeadLetterEvent",
    "DeadLetterHeader",
    "ErrorKind",
    "Event",
    "EventEnvelope",
    "FriendAdded",
    "FriendAddedEvent",
    "FriendDeleted",
    "FriendDeletedEvent",
    "Id",
    "InvalidEvent",
    "InvalidKind",
    "MessageKind",
    "MessageSent",
    "MessageSentEvent",
    "Money",
    "OrderChannel",
    "OrderLine",
    "OrderPlaced",
    "OrderPlacedEvent",
    "OrderRefunded",
    "OrderRefundedEvent",
    "Payload",
    "Quantity",
    "SegmentChanged",
    "SegmentChangedEvent",
    "SegmentDeleted",
    "SegmentDeletedEvent",
    "Sha256Hex",
    "TenantId",
    "Timestamp",
    "TransferFailed",
    "TransferFailedEvent",
    "ValidationIssue",
    "new_event",
    "parse_event",
]
