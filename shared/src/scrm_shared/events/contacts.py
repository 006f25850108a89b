"""Contact events (produced by contact-svc from WeCom's external-contact callbacks).

Topics: ``friend-added``, ``friend-deleted``, ``contact-updated``, ``transfer-failed``,
``contact-identified`` and ``contact-erased`` are keyed by the customer's ``external_userid`` so
one contact's changes are consumed in order; ``contacts-transferred`` is keyed by its transfer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import Id, Sha256Hex, Timestamp

__all__ = [
    "ContactErased",
    "ContactErasedEvent",
    "ContactIdentified",
    "ContactIdentifiedEvent",
    "ContactUpdated",
    "ContactUpdatedEvent",
    "ContactsTransferred",
    "ContactsTransferredEvent",
    "FriendAdded",
    "FriendAddedEvent",
    "FriendDeleted",
    "FriendDeletedEvent",
    "TransferFailed",
    "TransferFailedEvent",
]


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


class _ByContact(EventEnvelope):
    """Events about one customer are keyed ``<tenant_id>:<external_userid>``."""

    def subject(self) -> str:
        return self.data.external_userid  # type: ignore[attr-defined, no-any-return]


class ContactUpdated(Payload):
    """A staff member edited a customer on WeCom (``edit_external_contact``), or contact-svc
    learned a new profile for the customer (enrichment through WeCom's API).

    Only the fields in ``changed`` carry news; the others are absent or repeat known values.
    """

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    staff_id: Id | None = Field(default=None, description="WeCom userid of the staff member who edited.")
    changed: list[Literal["remark", "description", "tags", "profile", "unionid"]] = Field(
        default_factory=list, description="Which parts changed."
    )
    remark: str | None = Field(
        default=None, max_length=256, description="The staff's remark (personal data)."
    )
    description: str | None = Field(default=None, max_length=2048, description="The staff's description.")
    tag_ids: list[Id] | None = Field(
        default=None, description="With 'tags': the full set of WeCom tag ids this staff member set now."
    )
    unionid: Id | None = Field(default=None, description="WeChat unionid, when newly known.")
    name: str | None = Field(default=None, max_length=256, description="WeChat nickname (personal data).")
    avatar: str | None = Field(default=None, max_length=2048, description="Avatar URL (personal data).")
    gender: Literal[0, 1, 2] | None = Field(default=None, description="0 unknown, 1 male, 2 female.")
    updated_at: Timestamp = Field(description="When the change happened (WeCom CreateTime).")


class ContactUpdatedEvent(_ByContact):
    """``contact-updated`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["contact-updated"]
    version: Literal[1]
    data: ContactUpdated


class TransferFailed(Payload):
    """WeCom could not hand a customer over to the new staff member (``transfer_fail``)."""

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    staff_id: Id = Field(description="WeCom userid of the staff member who should have taken over.")
    fail_reason: Literal["customer_refused", "customer_limit_exceed"] | str = Field(
        description="WeCom's FailReason: the customer refused, or the taker has too many customers."
    )
    failed_at: Timestamp


class TransferFailedEvent(_ByContact):
    """``transfer-failed`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["transfer-failed"]
    version: Literal[1]
    data: TransferFailed


class ContactIdentified(Payload):
    """contact-svc learned that identities belong to one WeCom contact.

    Orders from POS or the mall carry member_id, phone_hash or unionid rather than WeCom ids;
    processors use these links to map any order (past ones included) to its contact.
    """

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    unionid: Id | None = None
    member_id: Id | None = Field(default=None, description="The brand's membership id.")
    phone_hash: Sha256Hex | None = Field(
        default=None, description="sha256 hex of the E.164 phone number (the raw phone is never stored)."
    )
    source: Literal["friend-added", "contact-updated", "api", "order"] = Field(
        description="How the link was learned."
    )
    identified_at: Timestamp


class ContactIdentifiedEvent(_ByContact):
    """``contact-identified`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["contact-identified"]
    version: Literal[1]
    data: ContactIdentified


class ContactsTransferred(Payload):
    """Customers were moved from one staff member to another (在职/离职继承)."""

    transfer_id: Id
    from_staff: Id
    to_staff: Id
    kind: Literal["on_duty", "resigned"]
    external_userids: list[Id] = Field(min_length=1, max_length=100)
    transferred_at: Timestamp


class ContactsTransferredEvent(EventEnvelope):
    """``contacts-transferred`` v1, keyed ``<tenant_id>:<transfer_id>``."""

    type: Literal["contacts-transferred"]
    version: Literal[1]
    data: ContactsTransferred

    def subject(self) -> str:
        return self.data.transfer_id


class ContactErased(Payload):
    """A contact's personal data was erased (PIPL): every service must drop its personal fields
    (names, avatars, remarks, identities) for this contact; counts and metrics stay."""

    external_userid: Id = Field(description="WeCom external_userid of the customer.")
    contact_id: Id = Field(description="contact-svc's id of the contact.")
    erased_at: Timestamp


class ContactErasedEvent(_ByContact):
    """``contact-erased`` v1, keyed ``<tenant_id>:<external_userid>`` (a tombstone)."""

    type: Literal["contact-erased"]
    version: Literal[1]
    data: ContactErased
