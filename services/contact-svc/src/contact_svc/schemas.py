"""Request and response models of contact-svc's HTTP API (what /docs shows front-ends)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from contact_svc.domain.identities import IdentityKind, check_phone_hash
from contact_svc.domain.transfers import MAX_CUSTOMERS, TransferKind

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=r"\S")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class Follow(BaseModel):
    """One staff member's relation with the contact."""

    staff_id: str
    state: str = Field(description="The channel code that brought the friend ('' when none).")
    store_id: str | None
    added_at: datetime | None
    status: Literal["active", "deleted"]
    deleted_by: Literal["staff", "customer"] | None
    remark: str | None = Field(
        description="The staff member's remark (for a guide: only on their own follow)."
    )


class Contact(BaseModel):
    """A customer (WeCom external contact) and who follows it."""

    contact_id: uuid.UUID
    external_userid: str
    name: str | None
    avatar: str | None
    gender: int | None = Field(description="0 unknown, 1 male, 2 female.")
    unionid: str | None = Field(description="WeChat unionid; shown to admins and operators only.")
    status: Literal["active", "lost", "erased"]
    first_added_at: datetime | None
    follows: list[Follow]


class ContactDetail(Contact):
    identities: list[IdentityKind] = Field(
        description="Kinds of ids linked to this contact (never the values)."
    )


class ContactPage(BaseModel):
    items: list[Contact]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class IdentityLinkIn(_Request):
    """Ids that belong to this contact. ``phone_hash`` is sha256 of the E.164 phone, 64 lowercase
    hex characters: a raw phone number is refused."""

    member_id: Id | None = None
    phone_hash: str | None = Field(default=None, examples=["a" * 64])
    unionid: Id | None = None

    @field_validator("phone_hash")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        return None if value is None else check_phone_hash(value)

    @model_validator(mode="after")
    def _some(self) -> Self:
        if self.member_id is None and self.phone_hash is None and self.unionid is None:
            raise ValueError("give at least one of member_id, phone_hash, unionid")
        return self

    def ids(self) -> tuple[tuple[IdentityKind, str], ...]:
        pairs: list[tuple[IdentityKind, str | None]] = [
            ("unionid", self.unionid),
            ("member_id", self.member_id),
            ("phone_hash", self.phone_hash),
        ]
        return tuple((k, v) for k, v in pairs if v is not None)


class IdentityLinkOut(BaseModel):
    contact_id: uuid.UUID
    external_userid: str
    linked: list[IdentityKind] = Field(description="Kinds newly linked by this request.")
    already_linked: list[IdentityKind] = Field(description="Kinds that were linked to this contact before.")


class Staff(BaseModel):
    staff_id: str
    name: str | None
    store_id: str | None
    status: Literal["active", "resigned"]
    followers: int = Field(description="Customers this staff member actively follows.")


class StaffIn(_Request):
    """Only the fields given change; ``store_id: null`` detaches the staff member from a store."""

    name: Name | None = None
    store_id: Id | None = None
    status: Literal["active", "resigned"] | None = None

    @model_validator(mode="after")
    def _status_not_null(self) -> Self:
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status cannot be null; use 'active' or 'resigned'")
        return self


class Store(BaseModel):
    store_id: str
    name: str | None


class StoreIn(_Request):
    name: Name


class Channel(BaseModel):
    state: str
    name: str
    store_id: str | None
    campaign_id: str | None


class ChannelIn(_Request):
    name: Name
    store_id: Id | None = None
    campaign_id: Id | None = None


class TransferIn(_Request):
    from_staff: Id
    to_staff: Id
    external_userids: list[Id] = Field(min_length=1, max_length=MAX_CUSTOMERS)
    kind: TransferKind

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.from_staff == self.to_staff:
            raise ValueError("from_staff and to_staff must differ")
        if len(set(self.external_userids)) != len(self.external_userids):
            raise ValueError("external_userids must not repeat")
        return self


class TransferItem(BaseModel):
    external_userid: str
    status: Literal["waiting", "done", "failed"]
    fail_reason: str | None
    transferred_at: datetime


class Transfer(BaseModel):
    transfer_id: str
    from_staff: str
    to_staff: str
    kind: TransferKind
    created_at: datetime
    items: list[TransferItem]
