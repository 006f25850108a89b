"""The envelope every event travels in, and the base class of every payload.

```
{"event_id": "<uuid>", "type": "order-placed", "version": 1, "tenant_id": "acme",
 "occurred_at": "2024-05-01T10:00:00+08:00", "source": "pos-sh-012", "data": {...}}
```
A concrete event class narrows ``type`` and ``version`` to literals and ``data`` to its payload
model, and says which subject its Kafka key orders by.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scrm_shared.events.primitives import Id, TenantId, Timestamp

__all__ = ["EventEnvelope", "Payload", "new_event"]

# Unknown fields are ignored rather than refused so a producer can add an optional field
# before every consumer knows it (the versioning policy in docs/events.md relies on this).
_TOLERANT = ConfigDict(extra="ignore", frozen=True)


class Payload(BaseModel):
    """Base of every ``data`` model: immutable, tolerant of fields added by newer producers."""

    model_config = _TOLERANT


class EventEnvelope(BaseModel):
    """Base of every event: identity, type and version, tenant, time, source and ``data``.

    Subclasses declare ``type: Literal["<type>"]``, ``version: Literal[<n>]``, ``data`` and
    :meth:`subject`; ``TYPE`` and ``VERSION`` are read from those literals.
    """

    model_config = _TOLERANT

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    event_id: uuid.UUID = Field(description="Unique id of this event; consumers de-duplicate on it.")
    type: str = Field(description="Event type, kebab-case, past tense (e.g. 'order-placed').")
    version: int = Field(description="Version of the payload schema of this type.")
    tenant_id: TenantId
    occurred_at: Timestamp = Field(description="When the fact happened at the source (not when it was sent).")
    source: Id = Field(description="The producing system/instance, e.g. 'pos-sh-012'.")
    data: Payload

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Concrete classes carry their type and version once, in the field literals.
        type_ann = cls.model_fields["type"].annotation
        version_ann = cls.model_fields["version"].annotation
        if get_origin(type_ann) is Literal and get_origin(version_ann) is Literal:
            (cls.TYPE,) = get_args(type_ann)
            (cls.VERSION,) = get_args(version_ann)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: Any) -> Any:
        # Literal[1] alone would take true or 1.0 as 1; a version is a plain JSON integer.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("version must be a JSON integer")
        return value

    def subject(self) -> str:
        """What ordering matters for: the second half of the Kafka key."""
        raise NotImplementedError

    def key(self) -> bytes:
        """The Kafka key, ``b"<tenant_id>:<subject>"``: one subject's events stay in one partition."""
        return f"{self.tenant_id}:{self.subject()}".encode()

    def to_bytes(self) -> bytes:
        """The Kafka value: UTF-8 JSON, money as strings, times as RFC 3339 with offset."""
        return self.model_dump_json().encode("utf-8")


E = TypeVar("E", bound=EventEnvelope)


def new_event(
    event_cls: type[E],
    *,
    tenant_id: str,
    source: str,
    data: Payload | dict[str, Any],
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> E:
    """Build a validated event of ``event_cls`` (type and version filled in from the class).

    ``occurred_at`` defaults to now (UTC, aware) and ``event_id`` to a fresh uuid4. Raises
    ``pydantic.ValidationError`` when the data breaks the contract: a producer bug, surfaced at
    the producer rather than on every consumer.
    """
    return event_cls(
        event_id=event_id or uuid.uuid4(),
        type=event_cls.TYPE,
        version=event_cls.VERSION,
        tenant_id=tenant_id,
        occurred_at=occurred_at or datetime.now(UTC),
        source=source,
        data=data,
    )
