"""What the worker gets from tag_svc.processor: the processor's own consume loop, the schedule and
the backfill runner (tasks built with their defaults, and tests' clocks passed through)."""

from __future__ import annotations

import asyncio
from typing import Any

from scrm_shared.service.settings import ServiceSettings
from scrm_shared.service.worker import WorkerDeps
from tag_svc import processor
from tag_svc.processor import handler


def test_the_processor_consumes_every_topic_that_changes_a_profile():
    assert set(processor.TOPICS) == {
        "friend-added",
        "friend-deleted",
        "order-placed",
        "order-refunded",
        "message-sent",
        "contact-tagged",
        "contact-identified",
        "contact-erased",
    }
    assert processor.BACKGROUND == (
        processor.run_segment_processor,
        processor.run_segment_schedule,
        processor.run_segment_backfills,
    )


async def test_the_processor_task_runs_its_own_consumer_group(monkeypatch):
    built: dict[str, Any] = {}

    class FakeConsumer:
        def __init__(self, **kwargs: Any) -> None:
            built.update(kwargs)

        async def start(self) -> None:
            built["started"] = True

        async def run(self, stop: asyncio.Event) -> None:
            await stop.wait()

        async def stop(self) -> None:
            built["stopped"] = True

    monkeypatch.setattr(handler, "BatchConsumer", FakeConsumer)
    deps = WorkerDeps(
        pool=None, producer=None, settings=ServiceSettings(kafka_bootstrap="k:9092"), service="tag-svc"
    )  # type: ignore[arg-type]
    stop = asyncio.Event()
    stop.set()
    await processor.run_segment_processor(deps, stop)
    assert (built["group_id"], built["topics"], built["bootstrap"]) == (
        "tag-svc-segments",
        processor.TOPICS,
        "k:9092",
    )
    assert built["started"] and built["stopped"] and callable(built["handler"])
