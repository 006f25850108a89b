"""WeCom's callback XML: the encrypted envelope WeCom POSTs and the decrypted message inside.

The envelope::

    <xml><ToUserName><![CDATA[ww...]]></ToUserName><Encrypt><![CDATA[...]]></Encrypt>
    <AgentID><![CDATA[1000002]]></AgentID></xml>

The message (after decryption), e.g. an external-contact change::

    <xml><ToUserName><![CDATA[ww...]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>
    <CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>
    <Event><![CDATA[change_external_contact]]></Event>
    <ChangeType><![CDATA[add_external_contact]]></ChangeType>
    <UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2G...]]></ExternalUserID>
    <State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>

Both are parsed with defusedxml with DTDs forbidden: a document type declaration (and so any
entity, internal or external: XXE, billion laughs) is refused before anything is expanded.
Pure: no I/O. Errors are :class:`CallbackXmlError` whose message never quotes the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

__all__ = [
    "CallbackXmlError",
    "EncryptedEnvelope",
    "ForbiddenXmlError",
    "WeComMessage",
    "parse_envelope",
    "parse_message",
    "render_reply",
]

_ROOT = "xml"


class CallbackXmlError(ValueError):
    """The XML is malformed or lacks what WeCom always sends."""


class ForbiddenXmlError(CallbackXmlError):
    """The XML declares a DTD or entities (XXE and entity-expansion attempts)."""


@dataclass(frozen=True, slots=True)
class EncryptedEnvelope:
    """What WeCom POSTs: the ciphertext and two informative, unauthenticated fields."""

    encrypt: str
    to_user_name: str | None = None
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class WeComMessage:
    """A decrypted callback: its top-level elements by tag (text content, stripped).

    WeCom's messages and events are flat: every field the platform maps is a direct child of
    ``<xml>``; nested elements (e.g. a group's member list) keep only their own text.
    """

    fields: Mapping[str, str]

    def get(self, name: str) -> str | None:
        """The text of top-level element ``name``; ``None`` when absent."""
        return self.fields.get(name)

    @property
    def msg_type(self) -> str | None:
        return self.get("MsgType")

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def change_type(self) -> str | None:
        return self.get("ChangeType")

    @property
    def external_userid(self) -> str | None:
        return self.get("ExternalUserID") or None


def parse_envelope(body: bytes) -> EncryptedEnvelope:
    """Parse the POSTed envelope; raises :class:`CallbackXmlError` without a non-empty ``Encrypt``."""
    fields = _flat_fields(_parse(body))
    encrypt = fields.get("Encrypt")
    if not encrypt:
        raise CallbackXmlError("callback XML has no Encrypt element")
    return EncryptedEnvelope(
        encrypt=encrypt, to_user_name=fields.get("ToUserName"), agent_id=fields.get("AgentID")
    )


def parse_message(plaintext: bytes) -> WeComMessage:
    """Parse a decrypted message; raises :class:`CallbackXmlError` unless it is WeCom's ``<xml>``."""
    return WeComMessage(MappingProxyType(_flat_fields(_parse(plaintext))))


def render_reply(encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    """WeCom's encrypted passive-reply XML (the values are base64, hex and digits: no escaping)."""
    return (
        f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{msg_signature}]]></MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
    )


def _parse(document: bytes) -> Element:
    try:
        root = SafeET.fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise ForbiddenXmlError("XML with a DTD or entity declarations is not accepted") from None
    except ParseError as exc:
        # ParseError's position is safe to repeat; its text is never the document's content.
        raise CallbackXmlError(f"malformed XML ({exc.msg})") from None
    if root.tag != _ROOT:
        raise CallbackXmlError(f"the root element must be <{_ROOT}>")
    return root


def _flat_fields(root: Element) -> dict[str, str]:
    fields: dict[str, str] = {}
    for child in root:
        # The first occurrence wins: WeCom never repeats a field.
        if isinstance(child.tag, str) and child.tag not in fields:
            fields[child.tag] = (child.text or "").strip()
    return fields
