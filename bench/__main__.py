"""Run every benchmark in ``bench.BENCHMARKS`` and print a table of figures."""

from __future__ import annotations

import asyncio
import importlib
import json
import platform
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import BENCHMARKS
from bench.harness import Figure, bench_context


async def main(selected: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    async with bench_context() as ctx:
        for name in BENCHMARKS:
            if selected and name.rsplit(".", 1)[-1] not in selected:
                continue
            module = importlib.import_module(name)
            results = await module.run(ctx)
            for fig in results:
                ctx.limits[fig.name] = fig.value
            figures.extend(results)
    return figures


def report(figures: list[Figure]) -> None:
    table = Table(
        title=f"SCRM benchmarks on {platform.node()} ({platform.machine()}, Python {platform.python_version()})"
    )
    for col in ("bench", "figure", "value", "unit", "goal"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for f in figures:
        table.add_row(f.bench, f.name, f"{f.value:,.2f}", f.unit, f.goal)
    Console(width=140).print(table)
    out = Path(".scrm/bench/results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([f.__dict__ for f in figures], indent=2, ensure_ascii=False) + "\n")
    print(f"figures written to {out}")


if __name__ == "__main__":
    report(asyncio.run(main(sys.argv[1:])))
