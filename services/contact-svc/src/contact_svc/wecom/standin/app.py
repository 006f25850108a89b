"""The stand-in's HTTP app: WeCom's routes, parameters and JSON answers (errcodes in HTTP 200)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contact_svc.wecom.standin.directory import Corp, Directory
from contact_svc.wecom.standin.errcodes import (
    ERRMSG,
    INVALID_CORPID,
    INVALID_PARAMETER,
    INVALID_SECRET,
    INVALID_USERID,
    NOT_EXTERNAL_CONTACT,
    OK,
)

API_PREFIX = "/cgi-bin"
BATCH_LIMIT_DEFAULT = 50
BATCH_LIMIT_MAX = 100


def _error(errcode: int) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")})


def _ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"errcode": OK, "errmsg": "ok", **fields})


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str) -> int | None:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return int(value) if kind == "o" and int(value) >= 0 else None
    except ValueError:
        return None


def build_app(directory: Directory | Callable[[], Directory]) -> Starlette:
    """The stand-in's ASGI app over ``directory`` (or over whatever the callable returns at
    each request, so that tests can swap the directory of a running server)."""
    current: Callable[[], Directory] = (lambda: directory) if isinstance(directory, Directory) else directory

    async def begin(request: Request, api: str) -> tuple[dict[str, Any], Response | None]:
        directory = current()
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return params, _error(INVALID_PARAMETER)
            params.update(body)
        directory.calls[api] += 1
        directory.requests.append((api, params))
        fault = directory.take_fault(api)
        if fault is not None:
            if fault.http_status is not None:
                return params, Response("upstream unavailable", status_code=fault.http_status)
            assert fault.errcode is not None
            return params, _error(fault.errcode)
        return params, None

    async def gettoken(request: Request) -> Response:
        directory = current()
        params, early = await begin(request, "gettoken")
        if early is not None:
            return early
        corp = directory.corps.get(str(params.get("corpid", "")))
        if corp is None:
            return _error(INVALID_CORPID)
        if params.get("corpsecret") != corp.secret:
            return _error(INVALID_SECRET)
        return _ok(access_token=directory.issue_token(corp.corp_id), expires_in=directory.token_ttl)

    async def authorised(request: Request, api: str) -> tuple[dict[str, Any], Corp | Response]:
        directory = current()
        params, early = await begin(request, api)
        if early is not None:
            return params, early
        corp = directory.corp_of_token(params.get("access_token"))
        if isinstance(corp, int):
            return params, _error(corp)
        return params, corp

    async def get_contact(request: Request) -> Response:
        directory = current()
        params, corp = await authorised(request, "externalcontact/get")
        if isinstance(corp, Response):
            return corp
        external_userid = str(params.get("external_userid", ""))
        if external_userid in directory.contact_errcodes:
            return _error(directory.contact_errcodes[external_userid])
        friend = corp.friends.get(external_userid)
        if friend is None:
            return _error(NOT_EXTERNAL_CONTACT)
        offset = _offset(str(params.get("cursor", "")))
        if offset is None:
            return _error(INVALID_PARAMETER)
        follows = list(friend.follows.values())
        page = follows[offset : offset + directory.follow_page]
        more = offset + directory.follow_page < len(follows)
        return _ok(
            external_contact=friend.as_external_contact(),
            follow_user=[f.as_follow_user() for f in page],
            next_cursor=_cursor(offset + directory.follow_page) if more else "",
        )

    async def batch_by_user(request: Request) -> Response:
        params, corp = await authorised(request, "externalcontact/batch/get_by_user")
        if isinstance(corp, Response):
            return corp
        userids = params.get("userid_list")
        if not isinstance(userids, list) or not 1 <= len(userids) <= BATCH_LIMIT_MAX:
            return _error(INVALID_PARAMETER)
        if any(u not in corp.staff for u in userids):
            return _error(INVALID_USERID)
        limit = params.get("limit") or BATCH_LIMIT_DEFAULT
        if not isinstance(limit, int) or limit < 1:
            return _error(INVALID_PARAMETER)
        limit = min(limit, BATCH_LIMIT_MAX)
        offset = _offset(str(params.get("cursor") or ""))
        if offset is None:
            return _error(INVALID_PARAMETER)
        records = [
            {"external_contact": friend.as_external_contact(), "follow_info": follow.as_follow_info()}
            for userid in userids
            for friend, follow in corp.friends_of(userid)
        ]
        page = records[offset : offset + limit]
        more = offset + limit < len(records)
        return _ok(external_contact_list=page, next_cursor=_cursor(offset + limit) if more else "")

    async def list_contacts(request: Request) -> Response:
        params, corp = await authorised(request, "externalcontact/list")
        if isinstance(corp, Response):
            return corp
        userid = str(params.get("userid", ""))
        if userid not in corp.staff:
            return _error(INVALID_USERID)
        return _ok(external_userid=[friend.external_userid for friend, _ in corp.friends_of(userid)])

    return Starlette(
        routes=[
            Route(f"{API_PREFIX}/gettoken", gettoken, methods=["GET"]),
            Route(f"{API_PREFIX}/externalcontact/get", get_contact, methods=["GET"]),
            Route(f"{API_PREFIX}/externalcontact/batch/get_by_user", batch_by_user, methods=["POST"]),
            Route(f"{API_PREFIX}/externalcontact/list", list_contacts, methods=["GET"]),
        ]
    )
