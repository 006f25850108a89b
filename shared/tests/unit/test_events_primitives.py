"""The shared field types: money, times, ids, tenants, hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from scrm_shared.events import B64, Currency, Id, Money, Quantity, Sha256Hex, TenantId, Timestamp


class M(BaseModel):
    amount: Money


class T(BaseModel):
    at: Timestamp


class I(BaseModel):  # noqa: E742 - short names keep the parametrised tables readable
    id: Id


def _money_error(value: object) -> str:
    with pytest.raises(ValidationError) as info:
        M.model_validate_json(f'{{"amount": {value}}}')
    (error,) = info.value.errors()
    assert error["loc"] == ("amount",)
    return error["msg"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"128.50"', "128.50"),
        ('"128.5"', "128.50"),
        ('"1299"', "1299.00"),
        ('"0"', "0.00"),
        ('"0.01"', "0.01"),
    ],
)
def test_money_is_a_decimal_string_and_serialises_with_two_places(raw: str, expected: str) -> None:
    m = M.model_validate_json(f'{{"amount": {raw}}}')
    assert m.amount == Decimal(expected)
    assert m.model_dump_json() == f'{{"amount":"{expected}"}}'


@pytest.mark.parametrize("number", ["128.5", "128", "0", "1e2", "true"])
def test_money_as_json_number_is_rejected(number: str) -> None:
    assert "not a JSON number" in _money_error(number)


def test_money_with_three_decimals_is_rejected() -> None:
    assert "at most 2 decimal places" in _money_error('"12.345"')
    # Trailing zeros beyond two places are still three places on the wire.
    assert _money_error('"12.340"')


@pytest.mark.parametrize("raw", ['"-0.01"', '"-128.50"'])
def test_negative_money_is_rejected(raw: str) -> None:
    assert "must not be negative" in _money_error(raw)


@pytest.mark.parametrize("raw", ['"NaN"', '"nan"', '"Infinity"', '"-Infinity"', '"sNaN"'])
def test_nan_and_infinity_are_rejected(raw: str) -> None:
    assert "NaN and Infinity" in _money_error(raw)


@pytest.mark.parametrize(
    "raw", ['"1e2"', '" 12.00"', '"+3"', '"007.00"', '"12."', '""', '"1,000.00"', '"¥12"']
)
def test_money_must_be_plain_decimal_notation(raw: str) -> None:
    assert "decimal string in yuan" in _money_error(raw)


def test_money_above_twelve_integer_digits_is_rejected() -> None:
    assert M.model_validate_json('{"amount": "999999999999.99"}').amount == Decimal("999999999999.99")
    assert "at most 12 integer digits" in _money_error('"1000000000000.00"')


def test_money_from_python_decimal_and_str() -> None:
    assert M(amount=Decimal("5.5")).amount == Decimal("5.50")
    assert M(amount="5.5").amount == Decimal("5.50")  # type: ignore[arg-type]
    assert M(amount=Decimal("-0")).model_dump_json() == '{"amount":"0.00"}'
    for bad in (5.5, 5, Decimal("NaN"), Decimal("-1"), Decimal("0.001")):
        with pytest.raises(ValidationError):
            M(amount=bad)  # type: ignore[arg-type]


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2, allow_nan=False))
def test_money_round_trips_exactly(amount: Decimal) -> None:
    again = M.model_validate_json(M(amount=amount).model_dump_json())
    assert again.amount == amount


@pytest.mark.parametrize(
    "raw",
    [
        "2024-05-01T10:00:00+08:00",
        "2024-05-01T02:00:00Z",
        "2024-05-01T02:00:00.123456Z",
        "2024-05-01 10:00:00+08:00",
        "2024-05-01T10:00:00-05:00",
    ],
)
def test_rfc3339_times_with_offset_are_accepted(raw: str) -> None:
    t = T.model_validate_json(f'{{"at": "{raw}"}}')
    assert t.at.utcoffset() is not None
    assert T.model_validate_json(t.model_dump_json()) == t


@pytest.mark.parametrize("raw", ['"2024-05-01T10:00:00"', '"2024-05-01 10:00:00.5"'])
def test_naive_time_strings_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError, match="no UTC offset"):
        T.model_validate_json(f'{{"at": {raw}}}')


@pytest.mark.parametrize(
    "raw", ['"2024-05-01"', '"01/05/2024 10:00"', '"2024-05-01T10:00+08:00"', "1714528800"]
)
def test_non_rfc3339_times_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError, match="RFC 3339"):
        T.model_validate_json(f'{{"at": {raw}}}')


def test_naive_python_datetime_is_rejected_and_aware_kept() -> None:
    with pytest.raises(ValidationError, match="naive"):
        T(at=datetime(2024, 5, 1, 10, 0))
    shanghai = timezone(timedelta(hours=8))
    t = T(at=datetime(2024, 5, 1, 10, 0, tzinfo=shanghai))
    assert t.model_dump_json() == '{"at":"2024-05-01T10:00:00+08:00"}'
    assert t.at == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def test_ids_are_stripped_and_must_not_be_empty() -> None:
    assert I(id="  wmABC ").id == "wmABC"
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(ValidationError):
            I(id=blank)
    with pytest.raises(ValidationError):
        I.model_validate_json('{"id": 42}')


@pytest.mark.parametrize("good", ["acme", "a", "brand_01", "lan-zhi", "0" * 63])
def test_tenant_slug_accepted(good: str) -> None:
    class Tn(BaseModel):
        t: TenantId

    assert Tn(t=good).t == good


@pytest.mark.parametrize("bad", ["", "ACME", "-acme", "_x", "acme corp", "a" * 64, "acme:1", "品牌"])
def test_tenant_slug_rejected(bad: str) -> None:
    class Tn(BaseModel):
        t: TenantId

    with pytest.raises(ValidationError):
        Tn(t=bad)


def test_small_types() -> None:
    class S(BaseModel):
        h: Sha256Hex
        c: Currency
        q: Quantity
        b: B64

    ok = S(h="ab" * 32, c="CNY", q=3, b="YWNtZTox")
    assert ok.q == 3
    for field, bad in [
        ("h", "AB" * 32),
        ("h", "ab" * 31),
        ("c", "cny"),
        ("c", "RMB1"),
        ("q", 0),
        ("q", "2"),
        ("q", 2.0),
        ("q", True),
        ("b", "YWNtZTox="),
    ]:
        with pytest.raises(ValidationError):
            S.model_validate({**ok.model_dump(), field: bad})
