"""The dead-letter record the consume loop writes when a message cannot be used.

Topic ``dead-letter``. The original bytes travel base64-encoded and untouched, so a fixed
producer or an operator can replay them; the reason says what to fix without quoting the
personal data the original may hold.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import Field

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import B64, Id, Timestamp

__all__ = ["DeadLetter", "DeadLetterEvent", "DeadLetterHeader", "ErrorKind", "ValidationIssue"]

ErrorKind = Literal["undecodable", "invalid", "unsupported-version", "unknown-topic", "handler"]
"""Why a message was dead-lettered.

- ``undecodable``: not UTF-8, not JSON, or not a JSON object;
- ``invalid``: JSON that breaks the topic's contract (including a type the topic does not carry);
- ``unsupported-version``: a version of the type this consumer does not accept (yet);
- ``unknown-topic``: no contract is known for the topic;
- ``handler``: valid, but the consuming service's handler failed on it.
"""


class DeadLetterHeader(Payload):
    """One Kafka header of the original record."""

    key: str
    value_b64: B64 = ""


class ValidationIssue(Payload):
    """One contract violation: where (``loc``), what (``msg``) and pydantic's error ``type``."""

    loc: list[str | int] = Field(
        default_factory=list, description="Path into the event, e.g. ['data', 'items', 0]."
    )
    msg: str
    type: str


class DeadLetter(Payload):
    """An original Kafka record that a consumer could not use, and why."""

    topic: Id = Field(description="The original topic.")
    partition: int = Field(strict=True, ge=0)
    offset: int = Field(strict=True, ge=0)
    key_b64: B64 | None = Field(default=None, description="The original key, base64; null when it had none.")
    value_b64: B64 = Field(description="The original value, base64 (empty string for an empty value).")
    headers: list[DeadLetterHeader] = Field(default_factory=list)
    error: str = Field(min_length=1, description="Human-readable reason (never quotes personal data).")
    error_kind: ErrorKind
    errors: list[ValidationIssue] = Field(default_factory=list, description="Contract violations, if any.")
    consumer_group: Id = Field(description="Consumer group that gave up on the record.")
    failed_at: Timestamp

    def original_key(self) -> bytes | None:
        """The original key's bytes (``None`` when it had none)."""
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    def original_value(self) -> bytes:
        """The original value's bytes, e.g. to replay them once the producer is fixed."""
        return base64.b64decode(self.value_b64)


class DeadLetterEvent(EventEnvelope):
    """``dead-letter`` v1, keyed ``<tenant_id>:<original subject>`` (or the original topic)."""

    type: Literal["dead-letter"]
    version: Literal[1]
    data: DeadLetter

    def subject(self) -> str:
        # Same subject as the original record, so one contact's/order's failures stay in order;
        # a record without a usable "<tenant>:<subject>" key falls back to its topic.
        try:
            key = self.data.original_key()
        except (binascii.Error, ValueError):
            key = None
        if key:
            _, sep, subject = key.decode("utf-8", "replace").partition(":")
            if sep and subject.strip():
                return subject
        return self.data.topic
