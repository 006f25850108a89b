"""Outbox helpers that need no database: trace headers, the notify channel, the transaction guard."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider

from scrm_shared.db.outbox import NotInTransactionError, current_trace_headers, enqueue, notify_channel


def test_no_active_span_means_no_trace_headers() -> None:
    assert current_trace_headers() == []


def test_active_span_is_injected_as_a_w3c_traceparent() -> None:
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("write") as span:
        headers = dict(current_trace_headers())
    ctx = span.get_span_context()
    version, trace_id, span_id, flags = headers["traceparent"].decode().split("-")
    assert (version, trace_id, span_id, flags) == (
        "00",
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        format(ctx.trace_flags, "02x"),
    )


def test_notify_channel_matches_the_trigger_and_fits_an_identifier() -> None:
    assert notify_channel("contact") == "outbox_contact"
    long = "s" * 63
    assert notify_channel(long) == ("outbox_" + long)[:63]
    with pytest.raises(ValueError, match="invalid schema name"):
        notify_channel("Contact; --")


class AutocommitConnection:
    """A connection outside any transaction; any statement would be a test failure."""

    def is_in_transaction(self) -> bool:
        return False

    async def execute(self, *args: object) -> str:
        raise AssertionError("nothing may be written outside a transaction")


async def test_enqueue_refuses_a_connection_outside_a_transaction() -> None:
    with pytest.raises(NotInTransactionError, match="inside the transaction"):
        await enqueue(
            AutocommitConnection(),  # type: ignore[arg-type]
            topic="contact-updated",
            key=b"acme:c1",
            value=b"{}",
            event_id=uuid.uuid4(),
        )
