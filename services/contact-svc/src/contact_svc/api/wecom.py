"""WeCom's callback URL (per tenant) and the tenant's WeCom settings.

- ``GET  /wecom/callback/{tenant_id}``: WeCom's URL verification; answers the decrypted echostr.
- ``POST /wecom/callback/{tenant_id}``: an encrypted callback. Verified, decrypted and parsed, then
  archived and its events enqueued in one transaction; answered ``success`` without any remote
  call (WeCom waits at most 5 s and retries). A retry hashes the same: no second archive row, no
  second event. Every refusal is a 4xx problem and archives and publishes nothing.
- ``PUT|GET /v1/wecom/config``: the tenant's Token, EncodingAESKey, corp_id, agent_id and secret.
  GET never returns the Token, EncodingAESKey or secret, only whether each is set.

The callback routes carry no bearer token: WeCom's msg_signature (and the receive id inside the
ciphertext) authenticate them.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contact_svc.domain.callbacks import Outgoing, UnmappableCallback, events_for, payload_hash
from contact_svc.store import wecom as store
from contact_svc.wecom.callback import (
    CallbackXmlError,
    ForbiddenXmlError,
    WeComMessage,
    parse_envelope,
    parse_message,
)
from contact_svc.wecom.crypto import (
    ENCODING_AES_KEY_PATTERN,
    DecryptError,
    ReceiveIdMismatch,
    SignatureMismatch,
    WeComCrypto,
    WeComCryptoError,
)
from scrm_shared.auth import AdminOnly, AdminOrOperator
from scrm_shared.db.outbox import enqueue_event
from scrm_shared.events.primitives import TENANT_PATTERN
from scrm_shared.problems import Problem
from scrm_shared.secrets import SecretBox

__all__ = ["CALLBACKS", "WeComConfigIn", "WeComConfigOut", "callback_router", "config_router"]

log = logging.getLogger(__name__)

callback_router = APIRouter(prefix="/wecom", tags=["wecom callback"])
config_router = APIRouter(prefix="/v1/wecom", tags=["wecom settings"])

CALLBACKS = Counter(
    "scrm_wecom_callbacks",
    "WeCom callback requests by outcome (accepted, duplicate, url-verified, or why refused)",
    ["service", "outcome"],
)

_TENANT = re.compile(TENANT_PATTERN)
_SUCCESS = "success"  # the body WeCom expects; anything else makes it retry
_XML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/xml": {"schema": {"type": "string", "example": "<xml><Encrypt>...</Encrypt></xml>"}}
        },
    }
}

MsgSignature = Annotated[
    str, Query(min_length=1, max_length=128, description="WeCom's sha1 signature of the request")
]
Timestamp = Annotated[str, Query(min_length=1, max_length=32, description="Unix seconds, as WeCom sent them")]
Nonce = Annotated[str, Query(min_length=1, max_length=64, description="WeCom's random nonce")]
EchoStr = Annotated[str, Query(min_length=1, max_length=4096, description="Encrypted echo string")]


# ---------------------------------------------------------------------------------------------
# Callback
# ---------------------------------------------------------------------------------------------


@callback_router.get(
    "/callback/{tenant_id}",
    response_class=PlainTextResponse,
    summary="WeCom URL verification: answer the decrypted echostr",
)
async def verify_url(
    request: Request,
    tenant_id: str,
    msg_signature: MsgSignature,
    timestamp: Timestamp,
    nonce: Nonce,
    echostr: EchoStr,
) -> PlainTextResponse:
    """Verify the signature, decrypt ``echostr`` for the tenant's corp and return it verbatim."""
    crypto = await _tenant_crypto(request, tenant_id)
    # Base64 has no spaces: a '+' that reached us unescaped was turned into one by query decoding.
    echostr = echostr.replace(" ", "+")
    try:
        plain = crypto.verify_url(msg_signature, timestamp, nonce, echostr)
    except WeComCryptoError as exc:
        raise _crypto_problem(request, tenant_id, exc) from None
    _count(request, "url-verified")
    return PlainTextResponse(plain)


@callback_router.post(
    "/callback/{tenant_id}",
    response_class=PlainTextResponse,
    summary="Receive an encrypted WeCom callback (archived, events via the outbox)",
    openapi_extra=_XML_BODY,
)
async def receive_callback(
    request: Request,
    tenant_id: str,
    msg_signature: MsgSignature,
    timestamp: Timestamp,
    nonce: Nonce,
) -> PlainTextResponse:
    """Accept one callback: verify, decrypt, archive (deduped) and enqueue its events; ``success``."""
    _check_tenant_slug(request, tenant_id)
    body = await _read_limited(request, tenant_id, request.app.state.settings.wecom_callback_max_bytes)
    try:
        envelope = parse_envelope(body)
    except CallbackXmlError as exc:
        raise _xml_problem(request, tenant_id, exc) from None
    # One connection for the settings and the transaction: each pool release costs a round trip.
    async with _pool(request).acquire() as conn:
        crypto = await _tenant_crypto(request, tenant_id, conn)
        try:
            plaintext = crypto.open(msg_signature, timestamp, nonce, envelope.encrypt)
        except WeComCryptoError as exc:
            raise _crypto_problem(request, tenant_id, exc) from None
        message, payload, outgoing = _interpret(request, tenant_id, plaintext)
        async with conn.transaction():
            fresh = await store.archive_callback(conn, payload)
            if fresh:
                for out in outgoing:
                    await enqueue_event(conn, out.topic, out.event)
    _count(request, "accepted" if fresh else "duplicate")
    log.debug(
        "wecom callback accepted",
        extra={
            "tenant_id": tenant_id,
            "event_type": message.event,
            "change_type": message.change_type,
            "duplicate": not fresh,
            "events": len(outgoing) if fresh else 0,
        },
    )
    return PlainTextResponse(_SUCCESS)


