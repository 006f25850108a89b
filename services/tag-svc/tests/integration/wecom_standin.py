"""A WeCom stand-in on a real socket, for the HTTP adapter's tests (fixture ``wecom_server`` in
this folder's conftest).

It answers ``gettoken`` and the corp tag APIs (``get_corp_tag_list``, ``add_corp_tag``,
``edit_corp_tag``, ``del_corp_tag``) as WeCom does, over one :class:`CorpTagLibrary` that tests
seed and inspect. ``errcodes`` make it refuse the next calls of an API; ``requests`` logs every
call with its query string and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scrm_shared.testing.plugin import wait_for
from tag_svc.tags.corp_tags import CorpTagLibrary, NewCorpTag
from tag_svc.tags.corp_tags.library import UnknownCorpTag

SECRET = "wecom-standin-s3cret"


@dataclass
class WeComServer:
    """WeCom's token and corp tag APIs over HTTP on ``library``; a token is valid until the next
    ``gettoken`` (an older one is answered 42001, expired)."""

    library: CorpTagLibrary = field(default_factory=CorpTagLibrary)
    requests: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    errcodes: dict[str, list[int]] = field(default_factory=dict)
    tokens: int = 0
    base_url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/cgi-bin/gettoken", self._gettoken, methods=["GET"]),
                Route("/cgi-bin/externalcontact/{api}", self._api, methods=["POST"]),
            ]
        )

    async def _gettoken(self, request: Request) -> JSONResponse:
        self.requests.append(("gettoken", dict(request.query_params), None))
        if request.query_params.get("corpsecret") != SECRET:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid secret"})
        self.tokens += 1
        return JSONResponse({"errcode": 0, "access_token": f"tok-{self.tokens}", "expires_in": 7200})

    async def _api(self, request: Request) -> JSONResponse:
        name = request.path_params["api"]
        body = await request.json()
        self.requests.append((name, dict(request.query_params), body))
        if request.query_params.get("access_token") != f"tok-{self.tokens}":
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        pending = self.errcodes.get(name) or []
        if pending:
            return JSONResponse({"errcode": pending.pop(0), "errmsg": "refused"})
        try:
            return JSONResponse(self._answer(name, body))
        except UnknownCorpTag:
            return JSONResponse({"errcode": 40068, "errmsg": "invalid tagid"})

    def _answer(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        lib = self.library
        if name == "get_corp_tag_list":
            return lib.list_payload()
        if name == "add_corp_tag":
            return lib.add_payload(
                group_id=body.get("group_id"),
                group_name=body.get("group_name"),
                order=body.get("order", 0),
                tags=[NewCorpTag(t["name"], t.get("order", 0)) for t in body["tag"]],
            )
        if name == "edit_corp_tag":
            return lib.edit_payload(body["id"], name=body.get("name"), order=body.get("order"))
        if name == "del_corp_tag":
            return lib.del_payload(tag_ids=body.get("tag_id", []), group_ids=body.get("group_id", []))
        return {"errcode": 48002, "errmsg": "api forbidden"}


class _Server(uvicorn.Server):
    # The test process owns the signals.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(wecom: WeComServer) -> AsyncIterator[WeComServer]:
    """Serve ``wecom`` on a free local port (its ``base_url`` set) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = _Server(
        uvicorn.Config(wecom.app(), lifespan="off", access_log=False, log_config=None, ws="none")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def up() -> bool:
        # uvicorn offers no "started" event: poll its flag, failing fast if it died.
        assert not task.done(), "stand-in stopped during start-up"
        return bool(server.started)

    try:
        await wait_for(up, timeout=10, interval=0.01)
        wecom.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/cgi-bin"
        yield wecom
    finally:
        server.should_exit = True
        await task
        sock.close()
