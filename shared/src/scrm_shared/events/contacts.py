"""Contact events (produced by contact-svc from WeCom's external-contact callbacks).

Topics: ``friend-added`` and ``friend-deleted``; both are keyed by the customer's
``external_userid`` so one contact's relationship changes are consumed in order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import Id, Timestamp

__all__ = ["FriendAdded", "FriendAddedEvent", "FriendDeleted", "FriendDeletedEvent"]


class FriendAdded(Payload):
    """A customer became the WeCom friend (external contact) of a staff member.

    From WeCom's ``change_external_contact`` / ``add_external_contact`` callback, enriched with
    the contact's profile when the producer has fetched it. Personal fields (name, avatar) are
    optional and are erased on request; never derive keys or logs from them.
    """

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    staff_id: Id = Field(description="WeCom userid of the guide/staff member who was added.")
    state: str = Field(
        default="",
        max_length=256,
        description="The channel QR code's `state` (store/poster/campaign that brought the friend); "
        "empty when the friend was not added through a channel code.",
    )
    welcome_code: str | None = Field(
        default=None,
        max_length=512,
        description="WeCom welcome_code for sending the welcome message; valid for 20 seconds.",
    )
    unionid: Id | None = Field(default=None, description="WeChat unionid, when the brand can see it.")
    name: str | None = Field(default=None, max_length=256, description="WeChat nickname (personal data).")
    avatar: str | None = Field(default=None, max_length=2048, description="Avatar URL (personal data).")
    gender: Literal[0, 1, 2] | None = Field(
        default=None, description="As WeCom reports it: 0 unknown, 1 male, 2 female."
    )
    store_id: Id | None = Field(
        default=None, description="Store the friend was attributed to, e.g. 'sh-012'."
    )
    add_way: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        description="WeCom add_way (e.g. 1 scanned a QR code, 2 searched the phone number, "
        "202 assigned by an admin).",
    )
    added_at: Timestamp = Field(description="When the friendship was created (WeCom CreateTime).")


class FriendAddedEvent(EventEnvelope):
    """``friend-added`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["friend-added"]
    version: Literal[1]
    data: FriendAdded

    def subject(self) -> str:
        return self.data.external_userid


class FriendDeleted(Payload):
    """A WeCom friendship between a customer and a staff member ended.

    ``deleted_by`` says who ended it: ``staff`` is WeCom's ``del_external_contact`` (the guide
    deleted the customer), ``customer`` is ``del_follow_user`` (the customer deleted the guide).
    """

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    staff_id: Id = Field(description="WeCom userid of the staff member.")
    deleted_by: Literal["staff", "customer"] = Field(
        description="'staff': del_external_contact; 'customer': del_follow_user."
    )
    source: str | None = Field(
        default=None,
        max_length=64,
        description="WeCom's Source of a staff-side deletion, e.g. 'DELETE_BY_TRANSFER' (customer moved "
        "to another guide on resignation/transfer).",
    )
    deleted_at: Timestamp = Field(description="When the friendship ended (WeCom CreateTime).")


class FriendDeletedEvent(EventEnvelope):
    """``friend-deleted`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["friend-deleted"]
    version: Literal[1]
    data: FriendDeleted

    def subject(self) -> str:
        return self.data.external_userid