def _interpret(
    request: Request, tenant_id: str, plaintext: bytes
) -> tuple[WeComMessage, store.ArchivedCallback, list[Outgoing]]:
    """Parse a decrypted callback: its message, its archive row and the events it announces."""
    try:
        message = parse_message(plaintext)
        text = plaintext.decode("utf-8")
    except CallbackXmlError as exc:
        raise _xml_problem(request, tenant_id, exc) from None
    except UnicodeDecodeError:
        raise _refuse(request, tenant_id, "malformed", "decrypted callback is not UTF-8") from None
    digest = payload_hash(plaintext)
    try:
        outgoing = events_for(tenant_id, message, digest)
    except UnmappableCallback as exc:
        raise _refuse(request, tenant_id, "unmappable", str(exc)) from None
    archived = store.ArchivedCallback(
        tenant_id=tenant_id,
        payload_hash=digest,
        msg_type=message.msg_type,
        event=message.event,
        change_type=message.change_type,
        external_userid=message.external_userid,
        payload=text,
    )
    return message, archived, outgoing


async def _tenant_crypto(request: Request, tenant_id: str, conn: store.Executor | None = None) -> WeComCrypto:
    _check_tenant_slug(request, tenant_id)
    config = await store.get_config(conn or _pool(request), _box(request), tenant_id)
    if config is None:
        raise _refuse(request, tenant_id, "unknown-tenant", "no WeCom callback is configured for this tenant")
    return WeComCrypto.from_settings(config.token, config.encoding_aes_key, config.corp_id)


def _check_tenant_slug(request: Request, tenant_id: str) -> None:
    if not _TENANT.fullmatch(tenant_id):
        # Not a slug, so no tenant: the same answer as an unknown one (and never echoed to logs).
        raise _refuse(request, None, "unknown-tenant", "no WeCom callback is configured here")


