"""Waits until every service answers ``/readyz`` 200, then prints how to use the platform.

Runs under honcho beside the services and stays up afterwards (honcho stops the whole stack when
any process exits).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from scrm_shared.auth import issue_token
from scrm_shared.config import PlatformSettings

app = typer.Typer(add_completion=False)


async def wait_ready(urls: dict[str, str], timeout: float) -> dict[str, float]:
    """Poll each ``<url>/readyz``; return seconds until each was ready. Raises on timeout."""
    started = time.monotonic()
    ready: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while len(ready) < len(urls):
            for name, url in urls.items():
                if name in ready:
                    continue
                with_error = False
                try:
                    resp = await client.get(f"{url}/readyz")
                except httpx.HTTPError:
                    with_error = True
                if not with_error and resp.status_code == 200:
                    ready[name] = time.monotonic() - started
            if time.monotonic() - started > timeout:
                missing = sorted(set(urls) - set(ready))
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(missing)}")
            await asyncio.sleep(0.5)
    return ready


@app.command()
def main(
    services: Annotated[str, typer.Option(help="name=url,name=url")],
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap address")],
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 120.0,
    tenant: Annotated[str, typer.Option(help="tenant of the printed token")] = "demo",
) -> None:
    urls = dict(item.split("=", 1) for item in services.split(","))
    console = Console()
    ready = asyncio.run(wait_ready(urls, timeout))
    table = Table(title="SCRM platform is ready", show_lines=False)
    table.add_column("service")
    table.add_column("API")
    table.add_column("docs")
    table.add_column("ready after")
    for name, url in urls.items():
        table.add_row(name, url, f"{url}/docs", f"{ready[name]:.1f}s")
    console.print(table)
    token = issue_token(PlatformSettings(), tenant=tenant, role="operator", ttl_hours=12)
    console.print(
        f"Kafka broker: [bold]{bootstrap}[/bold]  (topics: friend-added, message-sent, order-placed, ...)"
    )
    console.print(f"Operator token for tenant '{tenant}' (12 h):")
    console.print(token, soft_wrap=True)
    console.print(
        'Try: curl -H "Authorization: Bearer $TOKEN" ' + f"{next(iter(urls.values()))}/v1/ingest/stats"
    )
    console.print("Ctrl-C stops everything.")
    asyncio.run(asyncio.Event().wait())


if __name__ == "__main__":
    app()
