"""Response models of WeCom's external-contact API: only the fields contact-svc uses; WeCom adds
fields over time and extra ones are ignored."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contact_svc.wecom.client.errors import WeComTransportError


class _WeComModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ExternalContact(_WeComModel):
    """A customer as WeCom describes it (``external_contact``).

    Personal fields are left out of ``repr`` so that they never reach a log through a traceback.
    """

    external_userid: str = Field(repr=False)
    name: str | None = Field(default=None, repr=False)
    avatar: str | None = Field(default=None, repr=False)
    type: int | None = Field(default=None, description="1 WeChat user, 2 WeCom user.")
    gender: int | None = Field(default=None, repr=False, description="0 unknown, 1 male, 2 female.")
    unionid: str | None = Field(default=None, repr=False)
    corp_name: str | None = Field(default=None, repr=False)
    position: str | None = Field(default=None, repr=False)


class FollowInfo(_WeComModel):
    """One staff member's relation to a customer (``follow_user[]`` / ``follow_info``)."""

    userid: str
    remark: str | None = Field(default=None, repr=False)
    description: str | None = Field(default=None, repr=False)
    createtime: int = Field(default=0, description="Unix seconds the friendship was created.")
    state: str | None = Field(default=None, description="The channel QR code's state.")
    add_way: int | None = None
    oper_userid: str | None = Field(default=None, repr=False)
    # externalcontact/get lists tags as objects, batch/get_by_user as ids (tag_id).
    tag_id: list[str] = Field(default_factory=list)


class ContactDetail(_WeComModel):
    """``externalcontact/get``: the customer and every staff member following it."""

    external_contact: ExternalContact
    follow_user: list[FollowInfo] = Field(default_factory=list)


class ContactByUser(_WeComModel):
    """One record of ``externalcontact/batch/get_by_user``: a customer and one staff's relation."""

    external_contact: ExternalContact
    follow_info: FollowInfo


class ContactsPage(_WeComModel):
    """One page of ``externalcontact/batch/get_by_user``; ``next_cursor`` is empty on the last."""

    external_contact_list: list[ContactByUser] = Field(default_factory=list)
    next_cursor: str = ""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], payload: dict[str, Any], api: str) -> M:
    """``payload`` as ``model``; an answer of another shape raises :class:`WeComTransportError`."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        # The validation error would quote the offending values (names, ids): keep only its size.
        raise WeComTransportError(f"unexpected answer shape ({exc.error_count()} errors)", api=api) from None
