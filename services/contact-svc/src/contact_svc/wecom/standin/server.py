"""The stand-in served by uvicorn: in the running event loop for tests, or as a process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from contact_svc.wecom.standin.app import API_PREFIX, build_app
from contact_svc.wecom.standin.directory import Directory


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
    parser = argparse.ArgumentParser(
        prog="python -m contact_svc.wecom.standin", description="Local stand-in of WeCom's server API"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--directory", type=Path, help="JSON file of corps, staff and contacts")
    args = parser.parse_args(argv)
    directory = Directory.from_json(json.loads(args.directory.read_text())) if args.directory else Directory()
    uvicorn.run(build_app(directory), host=args.host, port=args.port, access_log=False, lifespan="off")
