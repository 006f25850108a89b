"""Message events (produced by campaign-svc's WeCom delivery adapter).

Topic ``message-sent``: one event per recipient contact, keyed by its ``external_userid``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scrm_shared.events.envelope import EventEnvelope, Payload
from scrm_shared.events.primitives import Id, Timestamp

__all__ = ["MessageKind", "MessageSent", "MessageSentEvent"]

MessageKind = Literal["private", "broadcast", "welcome", "moments", "group"]
"""private 1:1 chat, broadcast 群发, welcome 欢迎语, moments 朋友圈, group 客户群."""


class MessageSent(Payload):
    """A message reached (was handed to WeCom for) one customer.

    The content itself stays in campaign-svc; ``content_ref`` points to it, so the event never
    carries message text that may hold personal data.
    """

    message_id: Id = Field(description="Id of this delivery (unique per recipient).")
    external_userid: Id = Field(description="WeCom external_userid of the recipient.")
    staff_id: Id = Field(description="WeCom userid of the staff member the message was sent as.")
    campaign_id: Id | None = Field(
        default=None, description="Campaign that sent it; absent for ad-hoc chats."
    )
    kind: MessageKind = Field(
        description="private (1:1), broadcast (群发), welcome (欢迎语), moments (朋友圈), group (客户群)."
    )
    content_ref: Id = Field(description="Reference to the content/template in campaign-svc.")
    sent_at: Timestamp = Field(description="When WeCom accepted the message.")


class MessageSentEvent(EventEnvelope):
    """``message-sent`` v1, keyed ``<tenant_id>:<external_userid>``."""

    type: Literal["message-sent"]
    version: Literal[1]
    data: MessageSent

    def subject(self) -> str:
        return self.data.external_userid
