"""Order events, produced by the brand's POS and e-commerce systems (the platform's external API).

Topics ``order-placed`` and ``order-refunded``; both are keyed ``<tenant_id>:<order_id>`` so a
refund is consumed after the order it refunds. See docs/events.md for producers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Self

from pydantic import Field, model_validator

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import Currency, Id, Money, Quantity, Sha256Hex, Timestamp

__all__ = [
    "Customer",
    "OrderChannel",
    "OrderLine",
    "OrderPlaced",
    "OrderPlacedEvent",
    "OrderRefunded",
    "OrderRefundedEvent",
]

OrderChannel = Literal["pos", "mall", "mini-program", "third-party"]

MAX_LINES = 1000

_IDENTITY_FIELDS = ("external_userid", "unionid", "member_id", "phone_hash")


class Customer(Payload):
    """Who bought: at least one identity the platform can resolve to a contact.

    Never a raw phone number: ``phone_hash`` is the SHA-256 (lowercase hex) of the E.164 form,
    e.g. sha256("+8613800138000").
    """

    model_config = Payload.model_config | {
        # The "at least one identity" rule, spelled out for producers that only read the schema.
        "json_schema_extra": {
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}} for name in _IDENTITY_FIELDS
            ]
        }
    }

    external_userid: Id | None = Field(default=None, description="WeCom external_userid, when known.")
    unionid: Id | None = Field(default=None, description="WeChat unionid (mini-program/mall orders).")
    member_id: Id | None = Field(default=None, description="The brand's membership/CRM id.")
    phone_hash: Sha256Hex | None = None

    @model_validator(mode="after")
    def _has_identity(self) -> Self:
        # Spelled out, not a loop over _IDENTITY_FIELDS: this runs for every order consumed.
        if (
            self.external_userid is None
            and self.unionid is None
            and self.member_id is None
            and self.phone_hash is None
        ):
            raise ValueError(f"customer needs at least one of: {', '.join(_IDENTITY_FIELDS)}")
        return self


class OrderLine(Payload):
    """One item line of an order (or of a refund)."""

    sku: Id = Field(description="The brand's SKU code, e.g. 'SK-II-FTE-230'.")
    name: str | None = Field(default=None, max_length=512, description="Product name, for display only.")
    category: Id = Field(description="Product category used by segments and metrics, e.g. '护肤'.")
    quantity: Quantity
    unit_price: Money = Field(description="Price of one unit in yuan, before order-level discounts.")

    @property
    def line_total(self) -> Decimal:
        """``quantity × unit_price``."""
        return self.unit_price * self.quantity


class OrderPlaced(Payload):
    """A customer placed (paid) an order in a store, the mall, a mini-program or a marketplace.

    Consistency rule: sum(quantity × unit_price) over ``items`` minus ``discount_amount`` (0
    when absent) equals ``total_amount`` exactly. Put coupons, full-reduction and member
    discounts in ``discount_amount``; keep ``unit_price`` the undiscounted unit price.
    """

    order_id: Id = Field(description="The order id in the producing system, unique per tenant.")
    channel: OrderChannel = Field(description="pos (in store), mall, mini-program or third-party.")
    store_id: Id | None = Field(default=None, description="Store the order is attributed to, e.g. 'sh-012'.")
    staff_id: Id | None = Field(default=None, description="WeCom userid of the guide credited with the sale.")
    customer: Customer
    items: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    discount_amount: Money | None = Field(
        default=None, description="Order-level discounts in yuan; total = sum(lines) - discount."
    )
    total_amount: Money = Field(description="What the customer paid, in yuan.")
    currency: Currency = "CNY"
    placed_at: Timestamp = Field(description="When the order was placed/paid.")

    @model_validator(mode="after")
    def _total_matches_lines(self) -> Self:
        lines = self.lines_total
        discount = self.discount_amount or Decimal("0.00")
        if lines - discount != self.total_amount:
            # Amounts are not personal data; quoting them makes the dead-letter reason actionable.
            raise ValueError(
                f"total_amount {self.total_amount:.2f} must equal sum(quantity × unit_price) {lines:.2f} "
                f"minus discount_amount {discount:.2f}"
            )
        return self

    @property
    def lines_total(self) -> Decimal:
        """Sum of ``quantity × unit_price`` over the items, before the discount."""
        return sum((line.line_total for line in self.items), Decimal("0.00"))


class OrderPlacedEvent(EventEnvelope):
    """``order-placed`` v1, keyed ``<tenant_id>:<order_id>``."""

    type: Literal["order-placed"]
    version: Literal[1]
    data: OrderPlaced

    def subject(self) -> str:
        return self.data.order_id


class OrderRefunded(Payload):
    """Money went back to the customer for (part of) an order.

    ``amount`` is authoritative; ``items``, when given, say what came back (for per-category
    figures) and need not add up to ``amount`` (shipping, partial goodwill refunds).
    """

    refund_id: Id = Field(description="The refund id in the producing system, unique per tenant.")
    order_id: Id = Field(description="The refunded order (as in its order-placed event).")
    amount: Money = Field(description="Refunded amount in yuan.")
    currency: Currency = "CNY"
    reason: str | None = Field(default=None, max_length=1024, description="Free-text refund reason.")
    refunded_at: Timestamp = Field(description="When the refund was made.")
    items: list[OrderLine] | None = Field(default=None, max_length=MAX_LINES, description="Returned lines.")


class OrderRefundedEvent(EventEnvelope):
    """``order-refunded`` v1, keyed ``<tenant_id>:<order_id>`` so it follows its order."""

    type: Literal["order-refunded"]
    version: Literal[1]
    data: OrderRefunded

    def subject(self) -> str:
        return self.data.order_id
