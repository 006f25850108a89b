"""Idle fetch back-off: an empty fetch answer waits a moment before the next fetch.

A Kafka broker holds a fetch at the end of the log until data arrives or ``fetch_max_wait_ms``
passes (long polling), so an idle aiokafka consumer costs nothing. The embedded broker we run
locally, in tests and benchmarks (noida-db) answers an empty fetch at once, and aiokafka's
fetcher then asks again at once: every idle consumer spins a core (measured: ~90% CPU for one
idle consumer), and a busy processor shares its core with its own fetcher spinning on drained
partitions.

:func:`install` wraps aiokafka's fetch step so that a fetch that brought no new records is
followed by a short pause (``IDLE_BACKOFF_S``). Against a real broker an empty answer already
took ``fetch_max_wait_ms`` (500 ms by default), so the pause changes nothing there; locally it
turns a busy loop into ~50 fetches a second, at the cost of at most that pause of latency for
the first record after an idle spell. Applied once, to every consumer of the process (faust's
included), by importing :mod:`scrm_shared.kafka`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from aiokafka.consumer import fetcher as _fetcher

__all__ = ["IDLE_BACKOFF_S", "install"]

IDLE_BACKOFF_S = 0.02

_MARK = "_scrm_idle_backoff"


def install(backoff: float = IDLE_BACKOFF_S) -> None:
    """Wrap ``Fetcher._proc_fetch_request`` (idempotent)."""
    original = _fetcher.Fetcher._proc_fetch_request
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        has_new_data: bool = await original(self, assignment, node_id, request)
        if not has_new_data:
            # Closing or unassigning cancels pending fetches; like aiokafka's own fetch step, a
            # cancelled one just ends (its result is of no interest any more).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(backoff)
        return has_new_data

    setattr(proc_fetch_request, _MARK, True)
    _fetcher.Fetcher._proc_fetch_request = proc_fetch_request  # type: ignore[method-assign]
