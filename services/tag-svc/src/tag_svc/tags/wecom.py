"""Pushing tag changes to WeCom: the adapters and the access-token provider.

WeCom's 编辑客户企业标签 API::

    POST {base}/externalcontact/mark_tag?access_token=ACCESS_TOKEN
    {"userid": "<staff userid>", "external_userid": "<customer>",
     "add_tag": ["et..."], "remove_tag": ["et..."]}

changes the corp tags one staff member's relation with the customer carries; it answers
``{"errcode": 0, "errmsg": "ok"}``. The token comes from ``GET {base}/gettoken?corpid=&corpsecret=``
(``access_token``, ``expires_in`` seconds).

The catalogue's own edits go to the corp tag library (管理企业标签), answered the same way::

    POST {base}/externalcontact/edit_corp_tag?access_token=...  {"id": "et...", "name": "..."}
    POST {base}/externalcontact/del_corp_tag?access_token=...   {"tag_id": [...], "group_id": [...]}

(``del_corp_tag``: either list may be left out, not both.)

``id`` is a tag's or a group's (``order`` may be sent too; we never do: see
:mod:`tag_svc.tags.edits`). A group whose last tag is deleted goes with it. WeCom lets an app
edit and delete only the corp tags it created (errcode 301002 otherwise).

The corp tag library (``externalcontact/get_corp_tag_list``, ``externalcontact/add_corp_tag``) is
what the catalogue sync needs (:class:`~tag_svc.tags.corp_tags.CorpTagAdapter`); both adapters
serve it too.

- :class:`WeComTagAdapter`: what the pusher needs; raises :class:`WeComTagError`.
- :class:`RecordingAdapter`: the local stand-in (default outside prod, and in tests): records
  every call and can be told to fail; holds each tenant's corp tag library in memory
  (:meth:`RecordingAdapter.library`, which tests seed; catalogue edits apply to it where it
  holds their ids).
- :class:`HttpAdapter`: WeCom's API over HTTP with a :class:`TokenProvider`
  (:class:`CredentialTokenProvider`: each tenant's corp id and secret from
  ``wecom_credentials``, tokens cached until shortly before they expire).

Requests carry the secret, the token and customer ids in query strings and bodies: nothing here
logs them, errors carry the errcode only, and httpx's request log line loses its query string.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import httpx

from scrm_shared.secrets import SealedError, SecretBox
from scrm_shared.telemetry.logs import hide_http_query_strings
from tag_svc.config import TagSettings
from tag_svc.tags.corp_tags import (
    CorpTagGroup,
    CorpTagLibrary,
    NewCorpTag,
    parse_corp_tag_group,
    parse_corp_tag_list,
)
from tag_svc.tags.corp_tags.library import UnknownCorpTag
from tag_svc.tags.store import wecom as store

__all__ = [
    "NO_CREDENTIALS",
    "RETRYABLE_ERRCODES",
    "UNKNOWN_CORP_TAG",
    "CredentialTokenProvider",
    "DelCorpTagCall",
    "EditCorpTagCall",
    "HttpAdapter",
    "MarkTagCall",
    "RecordingAdapter",
    "TokenProvider",
    "WeComTagAdapter",
    "WeComTagError",
    "open_adapter",
    "open_http_adapter",
]

log = logging.getLogger(__name__)

API_GETTOKEN = "gettoken"
API_MARK_TAG = "externalcontact/mark_tag"
API_GET_CORP_TAG_LIST = "externalcontact/get_corp_tag_list"
API_ADD_CORP_TAG = "externalcontact/add_corp_tag"
API_EDIT_CORP_TAG = "externalcontact/edit_corp_tag"
API_DEL_CORP_TAG = "externalcontact/del_corp_tag"

SYSTEM_BUSY = -1
RETRYABLE_ERRCODES: frozenset[int] = frozenset({SYSTEM_BUSY, 45009, 45033})
"""System busy, frequency limit, concurrency limit: the same call may succeed a little later."""
TOKEN_INVALID_ERRCODES: frozenset[int] = frozenset({40014, 42001})
"""Invalid or expired access_token: fetch a new one and repeat the call once."""
NO_CREDENTIALS = -2
"""Our own code: the tenant has not configured WeCom credentials (yet)."""
UNKNOWN_CORP_TAG = -3
"""Our own code: the stand-in has no such corp tag group (WeCom answers one of its own)."""


class WeComTagError(Exception):
    """A WeCom call (mark_tag, a corp tag API, or gettoken) failed. ``str()`` carries the errcode only: WeCom's errmsg may
    echo request parameters."""

    def __init__(self, errcode: int, *, retryable: bool, api: str = API_MARK_TAG) -> None:
        super().__init__(f"WeCom {api} errcode {errcode}")
        self.errcode = errcode
        self.retryable = retryable
        self.api = api


class WeComTagAdapter(Protocol):
    """Changes the corp tags a staff member's relation with a customer carries on WeCom, and
    renames and deletes corp tags and groups."""

    async def mark_tag(
        self,
        tenant_id: str,
        staff_id: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
    ) -> None:
        """Raises :class:`WeComTagError`."""
        ...

    async def edit_corp_tag(
        self, tenant_id: str, id: str, *, name: str | None = None, order: int | None = None
    ) -> None:
        """Rename (or reorder) the corp tag or group ``id``. Raises :class:`WeComTagError`."""
        ...

    async def del_corp_tag(
        self, tenant_id: str, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> None:
        """Delete corp tags and groups (at least one id). Raises :class:`WeComTagError`."""
        ...


@dataclass(frozen=True, slots=True)
class MarkTagCall:
    tenant_id: str
    staff_id: str
    external_userid: str
    add_tag: tuple[str, ...]
    remove_tag: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EditCorpTagCall:
    tenant_id: str
    id: str
    name: str | None
    order: int | None


@dataclass(frozen=True, slots=True)
class DelCorpTagCall:
    tenant_id: str
    tag_ids: tuple[str, ...]
    group_ids: tuple[str, ...]


@dataclass
class RecordingAdapter:
    """Stand-in for WeCom: records the calls (mark_tag in :attr:`calls`, catalogue edits in
    :attr:`corp_calls`; the last ``keep`` of each when set, so a long local run does not grow
    without bound); :meth:`fail_next` makes the next calls raise instead.

    Catalogue edits apply to the tenant's library where it holds the ids, and are recorded all the
    same where it does not: the worker's stand-in is not the API's (another process), so its
    library is empty, as mark_tag's tag ids are never checked either."""

    calls: list[MarkTagCall] = field(default_factory=list)
    corp_calls: list[EditCorpTagCall | DelCorpTagCall] = field(default_factory=list)
    keep: int | None = None
    libraries: dict[str, CorpTagLibrary] = field(default_factory=dict)
    _failures: deque[WeComTagError] = field(default_factory=deque)

    def library(self, tenant_id: str) -> CorpTagLibrary:
        """The tenant's corp tag library (empty until seeded)."""
        return self.libraries.setdefault(tenant_id, CorpTagLibrary())

    async def corp_tag_list(self, tenant_id: str) -> list[CorpTagGroup]:
        if self._failures:
            raise self._failures.popleft()
        return self.library(tenant_id).groups()

    async def add_corp_tag(
        self,
        tenant_id: str,
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int = 0,
        tags: Sequence[NewCorpTag] = (),
    ) -> CorpTagGroup:
        if self._failures:
            raise self._failures.popleft()
        try:
            return self.library(tenant_id).add_corp_tag(
                group_id=group_id, group_name=group_name, order=order, tags=tags
            )
        except UnknownCorpTag:
            raise WeComTagError(UNKNOWN_CORP_TAG, retryable=False, api=API_ADD_CORP_TAG) from None

    def fail_next(self, errcode: int = SYSTEM_BUSY, *, times: int = 1, retryable: bool = True) -> None:
        for _ in range(times):
            self._failures.append(WeComTagError(errcode, retryable=retryable))

    async def mark_tag(
        self,
        tenant_id: str,
        staff_id: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
    ) -> None:
        if self._failures:
            raise self._failures.popleft()
        self.calls.append(
            MarkTagCall(tenant_id, staff_id, external_userid, tuple(add_tag), tuple(remove_tag))
        )
        self._bound(self.calls)

    async def edit_corp_tag(
        self, tenant_id: str, id: str, *, name: str | None = None, order: int | None = None
    ) -> None:
        if self._failures:
            raise self._failures.popleft()
        with contextlib.suppress(UnknownCorpTag):
            self.library(tenant_id).edit_payload(id, name=name, order=order)
        self.corp_calls.append(EditCorpTagCall(tenant_id, id, name, order))
        self._bound(self.corp_calls)

    async def del_corp_tag(
        self, tenant_id: str, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> None:
        if self._failures:
            raise self._failures.popleft()
        library = self.library(tenant_id)
        for tag_id in tag_ids:
            with contextlib.suppress(UnknownCorpTag):
                library.del_payload(tag_ids=[tag_id])
        for group_id in group_ids:
            with contextlib.suppress(UnknownCorpTag):
                library.del_payload(group_ids=[group_id])
        self.corp_calls.append(DelCorpTagCall(tenant_id, tuple(tag_ids), tuple(group_ids)))
        self._bound(self.corp_calls)

    def _bound(self, calls: list[Any]) -> None:
        if self.keep is not None and len(calls) > self.keep:
            del calls[: -self.keep]


class TokenProvider(Protocol):
    """A tenant's WeCom access_token."""

    async def access_token(self, tenant_id: str) -> str:
        """Raises :class:`WeComTagError` when none can be had."""
        ...

    def invalidate(self, tenant_id: str, token: str) -> None:
        """Forget ``token`` (WeCom refused it)."""
        ...


@dataclass
class _Token:
    value: str
    expires_at: float


class CredentialTokenProvider:
    """Tokens from ``gettoken`` with each tenant's stored corp id and secret, cached per corp
    and secret (a rotated secret never reuses the old secret's token) until ``margin`` seconds
    before they expire."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        http: httpx.AsyncClient,
        api_base: str,
        *,
        margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        hide_http_query_strings()
        self.pool = pool
        self.box = box
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.margin = margin
        self.clock = clock
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._current: dict[str, tuple[str, str, str]] = {}

    async def access_token(self, tenant_id: str) -> str:
        try:
            creds = await store.get_credentials(self.pool, self.box, tenant_id)
        except SealedError as exc:
            # The key that sealed it is gone from SCRM_SECRETS_KEYS: as good as no credentials
            # (pushes wait and retry) until the key is back or an admin enters them again.
            log.error("wecom secret cannot be opened: %s", exc, extra={"tenant_id": tenant_id})
            creds = None
        if creds is None:
            raise WeComTagError(NO_CREDENTIALS, retryable=True, api=API_GETTOKEN)
        key = (tenant_id, creds.corp_id, hashlib.sha256(creds.secret.encode()).hexdigest()[:16])
        self._current[tenant_id] = key
        token = self._tokens.get(key)
        if token is not None and self.clock() < token.expires_at:
            return token.value
        payload = await _call(
            self.http,
            "GET",
            f"{self.api_base}/{API_GETTOKEN}",
            API_GETTOKEN,
            params={"corpid": creds.corp_id, "corpsecret": creds.secret},
        )
        errcode = _errcode(payload)
        if errcode != 0:
            raise WeComTagError(errcode, retryable=errcode in RETRYABLE_ERRCODES, api=API_GETTOKEN)
        value, expires_in = payload.get("access_token"), payload.get("expires_in")
        if not isinstance(value, str) or not value or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeComTagError(SYSTEM_BUSY, retryable=True, api=API_GETTOKEN)
        # Keep the margin, but never let it eat more than half of a short lifetime.
        lifetime = expires_in - min(self.margin, expires_in / 2)
        self._tokens[key] = _Token(value, self.clock() + lifetime)
        return value

    def invalidate(self, tenant_id: str, token: str) -> None:
        key = self._current.get(tenant_id)
        cached = self._tokens.get(key) if key else None
        # Only the token that failed: a concurrent caller may already hold a new one.
        if key is not None and cached is not None and cached.value == token:
            del self._tokens[key]


class HttpAdapter:
    """WeCom's tag APIs over HTTP; an invalid or expired token is replaced and the call repeated
    once.

    Transient failures (transport, HTTP 5xx, busy, rate limits) raise a retryable
    :class:`WeComTagError`: the pusher owns retries and backoff.
    """

    def __init__(self, http: httpx.AsyncClient, api_base: str, tokens: TokenProvider) -> None:
        hide_http_query_strings()
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.tokens = tokens

    async def mark_tag(
        self,
        tenant_id: str,
        staff_id: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
    ) -> None:
        body = {
            "userid": staff_id,
            "external_userid": external_userid,
            "add_tag": list(add_tag),
            "remove_tag": list(remove_tag),
        }
        await self._post(tenant_id, API_MARK_TAG, body)

    async def edit_corp_tag(
        self, tenant_id: str, id: str, *, name: str | None = None, order: int | None = None
    ) -> None:
        body: dict[str, Any] = {"id": id}
        if name is not None:
            body["name"] = name
        if order is not None:
            body["order"] = order
        await self._post(tenant_id, API_EDIT_CORP_TAG, body)

    async def del_corp_tag(
        self, tenant_id: str, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> None:
        if not tag_ids and not group_ids:
            raise ValueError("del_corp_tag needs a tag id or a group id")
        # Only the lists that have ids, as WeCom's own example and its clients send them (the
        # two may not both be empty; agentid is for old third-party suites only).
        body = {key: list(ids) for key, ids in (("tag_id", tag_ids), ("group_id", group_ids)) if ids}
        await self._post(tenant_id, API_DEL_CORP_TAG, body)

    async def corp_tag_list(self, tenant_id: str) -> list[CorpTagGroup]:
        """The whole library (no ``tag_id``/``group_id`` filter: WeCom then answers every group)."""
        payload = await self._post(tenant_id, API_GET_CORP_TAG_LIST, {})
        try:
            return parse_corp_tag_list(payload)
        except ValueError:
            raise WeComTagError(SYSTEM_BUSY, retryable=True, api=API_GET_CORP_TAG_LIST) from None

    async def add_corp_tag(
        self,
        tenant_id: str,
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int = 0,
        tags: Sequence[NewCorpTag] = (),
    ) -> CorpTagGroup:
        body: dict[str, Any] = {"tag": [{"name": t.name, "order": t.order} for t in tags]}
        if group_id is not None:
            body["group_id"] = group_id
        else:
            body["group_name"] = group_name
            body["order"] = order
        payload = await self._post(tenant_id, API_ADD_CORP_TAG, body)
        try:
            group = parse_corp_tag_group(payload.get("tag_group"))
        except ValueError:
            group = None
        if group is None:
            # Created (errcode 0) but unreadable: not retryable, a retry would add nothing new.
            raise WeComTagError(SYSTEM_BUSY, retryable=False, api=API_ADD_CORP_TAG)
        return group

    async def _post(self, tenant_id: str, api: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``api`` with the tenant's token; an invalid token is replaced once."""
        for attempt in (1, 2):
            token = await self.tokens.access_token(tenant_id)
            payload = await _call(
                self.http,
                "POST",
                f"{self.api_base}/{api}",
                api,
                params={"access_token": token},
                json=body,
            )
            errcode = _errcode(payload)
            if errcode == 0:
                return payload
            if errcode in TOKEN_INVALID_ERRCODES and attempt == 1:
                self.tokens.invalidate(tenant_id, token)
                continue
            raise WeComTagError(errcode, retryable=errcode in RETRYABLE_ERRCODES, api=api)
        raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def open_adapter(settings: TagSettings, pool: asyncpg.Pool) -> AsyncIterator[WeComTagAdapter]:
    """The adapter the settings ask for, open for the duration of the block."""
    if settings.effective_wecom_adapter == "recording":
        log.info("wecom tag pushes are recorded, not sent (SCRM_TAG_WECOM_ADAPTER=recording)")
        yield RecordingAdapter(keep=1000)
        return
    async with open_http_adapter(settings, pool) as adapter:
        yield adapter


@contextlib.asynccontextmanager
async def open_http_adapter(settings: TagSettings, pool: asyncpg.Pool) -> AsyncIterator[HttpAdapter]:
    """WeCom's API over HTTP with each tenant's stored credentials, for the duration of the block."""
    async with httpx.AsyncClient(timeout=settings.tag_wecom_timeout_seconds, follow_redirects=False) as http:
        tokens = CredentialTokenProvider(pool, settings.secret_box, http, settings.tag_wecom_api_base)
        yield HttpAdapter(http, settings.tag_wecom_api_base, tokens)


async def _call(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    api: str,
    *,
    params: dict[str, str],
    json: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        response = await http.request(method, url, params=params, json=json)
    except httpx.TransportError:
        raise WeComTagError(SYSTEM_BUSY, retryable=True, api=api) from None
    if response.status_code >= 500:
        raise WeComTagError(SYSTEM_BUSY, retryable=True, api=api)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict):
        raise WeComTagError(SYSTEM_BUSY, retryable=response.status_code == 429, api=api)
    return payload


def _errcode(payload: dict[str, Any]) -> int:
    errcode = payload.get("errcode", 0)
    return errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else SYSTEM_BUSY
