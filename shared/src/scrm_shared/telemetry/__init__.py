"""Telemetry of every SCRM process: JSON logs, OpenTelemetry traces, Prometheus metrics.

Configure once per process, first thing in the lifespan or worker entry point::

    telemetry.setup("contact-svc", settings)

Everything else only asks for what it needs: ``get_tracer(__name__)``, the metric objects below,
``inject_headers()``/``extract_context()`` around Kafka records. Telemetry never takes a service
down: every step of :func:`setup` and every instrumentation is guarded and only logs a failure.

- Logs (:mod:`.logs`): one JSON line per record with timestamp, level, logger, message, service,
  trace_id and span_id; personal data redacted (``SCRM_LOG_LEVEL``, ``SCRM_LOG_JSON``).
- Traces (:mod:`.tracing`): SDK tracer provider named after the service, exported over OTLP/HTTP
  when ``SCRM_OTLP_ENDPOINT`` is set; asyncpg and aiokafka instrumented by :func:`setup`, each
  FastAPI app by :func:`instrument_app`.
- Metrics (:mod:`.metrics`): the shared Prometheus series, HTTP RED via :func:`add_http_metrics`,
  exposition via :func:`metrics_response`.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace

from scrm_shared.config import PlatformSettings
from scrm_shared.telemetry.logs import (
    PERSONAL_DATA_KEY_PARTS,
    PERSONAL_DATA_KEYS,
    REDACTED,
    configure_logging,
    hide_http_query_strings,
    scrub_personal_data,
)
from scrm_shared.telemetry.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_LAG,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    OUTBOX_PENDING,
    OUTBOX_PUBLISHED,
    UNMATCHED_ROUTE,
    add_http_metrics,
    metrics_response,
    metrics_route,
)
from scrm_shared.telemetry.tracing import (
    build_tracer_provider,
    extract_context,
    get_tracer,
    inject_headers,
    instrument_app,
    instrument_libraries,
)

__all__ = [
    "CONSUMER_BATCH_SECONDS",
    "CONSUMER_LAG",
    "EVENTS_CONSUMED",
    "EVENTS_DEAD_LETTERED",
    "EVENTS_FAILED",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "OUTBOX_PENDING",
    "OUTBOX_PUBLISHED",
    "PERSONAL_DATA_KEYS",
    "PERSONAL_DATA_KEY_PARTS",
    "REDACTED",
    "UNMATCHED_ROUTE",
    "add_http_metrics",
    "configure_logging",
    "extract_context",
    "get_tracer",
    "hide_http_query_strings",
    "inject_headers",
    "instrument_app",
    "metrics_response",
    "metrics_route",
    "scrub_personal_data",
    "setup",
]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_configured_for: str | None = None


def setup(service_name: str, settings: PlatformSettings) -> None:
    """Configure logs, traces and library instrumentation for this process (idempotent).

    The first call wins; later calls (an API lifespan restarted in tests, a worker sharing the
    process) do nothing. Never raises.
    """
    global _configured_for
    with _lock:
        if _configured_for is not None:
            if _configured_for != service_name:
                log.info("telemetry already configured", extra={"configured_for": _configured_for})
            return
        _configured_for = service_name

    try:
        configure_logging(service_name, level=settings.log_level, json_output=settings.log_json)
        hide_http_query_strings()
    except Exception:
        logging.basicConfig(level=logging.INFO)
        log.exception("structured logging setup failed; using plain logging")

    try:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            provider = build_tracer_provider(
                service_name, env=settings.env, otlp_endpoint=settings.otlp_endpoint
            )
            trace.set_tracer_provider(provider)
        else:  # e.g. started under ``opentelemetry-instrument``: keep that provider
            log.info("a tracer provider is already installed; keeping it")
    except Exception:
        log.exception("tracing setup failed; continuing without traces")

    instrument_libraries()
    log.info(
        "telemetry configured",
        extra={
            "log_level": settings.log_level,
            "log_json": settings.log_json,
            "otlp_export": bool(settings.otlp_endpoint),
        },
    )


def _reset_for_tests() -> None:
    """Forget that :func:`setup` ran (the global tracer provider cannot be reset, by design)."""
    global _configured_for
    with _lock:
        _configured_for = None
