"""Pure rules of transfers: WeCom's two-per-90-days limit and the follow checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contact_svc.domain.transfers import (
    TRANSFER_WINDOW,
    NotFollowed,
    StaffUnavailable,
    TransferLimitReached,
    TransferRequest,
    check_transfer,
    over_limit,
)

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def test_two_transfers_in_90_days_block_a_third():
    history = {
        "twice": [NOW - 10 * DAY, NOW - 80 * DAY],
        "once": [NOW - DAY],
        "never": [],
        "long_ago": [NOW - 91 * DAY, NOW - 200 * DAY],
    }
    assert over_limit(history, NOW) == ["twice"]


def test_a_transfer_exactly_90_days_ago_no_longer_counts():
    assert over_limit({"c": [NOW - TRANSFER_WINDOW, NOW - DAY]}, NOW) == []
    assert over_limit({"c": [NOW - TRANSFER_WINDOW + timedelta(seconds=1), NOW - DAY]}, NOW) == ["c"]


def _request(*customers: str) -> TransferRequest:
    return TransferRequest("acme", "giver", "taker", customers, "on_duty")


def test_check_passes_a_valid_transfer():
    check_transfer(
        _request("a", "b"),
        followed_by_from={"a", "b", "z"},
        followed_by_to=set(),
        history={"a": [NOW - DAY]},
        to_staff_resigned=False,
        now=NOW,
    )


def test_check_names_the_customers_not_followed_before_the_limit():
    with pytest.raises(NotFollowed) as info:
        check_transfer(
            _request("a", "b", "c"),
            followed_by_from={"a", "c"},
            followed_by_to={"c"},
            history={"a": [NOW - DAY, NOW - 2 * DAY]},
            to_staff_resigned=False,
            now=NOW,
        )
    assert info.value.not_followed == ["b"]
    assert info.value.already_followed == ["c"]


def test_check_names_the_customers_over_the_limit():
    with pytest.raises(TransferLimitReached) as info:
        check_transfer(
            _request("a", "b"),
            followed_by_from={"a", "b"},
            followed_by_to=set(),
            history={"b": [NOW - DAY, NOW - 2 * DAY], "a": [NOW - DAY]},
            to_staff_resigned=False,
            now=NOW,
        )
    assert info.value.customers == ["b"]


def test_a_resigned_taker_cannot_take_over():
    with pytest.raises(StaffUnavailable):
        check_transfer(
            _request("a"),
            followed_by_from={"a"},
            followed_by_to=set(),
            history={},
            to_staff_resigned=True,
            now=NOW,
        )
