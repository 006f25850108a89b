"""The typed batch consume loop every worker runs.

For each ``getmany`` batch the loop:

1. decodes and validates every record against the topic's contract (``parse_event``);
2. sends what is undecodable or invalid to ``dead-letter`` (original bytes base64, headers,
   topic/partition/offset, the reason) and waits for the broker's ack;
3. hands the valid events to the handler in one call; the handler applies them durably
   (normally one Postgres transaction that also records the event_ids it consumed);
4. commits the offsets only after the handler returned.

A crash anywhere before step 4 redelivers the batch: handlers are idempotent on event_id, so
redelivery never double counts. A handler that fails on the data (not on an outage) is retried
event by event, and the events that still fail are dead-lettered with kind ``handler`` so one bad
event never blocks the good ones behind it. Outages (database or broker unreachable) are retried
with backoff, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Link

from scrm_shared.events import DeadLetter, DeadLetterEvent, Event, InvalidEvent, new_event, parse_event
from scrm_shared.telemetry import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_LAG,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    extract_context,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

DEAD_LETTER_TOPIC = "dead-letter"

# Errors that mean "something we depend on is down", retried rather than dead-lettered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    KafkaError,
)


@dataclass(frozen=True, slots=True)
class Consumed:
    """A valid event with where it came from.

    ``timestamp_ms``: the record's Kafka timestamp (milliseconds since the epoch: when the
    producer sent it, or when the broker appended it, by the topic's setting), ``None`` when the
    event did not come from Kafka. What a handler measures its delay from.
    """

    event: Event
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None


Handler = Callable[[Sequence[Consumed]], Awaitable[None]]


@dataclass
class BatchStats:
    consumed: int = 0
    dead_lettered: int = 0


class BatchConsumer:
    """Consume ``topics`` as consumer group ``group_id``, validating, dead-lettering and batching.

    ``producer`` (started by the caller) is used for dead-letter records. Use :meth:`run` in a
    worker, or :meth:`poll_once` in tests to drive one batch at a time.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        producer: AIOKafkaProducer,
        service: str,
        dead_letter_topic: str = DEAD_LETTER_TOPIC,
        topic_contracts: dict[str, str] | None = None,
        max_records: int = 2000,
        poll_timeout_ms: int = 200,
        auto_offset_reset: str = "earliest",
        retry_backoff: tuple[float, float] = (0.2, 10.0),
        consumer: AIOKafkaConsumer | None = None,
    ) -> None:
        self.group_id = group_id
        self.topics = list(topics)
        self.handler = handler
        self.producer = producer
        self.service = service
        self.dead_letter_topic = dead_letter_topic
        # Which contract validates a topic (defaults to the topic's own name); lets tests use
        # uuid-named topics that carry e.g. order-placed events.
        self.topic_contracts = topic_contracts or {}
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_backoff = retry_backoff
        self.consumer = consumer or AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            isolation_level="read_committed",
            max_poll_records=max_records,
        )
        self.stats = BatchStats()
        self._started = False
        self._lag_reported: set[tuple[str, int]] = set()

    async def start(self) -> None:
        await self.consumer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self.consumer.stop()
            self._started = False

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and process batches until ``stop`` is set."""
        while not stop.is_set():
            await self.poll_once()

    async def poll_once(self) -> int:
        """Fetch one batch, process it, commit it. Returns how many records it covered."""
        batch = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        if not batch:
            await self._update_lag()
            return 0
        started = time.perf_counter()
        records = [r for tp in sorted(batch, key=lambda t: (t.topic, t.partition)) for r in batch[tp]]
        await self.process(records)
        await self._commit(batch)
        CONSUMER_BATCH_SECONDS.labels(service=self.service).observe(time.perf_counter() - started)
        await self._update_lag()
        return len(records)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Validate, dead-letter and hand over one batch (without committing)."""
        valid: list[Consumed] = []
        rejects: list[tuple[ConsumerRecord, InvalidEvent]] = []
        for record in records:
            contract = self.topic_contracts.get(record.topic, record.topic)
            try:
                event = parse_event(contract, record.value or b"")
            except InvalidEvent as exc:
                rejects.append((record, exc))
                continue
            valid.append(
                Consumed(
                    event=event,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    headers=tuple(record.headers or ()),
                    timestamp_ms=record.timestamp,
                )
            )
        if rejects:
            await self._dead_letter([(r, e.kind, e.reason, e.errors) for r, e in rejects])
        if valid:
            links = self._links(valid)
            with tracer.start_as_current_span(
                f"{self.service} process", links=links, kind=trace.SpanKind.CONSUMER
            ) as span:
                span.set_attribute("messaging.batch.message_count", len(valid))
                span.set_attribute("messaging.consumer.group.name", self.group_id)
                await self._handle(valid)
        for c in valid:
            EVENTS_CONSUMED.labels(service=self.service, topic=c.topic).inc()
        self.stats.consumed += len(valid)

    async def _handle(self, valid: list[Consumed]) -> None:
        try:
            await self._with_outage_retry(lambda: self.handler(valid))
            return
        except Exception as exc:  # a data fault, not an outage: isolate the bad events below
            log.warning(
                "batch handler failed, retrying event by event",
                extra={"topic_count": len(valid), "error_type": type(exc).__name__},
            )
        failed: list[tuple[Consumed, Exception]] = []
        for c in valid:
            try:
                await self._with_outage_retry(lambda c=c: self.handler([c]))
            except Exception as exc:  # dead-lettered below with its reason
                failed.append((c, exc))
        if failed:
            await self._dead_letter(
                [
                    (
                        _AsRecord(c),
                        "handler",
                        f"handler failed: {type(exc).__name__}: {_safe_message(exc)}",
                        [],
                    )
                    for c, exc in failed
                ]
            )

    async def _with_outage_retry(self, call: Callable[[], Awaitable[None]]) -> None:
        delay, ceiling = self.retry_backoff
        while True:
            try:
                await call()
                return
            except TRANSIENT_ERRORS as exc:
                EVENTS_FAILED.labels(service=self.service, topic="*", reason=type(exc).__name__).inc()
                log.warning(
                    "dependency unavailable, retrying batch",
                    extra={"error_type": type(exc).__name__, "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, ceiling)

    async def _dead_letter(self, items: list[tuple[Any, str, str, list[dict[str, Any]]]]) -> None:
        futures = []
        for record, kind, reason, errors in items:
            dead = new_event(
                DeadLetterEvent,
                tenant_id=_tenant_of(record.key),
                source=self.service,
                data=DeadLetter(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key_b64=_b64(record.key),
                    value_b64=_b64(record.value) or "",
                    headers=[{"key": k, "value_b64": _b64(v) or ""} for k, v in (record.headers or ())],
                    error=reason,
                    error_kind=kind,
                    errors=errors,
                    consumer_group=self.group_id,
                    failed_at=datetime.now(UTC),
                ),
            )
            futures.append(
                await self.producer.send(
                    self.dead_letter_topic,
                    value=dead.to_bytes(),
                    key=dead.key(),
                    headers=list(record.headers or ()),
                )
            )
            EVENTS_DEAD_LETTERED.labels(service=self.service, topic=record.topic, kind=kind).inc()
            log.warning(
                "event dead-lettered",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "kind": kind,
                    "reason": reason,
                },
            )
        # Offsets are committed only once every dead-letter record is acknowledged.
        await asyncio.gather(*futures)
        self.stats.dead_lettered += len(items)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        await self.consumer.commit(offsets)

    async def _update_lag(self) -> None:
        assigned = self.consumer.assignment()
        # A rebalance took these partitions away: their lag is another member's to report now.
        for topic, partition in self._lag_reported - {(tp.topic, tp.partition) for tp in assigned}:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.service, topic, str(partition))
            self._lag_reported.discard((topic, partition))
        for tp in assigned:
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
            except Exception:  # noqa: S112 - lag is best effort, it never fails the loop
                continue
            CONSUMER_LAG.labels(service=self.service, topic=tp.topic, partition=str(tp.partition)).set(
                max(high - position, 0)
            )
            self._lag_reported.add((tp.topic, tp.partition))

    def _links(self, valid: list[Consumed]) -> list[Link]:
        links: list[Link] = []
        for c in valid[:32]:  # span links are for navigation; a bounded sample is enough
            ctx = trace.get_current_span(extract_context(c.headers)).get_span_context()
            if ctx.is_valid:
                links.append(Link(ctx))
        return links


@dataclass(frozen=True, slots=True)
class _AsRecord:
    """The original-record view of a Consumed event, for dead-lettering handler failures."""

    consumed: Consumed

    @property
    def topic(self) -> str:
        return self.consumed.topic

    @property
    def partition(self) -> int:
        return self.consumed.partition

    @property
    def offset(self) -> int:
        return self.consumed.offset

    @property
    def key(self) -> bytes | None:
        return self.consumed.key

    @property
    def value(self) -> bytes:
        return self.consumed.event.to_bytes()

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return self.consumed.headers


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _tenant_of(key: bytes | None) -> str:
    """Best-effort tenant of a rejected record, from its ``<tenant>:<subject>`` key."""
    if key:
        head = key.split(b":", 1)[0].decode("utf-8", "replace").strip().lower()
        if head and all(ch.isalnum() or ch in "-_" for ch in head) and len(head) <= 63:
            return head
    return "unknown"


def _safe_message(exc: Exception) -> str:
    # Exception text may quote data; keep it short, the full story is in the trace and logs.
    return str(exc)[:300]
