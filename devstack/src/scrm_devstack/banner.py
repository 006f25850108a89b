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
    ready = asyncio.run(wait_ready(urls, timeout))
    token = issue_token(PlatformSettings(), tenant=tenant, role="operator", ttl_hours=12)
    # Plain lines: this runs under honcho, which prefixes every line and is rarely a terminal.
    lines = ["SCRM platform is ready", ""]
    lines += [
        f"  {name:<13} {url}   docs: {url}/docs   (ready after {ready[name]:.1f}s)"
        for name, url in urls.items()
    ]
    lines += [
        "",
        f"  Kafka broker  {bootstrap}   (friend-added, message-sent, order-placed, ..., dead-letter)",
        "",
        f"  Operator token for tenant '{tenant}' (12 h):",
        f"  {token}",
        "",
        f'  Try: curl -H "Authorization: Bearer <token>" {next(iter(urls.values()))}/v1/ingest/stats',
        "  Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
    asyncio.run(asyncio.Event().wait())


if __name__ == "__main__":
    app()
