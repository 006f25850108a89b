"""Field types every event contract shares: ids, tenants, money, times, hashes.

Each type validates in Python and describes itself in JSON Schema the same way, so a producer
that validates against the exported schema files meets the same rules the consumers enforce.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field, PlainSerializer, StringConstraints, WithJsonSchema

__all__ = [
    "B64",
    "Currency",
    "Id",
    "Money",
    "Quantity",
    "Sha256Hex",
    "TenantId",
    "Timestamp",
]

# ---------------------------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------------------------

ID_MAX_LENGTH = 256

Id = Annotated[
    str,
    # Producers pad ids by accident ("  wmABC "); strip them, then refuse what is left empty. The
    # pattern repeats "not blank" for producers who only see the JSON Schema.
    StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_MAX_LENGTH, pattern=r"\S"),
]
"""A non-empty identifier (surrounding whitespace stripped)."""

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

TenantId = Annotated[
    str,
    # A slug, never stripped or lower-cased for the producer: it becomes part of every key and
    # row, and two spellings of one tenant must not exist.
    StringConstraints(pattern=TENANT_PATTERN),
    Field(description="Tenant (brand) slug: lowercase letters, digits, '-' and '_', 1-63 chars."),
]
"""The tenant (brand) slug, e.g. ``acme``."""

Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="SHA-256 of the E.164 phone number (e.g. '+8613800138000'), 64 lowercase hex chars."),
]
"""SHA-256 hex digest (lowercase) — the only form in which a phone number may travel."""

Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="ISO 4217 currency code, 3 uppercase letters."),
]

B64 = Annotated[
    str,
    StringConstraints(pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
    Field(description="Standard base64 (RFC 4648 §4, padded)."),
]
"""Raw bytes as padded standard base64 (empty string for empty bytes)."""

Quantity = Annotated[
    int,
    # Strict: "2" or 2.0 from a producer is a bug to surface, not to guess at. The ceiling keeps
    # line totals exact within Decimal's default 28-digit precision.
    Field(strict=True, gt=0, le=1_000_000),
]
"""A whole, positive item count."""

# ---------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------

CENT = Decimal("0.01")
MONEY_MAX_INTEGER_DIGITS = 12
MONEY_PATTERN = rf"^(0|[1-9][0-9]{{0,{MONEY_MAX_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,2}})?$"
_MONEY_RE = re.compile(MONEY_PATTERN)
_MONEY_LIMIT = Decimal(10) ** MONEY_MAX_INTEGER_DIGITS

# Error texts never quote the rejected value: it may sit next to personal data in a log line.
_MONEY_SHAPE = 'must be a decimal string in yuan, e.g. "128.50"'


def _money_checked(amount: Decimal) -> Decimal:
    if not amount.is_finite():
        raise ValueError(f"money {_MONEY_SHAPE}; NaN and Infinity are not amounts")
    if amount < 0:
        raise ValueError("money must not be negative")
    if amount != amount.quantize(CENT):
        raise ValueError("money has at most 2 decimal places (fen)")
    if amount >= _MONEY_LIMIT:
        raise ValueError(f"money has at most {MONEY_MAX_INTEGER_DIGITS} integer digits")
    # Normalise the scale ("128.5" -> Decimal("128.50")) and drop a negative zero's sign.
    return abs(amount.quantize(CENT))


def _parse_money(value: Any) -> Decimal:
    """Accept a decimal string (JSON) or a Decimal (Python); refuse numbers of any kind."""
    if isinstance(value, Decimal):
        return _money_checked(value)
    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"money {_MONEY_SHAPE}") from None
        checked = _money_checked(amount)
        # Decimal() is lenient ("1e2", " 12", "+3", "007"); the wire format is not.
        if not _MONEY_RE.fullmatch(value):
            raise ValueError(
                f"money {_MONEY_SHAPE} (plain digits, no sign, exponent, spaces or leading zeros)"
            )
        return checked
    if isinstance(value, bool | int | float):
        # A JSON number has already lost exactness (0.1 + 0.2) in most producers' languages.
        raise ValueError(f"money {_MONEY_SHAPE}, not a JSON number")
    raise ValueError(f"money {_MONEY_SHAPE}")


Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    PlainSerializer(lambda amount: f"{amount:.2f}", return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "Amount in yuan as a decimal string with at most 2 decimals, never negative, "
            "never a JSON number (e.g. '128.50').",
            "examples": ["128.50", "0.00", "1299"],
        }
    ),
]
"""Yuan amount: ``Decimal`` in Python (2 places), a string like ``"128.50"`` on the wire."""

# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------

RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_RFC3339_RE = re.compile(RFC3339_PATTERN)
_NAIVE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
_TIME_SHAPE = "must be RFC 3339 with an offset, e.g. 2024-05-01T10:00:00+08:00"


def _check_time(value: Any) -> Any:
    """Let only offset-carrying RFC 3339 strings and aware datetimes through to pydantic."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("time has no UTC offset (naive datetime); use an aware datetime")
        return value
    if isinstance(value, str):
        if _RFC3339_RE.fullmatch(value):
            return value
        if _NAIVE_RE.fullmatch(value):
            # "Local time" is ambiguous across tenants' timezones; the producer knows its offset.
            raise ValueError(f"time has no UTC offset; it {_TIME_SHAPE}")
        raise ValueError(f"time {_TIME_SHAPE}")
    # Unix timestamps are refused: seconds or milliseconds is a guess we will not make.
    raise ValueError(f"time {_TIME_SHAPE}, not a number")


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_check_time),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339_PATTERN,
            "description": "RFC 3339 time with an offset (Z or ±hh:mm); sub-microsecond digits are dropped.",
            "examples": ["2024-05-01T10:00:00+08:00"],
        }
    ),
]
"""An aware datetime; RFC 3339 with an offset on the wire (naive times are rejected)."""
