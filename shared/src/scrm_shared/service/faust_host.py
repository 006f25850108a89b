"""faust-streaming as the host of a worker's stateful parts (DESIGN.md, "Stream processing").

faust keeps what it does well: app lifecycle, timers, agents on low-rate streams, small tables.
The hot path stays the shared aiokafka batch loop (faust's per-event Stream path runs at a few
percent of the raw consume rate on this kind of machine). A service builds its faust app with
:func:`create_faust_app`, registers timers/agents on it, and hands a builder to the worker runner,
which starts the app beside the batch loop and stops it before the database and producer close.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import faust

from scrm_shared.service.settings import ServiceSettings

log = logging.getLogger(__name__)


def create_faust_app(name: str, settings: ServiceSettings) -> faust.App:
    """A faust app for ``name`` configured for this platform.

    - the web server binds ``settings.host`` on ``settings.effective_faust_web_port`` (faust opens
      it even with web_enabled=False, so every worker gets its own port, never 0.0.0.0 by default);
    - tables live in memory with their changelog in Kafka (correctness lives in Postgres anyway);
    - no module autodiscovery (nothing is imported behind our back);
    - internal topics are created with the platform's partition count.
    """
    datadir = Path(settings.faust_datadir) / name
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{name}-faust",
        broker=f"kafka://{settings.kafka_bootstrap}",
        web_enabled=False,
        web_host=settings.host,
        web_port=settings.effective_faust_web_port,
        datadir=str(datadir),
        store="memory://",
        autodiscover=False,
        topic_replication_factor=1,
        topic_partitions=settings.topic_partitions,
        producer_acks=-1,
    )


def add_timer(
    app: faust.App, interval_seconds: float, tick: Callable[[], Awaitable[object]], *, name: str
) -> None:
    """Run ``tick`` every ``interval_seconds`` while the app runs; a failing tick is logged and the
    timer goes on (a transient database error must not stop time-driven work for good)."""

    async def timer() -> None:
        try:
            await tick()
        except Exception:
            log.exception("timer tick failed", extra={"timer": name})

    timer.__name__ = name
    timer.__qualname__ = name
    app.timer(interval_seconds, name=name)(timer)
