"""What benchmarks share: the infrastructure they run on and how figures are reported."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from scrm_shared.testing.infra import EmbeddedBroker, embedded_postgres_dsn


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``name`` = ``value`` ``unit`` (``goal`` is informative)."""

    bench: str
    name: str
    value: float
    unit: str
    goal: str = ""


@dataclass
class BenchContext:
    bootstrap: str
    dsn: str
    workdir: Path
    # Figures of earlier benchmarks in the same run, e.g. limits["consume_validate_per_s"].
    limits: dict[str, float] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def bench_context() -> AsyncIterator[BenchContext]:
    """A fresh broker on a free port and PostgreSQL ($DATABASE_URL, else embedded)."""
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedBroker(workdir / "kafka")
        broker.start()
        try:
            dsn = os.environ.get("SCRM_DATABASE_URL") or os.environ.get("DATABASE_URL")
            if dsn:
                yield BenchContext(bootstrap=broker.bootstrap, dsn=dsn, workdir=workdir)
            else:
                with embedded_postgres_dsn(workdir / "pg") as dsn:
                    yield BenchContext(bootstrap=broker.bootstrap, dsn=dsn, workdir=workdir)
        finally:
            broker.stop()


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds spent over a measured stretch, by who spent them, and the machine's share busy."""

    wall: float
    this_process: float
    postgres: float
    broker: float
    machine_busy: float  # CPU seconds of every core, idle and iowait excluded
    cores: int

    def per(self, n: int) -> dict[str, float]:
        """Microseconds of CPU per item (``n`` items processed over the stretch)."""
        return {
            "this_process": 1e6 * self.this_process / n,
            "postgres": 1e6 * self.postgres / n,
            "broker": 1e6 * self.broker / n,
            "machine": 1e6 * self.machine_busy / n,
        }

    @property
    def busy_share(self) -> float:
        """How much of all the cores was busy, 0-1."""
        return self.machine_busy / (self.wall * self.cores) if self.wall > 0 else 0.0


class CpuMeter:
    """Measures where the CPU goes while a benchmark runs on one machine: this process, every
    PostgreSQL process (server and backends, when PostgreSQL runs here) and the Kafka broker
    (``noida-db``). Processes that end within the stretch are missed, so run it over steady
    work (a pool's backends stay)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._start: tuple[float, float, float, float, float] | None = None

    def _sample(self) -> tuple[float, float, float, float, float]:
        psutil = self._psutil
        me = psutil.Process()
        own = sum(me.cpu_times()[:2])
        pg = broker = 0.0
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                name = proc.info["name"] or ""
                cmd = " ".join(proc.info["cmdline"] or ())
                if name == "postgres" or name.startswith("postgres:"):
                    pg += sum(proc.cpu_times()[:2])
                elif "noida" in cmd:
                    broker += sum(proc.cpu_times()[:2])
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        return time.perf_counter(), own, pg, broker, busy

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> CpuSplit:
        assert self._start is not None, "start() first"
        end = self._sample()
        d = [b - a for a, b in zip(self._start, end, strict=True)]
        return CpuSplit(d[0], d[1], d[2], d[3], d[4], self._psutil.cpu_count() or 1)
