"""A local stand-in of WeCom's server API (WeCom itself is unreachable from here).

It speaks the same HTTP as ``https://qyapi.weixin.qq.com/cgi-bin`` for the calls contact-svc
makes (``gettoken``, ``externalcontact/get``, ``externalcontact/batch/get_by_user``,
``externalcontact/list``): same parameters, same JSON fields, WeCom's errcodes in HTTP 200
answers. The data comes from an in-memory :class:`Directory` of corps, staff and customers;
tests can make the next calls of an API fail with an errcode (:meth:`Directory.fail_next`) or
one contact fail always (:attr:`Directory.contact_errcodes`), expire every token (:meth:`Directory.expire_tokens`) and count calls (:attr:`Directory.calls`).

In tests, over a real socket in the test's event loop::

    directory = Directory()
    corp = directory.add_corp("ww-acme", "s3cret")
    corp.add_friend("wm-1", "guide-1", name="...", createtime=1714528800, state="store-sh-012")
    async with StandInServer(directory) as wecom:
        settings = ContactSettings(wecom_api_base=wecom.base_url, ...)

As a process (e.g. for ``make run``), with a JSON file of corps::

    python -m contact_svc.wecom.standin --port 18088 --directory corps.json

``corps.json``: ``{"corps": [{"corp_id", "secret", "staff": [...], "contacts": [{"external_userid",
"name", "avatar", "gender", "unionid", "follows": [{"userid", "createtime", "state", ...}]}]}]}``.
Point ``SCRM_WECOM_API_BASE`` at ``http://127.0.0.1:18088/cgi-bin``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Corp", "Directory", "Follow", "Friend", "StandInServer", "build_app"]

API_PREFIX = "/cgi-bin"
TOKEN_TTL = 7200  # WeCom's access_token lives 7200 s
FOLLOW_PAGE = 500  # externalcontact/get pages follow_user beyond 500 followers
BATCH_LIMIT_DEFAULT = 50
BATCH_LIMIT_MAX = 100

# errcodes (WeCom's global return codes)
OK = 0
INVALID_SECRET = 40001
INVALID_CORPID = 40013
INVALID_TOKEN = 40014
INVALID_PARAMETER = 40058
MISSING_TOKEN = 41001
EXPIRED_TOKEN = 42001
INVALID_USERID = 60111
NOT_EXTERNAL_CONTACT = 84061
_ERRMSG = {
    OK: "ok",
    -1: "system busy",
    INVALID_SECRET: "invalid credential",
    INVALID_CORPID: "invalid corpid",
    INVALID_TOKEN: "invalid access_token",
    INVALID_PARAMETER: "invalid parameter",
    MISSING_TOKEN: "access_token missing",
    EXPIRED_TOKEN: "access_token expired",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    INVALID_USERID: "invalid userid",
    NOT_EXTERNAL_CONTACT: "not external contact",
}


# ---------------------------------------------------------------------------------------------
# The directory
# ---------------------------------------------------------------------------------------------


@dataclass
class Follow:
    """One staff member's relation to a customer (WeCom's ``follow_user`` / ``follow_info``)."""

    userid: str
    createtime: int
    state: str = ""
    remark: str = ""
    description: str = ""
    add_way: int = 1
    tag_ids: list[str] = field(default_factory=list)

    def as_follow_user(self) -> dict[str, Any]:
        out = self._common()
        out["tags"] = [{"group_name": "", "tag_name": "", "type": 1, "tag_id": t} for t in self.tag_ids]
        return out

    def as_follow_info(self) -> dict[str, Any]:
        out = self._common()
        out["tag_id"] = list(self.tag_ids)
        return out

    def _common(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "userid": self.userid,
            "remark": self.remark,
            "description": self.description,
            "createtime": self.createtime,
            "remark_corp_name": "",
            "remark_mobiles": [],
            "add_way": self.add_way,
            "oper_userid": self.userid,
        }
        # WeCom sends state only when the friend came through a channel QR code.
        if self.state:
            out["state"] = self.state
        return out


@dataclass
class Friend:
    """A customer (external contact) of the corp and the staff members it is friends with."""

    external_userid: str
    name: str = ""
    avatar: str = ""
    gender: int = 0
    unionid: str | None = None
    type: int = 1
    follows: dict[str, Follow] = field(default_factory=dict)

    def as_external_contact(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "external_userid": self.external_userid,
            "name": self.name,
            "type": self.type,
            "avatar": self.avatar,
            "gender": self.gender,
        }
        # unionid is present only when the corp has bound a WeChat developer account.
        if self.unionid:
            out["unionid"] = self.unionid
        return out


@dataclass
class Corp:
    """A WeCom corp: its app secret, staff userids and customers."""

    corp_id: str
    secret: str
    staff: list[str] = field(default_factory=list)
    friends: dict[str, Friend] = field(default_factory=dict)

    def add_staff(self, *userids: str) -> None:
        for userid in userids:
            if userid not in self.staff:
                self.staff.append(userid)

    def add_friend(
        self,
        external_userid: str,
        staff: str,
        *,
        createtime: int | None = None,
        state: str = "",
        name: str | None = None,
        avatar: str | None = None,
        gender: int | None = None,
        unionid: str | None = None,
        remark: str = "",
        add_way: int = 1,
    ) -> Friend:
        """Make ``external_userid`` a friend of ``staff`` (creating either when new)."""
        self.add_staff(staff)
        friend = self.friends.setdefault(external_userid, Friend(external_userid))
        if name is not None:
            friend.name = name
        if avatar is not None:
            friend.avatar = avatar
        if gender is not None:
            friend.gender = gender
        if unionid is not None:
            friend.unionid = unionid
        friend.follows[staff] = Follow(
            userid=staff,
            createtime=int(time.time()) if createtime is None else createtime,
            state=state,
            remark=remark,
            add_way=add_way,
        )
        return friend

    def remove_friend(self, external_userid: str, staff: str) -> None:
        """End the friendship; the customer stays known to the corp only while someone follows it."""
        friend = self.friends.get(external_userid)
        if friend is None:
            return
        friend.follows.pop(staff, None)
        if not friend.follows:
            del self.friends[external_userid]

    def friends_of(self, userid: str) -> Iterator[tuple[Friend, Follow]]:
        for friend in self.friends.values():
            follow = friend.follows.get(userid)
            if follow is not None:
                yield friend, follow


@dataclass
class _Fault:
    errcode: int | None
    http_status: int | None


class Directory:
    """Everything the stand-in knows, plus fault injection and call counting for tests."""

    def __init__(self, *, token_ttl: int = TOKEN_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.corps: dict[str, Corp] = {}
        self.token_ttl = token_ttl
        self.follow_page = FOLLOW_PAGE
        self.calls: Counter[str] = Counter()
        """Requests per API name (``"gettoken"``, ``"externalcontact/get"``, ...)."""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every request: API name and its parameters (query plus JSON body), in order."""
        self.contact_errcodes: dict[str, int] = {}
        """external_userid -> errcode that ``externalcontact/get`` of it answers, every time."""
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._faults: dict[str, deque[_Fault]] = {}

    def add_corp(self, corp_id: str, secret: str) -> Corp:
        corp = self.corps.setdefault(corp_id, Corp(corp_id, secret))
        corp.secret = secret
        return corp

    def fail_next(
        self, api: str, errcode: int | None = None, *, times: int = 1, http_status: int | None = None
    ) -> None:
        """Answer the next ``times`` calls of ``api`` with ``errcode`` (or an HTTP error status)."""
        if (errcode is None) == (http_status is None):
            raise ValueError("give either errcode or http_status")
        faults = self._faults.setdefault(api, deque())
        faults.extend(_Fault(errcode, http_status) for _ in range(times))

    def clear_faults(self) -> None:
        """Forget the errcodes queued by :meth:`fail_next`."""
        self._faults.clear()

    def expire_tokens(self) -> None:
        """Make every token issued so far answer 42001 (expired)."""
        self._tokens = {token: (corp_id, float("-inf")) for token, (corp_id, _) in self._tokens.items()}

    def issue_token(self, corp_id: str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = (corp_id, self._clock() + self.token_ttl)
        return token

    def corp_of_token(self, token: str | None) -> Corp | int:
        """The corp a token belongs to, or the errcode WeCom would answer."""
        if not token:
            return MISSING_TOKEN
        entry = self._tokens.get(token)
        if entry is None:
            return INVALID_TOKEN
        corp_id, expires_at = entry
        if self._clock() >= expires_at:
            return EXPIRED_TOKEN
        return self.corps[corp_id]

    def take_fault(self, api: str) -> _Fault | None:
        faults = self._faults.get(api)
        return faults.popleft() if faults else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Directory:
        """A directory from ``{"corps": [...]}`` (see the module docstring)."""
        directory = cls()
        for c in data.get("corps", []):
            corp = directory.add_corp(c["corp_id"], c["secret"])
            corp.add_staff(*c.get("staff", []))
            for f in c.get("contacts", []):
                for follow in f.get("follows", []):
                    corp.add_friend(
                        f["external_userid"],
                        follow["userid"],
                        createtime=follow.get("createtime"),
                        state=follow.get("state", ""),
                        remark=follow.get("remark", ""),
                        add_way=follow.get("add_way", 1),
                        name=f.get("name"),
                        avatar=f.get("avatar"),
                        gender=f.get("gender"),
                        unionid=f.get("unionid"),
                    )
        return directory


# ---------------------------------------------------------------------------------------------
# The HTTP app
# ---------------------------------------------------------------------------------------------


def _error(errcode: int) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": _ERRMSG.get(errcode, "error")})


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


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    # Inside a test run or another service's loop the host process owns SIGINT/SIGTERM.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StandInServer:
    """The stand-in served by uvicorn in the current event loop, on 127.0.0.1 and a free port."""

    def __init__(self, directory: Directory | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory or Directory()
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        config = uvicorn.Config(
            build_app(lambda: self.directory),
            lifespan="off",
            access_log=False,  # the query strings carry secrets and tokens
            log_config=None,
            ws="none",
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """What ``SCRM_WECOM_API_BASE`` should be (the port is known once started)."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    async def start(self, timeout: float = 10.0) -> None:
        """Serve in a task of the running loop; returns once uvicorn accepts connections."""
        # Binding here (port 0: the kernel picks a free one) leaves no window in which another
        # process could take the port between choosing and serving it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted sockets inherit it: uvicorn's h11 writes head and body apart, and without
            # it every answer waits out the client's delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(timeout):
            # uvicorn offers no "started" event: poll its flag, and fail fast if it died.
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("stand-in server stopped during start-up")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m contact_svc.wecom.standin``: serve the stand-in until interrupted."""
    parser = argparse.ArgumentParser(description="Local stand-in of WeCom's server API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--directory", type=Path, help="JSON file of corps, staff and contacts")
    args = parser.parse_args(argv)
    directory = Directory.from_json(json.loads(args.directory.read_text())) if args.directory else Directory()
    uvicorn.run(build_app(directory), host=args.host, port=args.port, access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
