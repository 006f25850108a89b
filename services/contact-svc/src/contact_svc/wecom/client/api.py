"""The client: one HTTP client, token cache and retry loop shared by every corp, and the
external-contact calls of one corp (:class:`CorpClient`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from prometheus_client import Counter

from contact_svc.wecom.client.errors import (
    RETRYABLE_ERRCODES,
    SYSTEM_BUSY,
    TOKEN_INVALID_ERRCODES,
    WeComError,
    WeComTokenError,
    WeComTransportError,
)
from contact_svc.wecom.client.models import ContactByUser, ContactDetail, ContactsPage, FollowInfo, parse
from contact_svc.wecom.client.retry import RetryPolicy
from contact_svc.wecom.client.tokens import Token, TokenSlot, token_key
from scrm_shared.telemetry.logs import hide_http_query_strings

# The name it had before the client became a package, so logging configuration keeps applying.
log = logging.getLogger("contact_svc.wecom.client")

WECOM_API_CALLS = Counter(
    "scrm_wecom_api_calls_total",
    "Calls of WeCom's server API by API and outcome ('ok', an errcode, or 'transport').",
    ["api", "outcome"],
)

# Paths below the base URL (.../cgi-bin).
API_GETTOKEN = "gettoken"
API_GET_CONTACT = "externalcontact/get"
API_BATCH_BY_USER = "externalcontact/batch/get_by_user"
API_LIST_CONTACTS = "externalcontact/list"

BATCH_LIMIT_MAX = 100  # batch/get_by_user: at most 100 records per page and 100 userids per call
# Bound on the pages of one listing, so that a server which keeps returning cursors cannot keep
# us looping: 10k pages of 100 are far more friends than WeCom lets one staff member have.
MAX_PAGES = 10_000


class WeComClient:
    """Shared HTTP client, token cache and retry loop for every corp.

    ``base_url`` is WeCom's ``https://qyapi.weixin.qq.com/cgi-bin`` in production and a stand-in
    (:mod:`contact_svc.wecom.standin`) in tests. ``token_margin`` seconds are taken off each
    token's lifetime so that a token never expires in flight.
    """

    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        token_margin: float = 300.0,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        hide_http_query_strings()
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.token_margin = token_margin
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._tokens: dict[tuple[str, str], TokenSlot] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (when this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    def corp(self, corp_id: str, secret: str) -> CorpClient:
        """The API of one corp (tenant), authenticated with its app secret."""
        return CorpClient(self, corp_id, secret)

    # --- tokens ---------------------------------------------------------------------------

    async def access_token(self, corp_id: str, secret: str) -> str:
        """The corp's cached access_token, fetched with ``gettoken`` when missing or near expiry.

        Raises :class:`WeComTokenError` when WeCom refuses the credentials.
        """
        slot = self._tokens.setdefault(token_key(corp_id, secret), TokenSlot())
        token = slot.token
        if token is not None and self._clock() < token.expires_at:
            return token.value
        # One fetch per corp at a time: the callers queued behind it reuse its token.
        async with slot.lock:
            token = slot.token
            if token is not None and self._clock() < token.expires_at:
                return token.value
            payload = await self._send("GET", API_GETTOKEN, params={"corpid": corp_id, "corpsecret": secret})
            errcode = _errcode(payload)
            if errcode != 0:
                raise WeComTokenError(errcode, str(payload.get("errmsg", "")), api=API_GETTOKEN)
            value = payload.get("access_token")
            expires_in = payload.get("expires_in")
            if not isinstance(value, str) or not value or not isinstance(expires_in, int) or expires_in <= 0:
                raise WeComTransportError("gettoken answered without a usable token", api=API_GETTOKEN)
            # Keep the margin, but never let it eat more than half of a short lifetime.
            lifetime = expires_in - min(self.token_margin, expires_in / 2)
            slot.token = Token(value, self._clock() + lifetime)
            return value

    def _drop_token(self, corp_id: str, secret: str, value: str) -> None:
        slot = self._tokens.get(token_key(corp_id, secret))
        # Only the token that failed: a concurrent caller may already have fetched a new one.
        if slot is not None and slot.token is not None and slot.token.value == value:
            slot.token = None

    # --- calls ----------------------------------------------------------------------------

    async def call(
        self,
        corp_id: str,
        secret: str,
        method: str,
        api: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call ``api`` for the corp; returns WeCom's JSON object when ``errcode`` is 0.

        Transient failures are retried (see :class:`RetryPolicy`); an invalid or expired token is
        replaced and the call repeated once. Anything else raises :class:`WeComError`.
        """
        refreshed = False
        while True:
            token = await self.access_token(corp_id, secret)
            payload = await self._send(
                method, api, params={**(params or {}), "access_token": token}, body=body
            )
            errcode = _errcode(payload)
            if errcode == 0:
                return payload
            if errcode in TOKEN_INVALID_ERRCODES and not refreshed:
                refreshed = True
                self._drop_token(corp_id, secret, token)
                log.info("wecom token rejected, fetching a new one", extra={"api": api, "errcode": errcode})
                continue
            raise WeComError(errcode, str(payload.get("errmsg", "")), api=api)

    async def _send(
        self, method: str, api: str, *, params: dict[str, str], body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request with the retry loop for transient failures.

        Returns the JSON object of the last answer: ``errcode`` 0, a non-retryable errcode, or a
        retryable one when the tries ran out. Raises :class:`WeComTransportError` when the last
        try could not get a JSON object at all.
        """
        url = f"{self.base_url}/{api}"
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = await self._http.request(method, url, params=params, json=body)
                payload = _json_object(response, api)
            except (httpx.TransportError, WeComTransportError) as exc:
                WECOM_API_CALLS.labels(api, "transport").inc()
                reason = exc.reason if isinstance(exc, WeComTransportError) else type(exc).__name__
                if last or (isinstance(exc, WeComTransportError) and not _is_transient_http(exc)):
                    raise WeComTransportError(reason, api=api) from exc
                await self._backoff(api, attempt, reason)
                continue
            errcode = _errcode(payload)
            WECOM_API_CALLS.labels(api, "ok" if errcode == 0 else str(errcode)).inc()
            if errcode in RETRYABLE_ERRCODES and not last:
                await self._backoff(api, attempt, f"errcode {errcode}")
                continue
            return payload
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _backoff(self, api: str, attempt: int, reason: str) -> None:
        delay = self.retry.delay(attempt, self._rng)
        log.info(
            "wecom call throttled or failed, retrying",
            extra={"api": api, "reason": reason, "attempt": attempt, "retry_in_s": round(delay, 3)},
        )
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class CorpClient:
    """WeCom's external-contact API for one corp (get one from :meth:`WeComClient.corp`)."""

    client: WeComClient
    corp_id: str
    secret: str = field(repr=False)

    async def get_external_contact(self, external_userid: str) -> ContactDetail:
        """``externalcontact/get``: the customer's profile and all staff following it.

        WeCom pages ``follow_user`` beyond 500 followers with ``next_cursor``; the pages are
        fetched and joined here. Raises :class:`WeComError` (``not_found`` for 84061/40096).
        """
        cursor = ""
        detail: ContactDetail | None = None
        follows: list[FollowInfo] = []
        for _ in range(MAX_PAGES):
            params = {"external_userid": external_userid}
            if cursor:
                params["cursor"] = cursor
            payload = await self.client.call(self.corp_id, self.secret, "GET", API_GET_CONTACT, params=params)
            page = parse(ContactDetail, payload, API_GET_CONTACT)
            detail = detail or page
            follows.extend(page.follow_user)
            cursor = str(payload.get("next_cursor") or "")
            if not cursor:
                break
        assert detail is not None
        return detail.model_copy(update={"follow_user": follows})

    async def contacts_by_user(
        self, userids: Sequence[str], *, cursor: str = "", limit: int = BATCH_LIMIT_MAX
    ) -> ContactsPage:
        """One page of ``externalcontact/batch/get_by_user`` for up to 100 staff userids."""
        if not 1 <= len(userids) <= BATCH_LIMIT_MAX:
            raise ValueError(f"userids: 1 to {BATCH_LIMIT_MAX} staff per call")
        body: dict[str, Any] = {
            "userid_list": list(userids),
            "cursor": cursor,
            "limit": max(1, min(limit, BATCH_LIMIT_MAX)),
        }
        payload = await self.client.call(self.corp_id, self.secret, "POST", API_BATCH_BY_USER, body=body)
        return parse(ContactsPage, payload, API_BATCH_BY_USER)

    async def iter_contacts_by_user(
        self, userids: Sequence[str], *, limit: int = BATCH_LIMIT_MAX
    ) -> AsyncIterator[ContactByUser]:
        """Every record of ``batch/get_by_user`` for ``userids``, following ``next_cursor``."""
        cursor = ""
        for _ in range(MAX_PAGES):
            page = await self.contacts_by_user(userids, cursor=cursor, limit=limit)
            for item in page.external_contact_list:
                yield item
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor
        raise WeComTransportError("batch/get_by_user kept returning cursors", api=API_BATCH_BY_USER)

    async def list_external_userids(self, userid: str) -> list[str]:
        """``externalcontact/list``: the external_userids one staff member has as friends."""
        payload = await self.client.call(
            self.corp_id, self.secret, "GET", API_LIST_CONTACTS, params={"userid": userid}
        )
        ids = payload.get("external_userid") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise WeComTransportError(
                "externalcontact/list answered an unexpected shape", api=API_LIST_CONTACTS
            )
        return list(ids)


def _errcode(payload: dict[str, Any]) -> int:
    errcode = payload.get("errcode", 0)
    # WeCom sends integers; anything else is an answer we do not understand.
    return errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else SYSTEM_BUSY


class _HttpStatusError(WeComTransportError):
    def __init__(self, status: int, *, api: str) -> None:
        super().__init__(f"HTTP {status}", api=api)
        self.status = status


def _is_transient_http(exc: WeComTransportError) -> bool:
    # 5xx and 429 are the gateway's "try again"; a 4xx or a non-JSON 200 will not improve.
    return isinstance(exc, _HttpStatusError) and (exc.status >= 500 or exc.status == 429)


def _json_object(response: httpx.Response, api: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise _HttpStatusError(response.status_code, api=api)
    try:
        payload = response.json()
    except ValueError:
        raise WeComTransportError("answer is not JSON", api=api) from None
    if not isinstance(payload, dict):
        raise WeComTransportError("answer is not a JSON object", api=api)
    return payload
