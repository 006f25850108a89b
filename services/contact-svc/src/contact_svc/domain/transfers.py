"""Pure rules of transfers (在职/离职继承): moving customers from one staff member to another.

WeCom hands a customer over at most twice in 90 days; a transfer that would break that rule for
any of its customers is refused as a whole, so a front-end never has to untangle a half-done one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "MAX_CUSTOMERS",
    "TRANSFER_LIMIT",
    "TRANSFER_WINDOW",
    "NotFollowed",
    "StaffUnavailable",
    "TransferKind",
    "TransferLimitReached",
    "TransferRefused",
    "TransferRequest",
    "check_transfer",
    "over_limit",
]

TransferKind = Literal["on_duty", "resigned"]

TRANSFER_LIMIT = 2
"""Transfers WeCom allows per customer within :data:`TRANSFER_WINDOW`."""
TRANSFER_WINDOW = timedelta(days=90)
MAX_CUSTOMERS = 100
"""Customers per transfer request (WeCom's transfer_customer takes at most 100)."""


@dataclass(frozen=True, slots=True)
class TransferRequest:
    tenant_id: str
    from_staff: str
    to_staff: str
    external_userids: tuple[str, ...]
    kind: TransferKind


class TransferRefused(Exception):
    """The transfer cannot be made; nothing was moved. ``customers`` says which ones block it."""

    def __init__(self, message: str, customers: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.customers = list(customers)


class NotFollowed(TransferRefused):
    """Some customers are not actively followed by ``from_staff`` (or already by ``to_staff``)."""

    def __init__(self, not_followed: Sequence[str], already_followed: Sequence[str]) -> None:
        super().__init__(
            "customers must be followed by from_staff and not yet by to_staff",
            [*not_followed, *already_followed],
        )
        self.not_followed = list(not_followed)
        self.already_followed = list(already_followed)


class TransferLimitReached(TransferRefused):
    """Some customers were already transferred :data:`TRANSFER_LIMIT` times in the window."""


class StaffUnavailable(TransferRefused):
    """The staff member who should take over has resigned."""


def over_limit(
    history: Mapping[str, Iterable[datetime]],
    now: datetime,
    *,
    limit: int = TRANSFER_LIMIT,
    window: timedelta = TRANSFER_WINDOW,
) -> list[str]:
    """Customers who may not be transferred now: ``limit`` transfers already within ``window``.

    ``history`` maps a customer to the times of its past (not failed) transfers; a transfer
    exactly ``window`` ago no longer counts.
    """
    since = now - window
    return sorted(c for c, times in history.items() if sum(1 for t in times if t > since) >= limit)


def check_transfer(
    request: TransferRequest,
    *,
    followed_by_from: Iterable[str],
    followed_by_to: Iterable[str],
    history: Mapping[str, Iterable[datetime]],
    to_staff_resigned: bool,
    now: datetime,
) -> None:
    """Raise the first reason the transfer cannot be made (422-kinds before the 409 rule)."""
    if to_staff_resigned:
        raise StaffUnavailable("to_staff has resigned and cannot take over customers")
    from_set, to_set = set(followed_by_from), set(followed_by_to)
    missing = [c for c in request.external_userids if c not in from_set]
    already = [c for c in request.external_userids if c in to_set]
    if missing or already:
        raise NotFollowed(missing, already)
    blocked = over_limit({c: history.get(c, ()) for c in request.external_userids}, now)
    if blocked:
        raise TransferLimitReached(
            f"WeCom allows at most {TRANSFER_LIMIT} transfers per customer in {TRANSFER_WINDOW.days} days",
            blocked,
        )