async def _read_limited(request: Request, tenant_id: str, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    too_large = f"callback bodies are limited to {limit} bytes"
    if declared.isdigit() and int(declared) > limit:
        raise _refuse(request, tenant_id, "too-large", too_large, max_bytes=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _refuse(request, tenant_id, "too-large", too_large, max_bytes=limit)
    return bytes(body)


def _crypto_problem(request: Request, tenant_id: str, exc: WeComCryptoError) -> Problem:
    if isinstance(exc, SignatureMismatch):
        detail = "msg_signature does not match this tenant's WeCom token"
        return _refuse(request, tenant_id, "bad-signature", detail)
    if isinstance(exc, ReceiveIdMismatch):
        detail = "the message was encrypted for another corp than this tenant's corp_id"
        return _refuse(request, tenant_id, "wrong-corp", detail)
    assert isinstance(exc, DecryptError)
    # The signature was right, so the token matches: the EncodingAESKey most likely does not.
    detail = f"the message cannot be decrypted with this tenant's EncodingAESKey ({exc})"
    return _refuse(request, tenant_id, "undecryptable", detail)


def _xml_problem(request: Request, tenant_id: str, exc: CallbackXmlError) -> Problem:
    return _refuse(
        request, tenant_id, "forbidden-xml" if isinstance(exc, ForbiddenXmlError) else "malformed", str(exc)
    )


# Why a callback was refused (the metric's outcome label) -> status, problem type, title.
_REFUSALS: dict[str, tuple[int, str, str]] = {
    "unknown-tenant": (404, "wecom-tenant-unknown", "Unknown WeCom callback tenant"),
    "too-large": (413, "wecom-callback-too-large", "Callback body too large"),
    "malformed": (400, "wecom-callback-malformed", "Malformed WeCom callback"),
    "forbidden-xml": (400, "wecom-xml-forbidden", "XML with DTD or entities refused"),
    "bad-signature": (403, "wecom-signature-invalid", "Invalid WeCom signature"),
    "wrong-corp": (403, "wecom-receive-id-mismatch", "Callback for another corp"),
    "undecryptable": (400, "wecom-decrypt-failed", "WeCom callback cannot be decrypted"),
    "unmappable": (400, "wecom-callback-unmappable", "WeCom callback lacks required fields"),
}


def _refuse(request: Request, tenant_id: str | None, outcome: str, detail: str, **extra: Any) -> Problem:
    """Count and log a refusal (no payload, no ids of people) and build its problem."""
    status, slug, title = _REFUSALS[outcome]
    _count(request, outcome)
    log.warning(
        "wecom callback refused", extra={"tenant_id": tenant_id, "outcome": outcome, "status": status}
    )
    return Problem(status, title, detail, type=slug, **extra)


def _count(request: Request, outcome: str) -> None:
    CALLBACKS.labels(getattr(request.app.state, "service", "contact-svc"), outcome).inc()


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


def _box(request: Request) -> SecretBox:
    return request.app.state.settings.secret_box  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

_CORP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9]{1,32}")
_AES_KEY = re.compile(ENCODING_AES_KEY_PATTERN)
_SECRET = re.compile(r"[\x21-\x7e]{1,256}")


class WeComConfigIn(BaseModel):
    """A tenant's WeCom callback settings, as set in WeCom's admin console (应用管理 -> 接收消息).

    ``agent_id`` and ``secret`` are optional: left out, the stored values stay (so a token can be
    rotated without re-entering a secret the API never shows); sent as ``null``, they are cleared.
    """

    model_config = ConfigDict(extra="forbid")

    corp_id: str = Field(description="The corp's CorpID (企业ID), e.g. 'ww1436e0e65a779aee'.")
    token: str = Field(description="The callback Token: 1-32 letters or digits.")
    encoding_aes_key: str = Field(description="The callback EncodingAESKey: exactly 43 of A-Z, a-z, 0-9.")
    agent_id: int | None = Field(default=None, description="The app's AgentId (e.g. 1000002).")
    secret: str | None = Field(default=None, description="The app's Secret, for WeCom's server API.")

    @field_validator("corp_id")
    @classmethod
    def _corp_id(cls, value: str) -> str:
        if not _CORP_ID.fullmatch(value):
            raise ValueError("corp_id must be WeCom's CorpID: 1-64 letters, digits, '_' or '-'")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError("token must be 1-32 letters or digits (WeCom's callback Token)")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _encoding_aes_key(cls, value: str) -> str:
        if len(value) != 43:
            raise ValueError("encoding_aes_key must be exactly 43 characters long")
        if not _AES_KEY.fullmatch(value):
            raise ValueError("encoding_aes_key may contain only the characters A-Z, a-z and 0-9")
        return value

    @field_validator("agent_id", mode="before")
    @classmethod
    def _agent_id(cls, value: Any) -> Any:
        # Lax int parsing would take true as 1; an AgentId is a plain positive integer.
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError("agent_id must be a positive integer")
        if value is not None and not 0 < value < 2**63:
            raise ValueError("agent_id must be a positive integer")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET.fullmatch(value):
            raise ValueError("secret must be 1-256 printable ASCII characters without spaces")
        return value


class WeComConfigOut(BaseModel):
    """A tenant's WeCom settings without the Token, EncodingAESKey and secret."""

    tenant_id: str
    corp_id: str
    agent_id: int | None
    has_token: bool
    has_encoding_aes_key: bool
    has_secret: bool
    callback_path: str = Field(description="Path of this tenant's callback URL, to enter in WeCom.")
    updated_at: datetime


@config_router.put("/config", response_model=WeComConfigOut, summary="Set the tenant's WeCom settings")
async def put_config(request: Request, body: WeComConfigIn, principal: AdminOnly) -> WeComConfigOut:
    """Create or replace the caller's tenant's WeCom settings (admin only)."""
    sent = body.model_fields_set
    stored = await store.upsert_config(
        _pool(request),
        _box(request),
        tenant_id=principal.tenant_id,
        corp_id=body.corp_id,
        token=body.token,
        encoding_aes_key=body.encoding_aes_key,
        agent_id=str(body.agent_id) if body.agent_id is not None else None,
        secret=body.secret,
        set_agent_id="agent_id" in sent,
        set_secret="secret" in sent,
    )
    log.info("wecom settings updated", extra={"tenant_id": principal.tenant_id})
    return _public(stored)


@config_router.get("/config", response_model=WeComConfigOut, summary="The tenant's WeCom settings")
async def get_config(request: Request, principal: AdminOrOperator) -> WeComConfigOut:
    """The caller's tenant's WeCom settings, secrets left out (admin or operator)."""
    stored = await store.get_config(_pool(request), _box(request), principal.tenant_id)
    if stored is None:
        raise Problem(
            404,
            "WeCom settings not configured",
            "this tenant has no WeCom settings yet; PUT /v1/wecom/config",
            type="wecom-config-missing",
        )
    return _public(stored)


def _public(stored: store.StoredConfig) -> WeComConfigOut:
    return WeComConfigOut(
        tenant_id=stored.tenant_id,
        corp_id=stored.corp_id,
        agent_id=int(stored.agent_id) if stored.agent_id else None,
        has_token=bool(stored.token),
        has_encoding_aes_key=bool(stored.encoding_aes_key),
        has_secret=bool(stored.secret),
        callback_path=f"{callback_router.prefix}/callback/{stored.tenant_id}",
        updated_at=stored.updated_at,
    )
