"""Pure rules of contact listing: the keyset cursor and the name search pattern.

A cursor is ``base64url(JSON position) "." base64url(HMAC-SHA256)``: opaque to clients, and bound
to the sort order and the filters it was issued for, so an edited or replayed-elsewhere cursor is
refused (422) rather than silently paging through something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "InvalidCursor",
    "Position",
    "SortOrder",
    "cursor_key",
    "decode_cursor",
    "encode_cursor",
    "like_pattern",
]

SortOrder = Literal["first_added_at", "-first_added_at"]
"""``first_added_at`` ascending, or ``-first_added_at`` descending (newest first, the default)."""

_MAC_BYTES = 16
_MAX_CURSOR = 512


class InvalidCursor(ValueError):
    """The cursor was not issued by this service for this query."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last item's sort key. ``first_added_at`` is ``None`` for contacts
    never seen added (they sort as the oldest)."""

    first_added_at: datetime | None
    contact_id: uuid.UUID


def cursor_key(secret: str) -> bytes:
    """The HMAC key of cursors, derived from the service secret (never the secret itself)."""
    return hashlib.sha256(b"scrm:contact-cursor:" + secret.encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scope_digest(sort: SortOrder, scope: str) -> str:
    return _b64(hashlib.sha256(f"{sort}\n{scope}".encode()).digest()[:8])


def encode_cursor(position: Position, *, sort: SortOrder, scope: str, key: bytes) -> str:
    """The cursor after ``position`` for a query with this ``sort`` and filter ``scope``."""
    body = {
        "t": position.first_added_at.isoformat() if position.first_added_at is not None else None,
        "id": str(position.contact_id),
        "q": _scope_digest(sort, scope),
    }
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


def decode_cursor(cursor: str, *, sort: SortOrder, scope: str, key: bytes) -> Position:
    """The position in ``cursor``; raises :class:`InvalidCursor` if it was altered, is malformed,
    or belongs to another sort order or other filters."""
    if len(cursor) > _MAX_CURSOR or cursor.count(".") != 1:
        raise InvalidCursor("cursor is malformed")
    payload_b64, mac_b64 = cursor.split(".")
    try:
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor is malformed") from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise InvalidCursor("cursor was not issued by this service or was altered")
    try:
        body = json.loads(payload)
        at = body["t"]
        position = Position(
            first_added_at=datetime.fromisoformat(at) if at is not None else None,
            contact_id=uuid.UUID(body["id"]),
        )
        digest = body["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidCursor("cursor is malformed") from None
    if position.first_added_at is not None and position.first_added_at.utcoffset() is None:
        raise InvalidCursor("cursor is malformed")
    if not hmac.compare_digest(str(digest), _scope_digest(sort, scope)):
        raise InvalidCursor("cursor belongs to another sort order or other filters")
    return position


def like_pattern(q: str) -> str:
    """An ILIKE pattern (``ESCAPE '\\'``) matching names that contain ``q`` literally: the
    wildcards ``%`` and ``_`` a user types are escaped, not interpreted."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
