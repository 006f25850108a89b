"""OpenTelemetry traces: the provider, the official instrumentations, Kafka trace context.

A trace follows a request from HTTP (FastAPI instrumentation) through Postgres (asyncpg) into a
Kafka record (``traceparent`` header, W3C trace context) and on into the consumer that handles it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = [
    "NOT_TRACED_URLS",
    "build_tracer_provider",
    "extract_context",
    "get_tracer",
    "inject_headers",
    "instrument_app",
    "instrument_libraries",
]

log = logging.getLogger(__name__)

NOT_TRACED_URLS = "/healthz,/readyz,/metrics"
"""Probe and scrape endpoints: traced, they would only bury the interesting spans."""

KafkaHeaders = Sequence[tuple[str, bytes | str | None]]


def build_tracer_provider(service_name: str, *, env: str, otlp_endpoint: str | None) -> TracerProvider:
    """A provider whose spans carry the service name; exported over OTLP/HTTP when an endpoint is set.

    ``otlp_endpoint`` is the collector's base URL (``http://otel-collector:4318``) or the full
    traces URL (``.../v1/traces``).
    """
    resource = Resource.create(
        {SERVICE_NAME: service_name, "service.namespace": "scrm", "deployment.environment.name": env}
    )
    provider = TracerProvider(resource=resource)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint))))
    return provider


def instrument_app(app: FastAPI, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every request of ``app`` (official FastAPI instrumentation); never raises.

    Call it when building the app; spans go to the global provider installed later by
    :func:`scrm_shared.telemetry.setup` unless ``tracer_provider`` is given (tests).
    """
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls=NOT_TRACED_URLS,
            tracer_provider=tracer_provider,
            # One span per request; per-message ASGI send/receive spans only add noise.
            exclude_spans=["receive", "send"],
        )
    except Exception:
        log.warning("FastAPI instrumentation failed; serving without HTTP spans", exc_info=True)


def instrument_libraries() -> None:
    """Trace asyncpg queries and aiokafka sends/polls (process-wide); each failure is only logged."""
    try:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        instrumentor: Any = AsyncPGInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception:
        log.warning("asyncpg instrumentation failed; continuing without database spans", exc_info=True)
    try:
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

        instrumentor = AIOKafkaInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception:
        log.warning("aiokafka instrumentation failed; continuing without Kafka client spans", exc_info=True)


def get_tracer(name: str) -> trace.Tracer:
    """The tracer for module ``name`` (a no-op until :func:`scrm_shared.telemetry.setup` ran)."""
    return trace.get_tracer(name)


def inject_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers carrying ``context`` (default: the current one), e.g. ``[("traceparent", b"00-...")]``.

    Empty when there is no valid span to propagate.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return [(key, value.encode("ascii")) for key, value in carrier.items()]


def extract_context(headers: KafkaHeaders | Iterable[tuple[str, Any]] | None) -> Context:
    """The OpenTelemetry context a Kafka record's headers carry (an empty one if none).

    When a header appears twice (the aiokafka instrumentation appends its own ``traceparent``
    to headers that already had one), the first wins: it is the producer's original context.
    """
    return propagate.extract(list(headers or ()), getter=_KAFKA_GETTER)


class _KafkaHeadersGetter(Getter[Sequence[tuple[str, Any]]]):
    def get(self, carrier: Sequence[tuple[str, Any]], key: str) -> list[str] | None:
        wanted = key.lower()
        for name, value in carrier:
            if isinstance(name, str) and name.lower() == wanted and value is not None:
                text = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
                return [text]
        return None

    def keys(self, carrier: Sequence[tuple[str, Any]]) -> list[str]:
        return [name for name, _ in carrier if isinstance(name, str)]


_KAFKA_GETTER = _KafkaHeadersGetter()


def _traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"
