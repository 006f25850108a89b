"""What benchmarks share: the infrastructure they run on and how figures are reported."""

from __future__ import annotations

import contextlib
import os
import tempfile
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
