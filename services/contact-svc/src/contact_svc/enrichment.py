"""Enrichment of new contacts through WeCom's API (in progress)."""

from __future__ import annotations

import asyncio

from scrm_shared.service import WorkerDeps


async def run_enrichment(deps: WorkerDeps, stop: asyncio.Event) -> None:
    await stop.wait()
