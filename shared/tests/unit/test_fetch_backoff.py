"""The idle fetch back-off wraps aiokafka's fetch step once, pauses only after a fetch that
brought nothing, and passes the fetch step's answer through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.consumer import fetcher

import scrm_shared.kafka  # noqa: F401  (installs the back-off)
from scrm_shared.kafka import fetch_backoff


def test_installed_once_on_import():
    wrapped = fetcher.Fetcher._proc_fetch_request
    assert getattr(wrapped, "_scrm_idle_backoff", False)
    fetch_backoff.install()
    assert fetcher.Fetcher._proc_fetch_request is wrapped


@pytest.mark.parametrize("has_new_data", [True, False])
async def test_pauses_only_after_an_empty_fetch(monkeypatch, has_new_data):
    pauses: list[float] = []

    async def fake_fetch(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        return has_new_data

    async def record_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(fetcher.Fetcher, "_proc_fetch_request", fake_fetch)
    fetch_backoff.install(backoff=0.02)
    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    result = await fetcher.Fetcher._proc_fetch_request(object(), None, 1, None)
    assert result is has_new_data
    assert pauses == ([] if has_new_data else [0.02])
