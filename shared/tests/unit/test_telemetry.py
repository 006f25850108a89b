"""Telemetry: HTTP RED metrics by route template, JSON logs with trace ids and without personal
data, W3C trace context through Kafka headers, and a setup() that is idempotent and never raises."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

import scrm_shared.telemetry as telemetry
from scrm_shared import problems
from scrm_shared.config import PlatformSettings
from scrm_shared.telemetry import tracing

PHONE = "13800138000"
NAME = "张三"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()


@pytest.fixture
def log_stream(restore_logging: None) -> io.StringIO:
    stream = io.StringIO()
    telemetry.configure_logging("test-svc", level="INFO", json_output=True, stream=stream)
    return stream


@pytest.fixture
def tracer() -> trace.Tracer:
    # A local provider: spans get real ids without touching the process-wide provider.
    return TracerProvider().get_tracer("test")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def get(app: FastAPI, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.request(method, path)


# --- HTTP metrics ---------------------------------------------------------------------------


def metered_app(service: str) -> FastAPI:
    app = FastAPI()
    problems.install(app)
    telemetry.add_http_metrics(app, service)
    items = APIRouter(prefix="/v1/items")
    notes = APIRouter(prefix="/notes")

    @items.get("/{item_id}")
    async def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @notes.get("/{note_id}")
    async def get_note(note_id: str) -> dict[str, str]:
        return {"id": note_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    items.include_router(notes)
    app.include_router(items)
    app.add_api_route("/metrics", telemetry.metrics_route, include_in_schema=False)
    return app


def requests_total(service: str, method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "scrm_http_requests_total", {"service": service, "method": method, "route": route, "status": status}
    )
    return value or 0.0


async def test_http_metrics_use_the_route_template(restore_logging: None) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    app = metered_app(service)

    for item in ("a-1", "b-2", "c-3"):
        assert (await get(app, f"/v1/items/{item}")).status_code == 200
    await get(app, "/v1/items/notes/n-1")
    await get(app, "/no/such/path")
    await get(app, "/v1/items/a-1", method="DELETE")

    assert requests_total(service, "GET", "/v1/items/{item_id}", "200") == 3
    assert requests_total(service, "GET", "/v1/items/notes/{note_id}", "200") == 1
    assert requests_total(service, "GET", telemetry.UNMATCHED_ROUTE, "404") == 1
    assert requests_total(service, "DELETE", "/v1/items/{item_id}", "405") == 1
    assert requests_total(service, "GET", "/v1/items/a-1", "200") == 0
    count = REGISTRY.get_sample_value(
        "scrm_http_request_duration_seconds_count",
        {"service": service, "method": "GET", "route": "/v1/items/{item_id}"},
    )
    assert count == 3


async def test_http_metrics_count_crashes_as_500(restore_logging: None) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    logging.getLogger().handlers[:] = []  # keep the expected error log out of the test output

    response = await get(metered_app(service), "/boom")

    assert response.status_code == 500
    assert requests_total(service, "GET", "/boom", "500") == 1


async def test_metrics_endpoint_exposes_the_shared_series() -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    app = metered_app(service)
    await get(app, "/v1/items/x")
    telemetry.EVENTS_CONSUMED.labels(service=service, topic="order-placed").inc(2)
    telemetry.OUTBOX_PENDING.labels(service=service).set(5)

    response = await get(app, "/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        f'scrm_http_requests_total{{method="GET",route="/v1/items/{{item_id}}",service="{service}",status="200"}}'
        in text
    )
    assert f'scrm_events_consumed_total{{service="{service}",topic="order-placed"}} 2.0' in text
    assert f'scrm_outbox_pending{{service="{service}"}} 5.0' in text
    for name in (
        "scrm_events_failed_total",
        "scrm_events_dead_lettered_total",
        "scrm_consumer_lag",
        "scrm_consumer_batch_seconds",
        "scrm_outbox_published_total",
        "scrm_http_request_duration_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_metrics_response_negotiates_openmetrics() -> None:
    response = telemetry.metrics_response("application/openmetrics-text; version=1.0.0")

    assert response.media_type is not None
    assert response.media_type.startswith("application/openmetrics-text")
    assert telemetry.metrics_response().media_type.startswith("text/plain")  # type: ignore[union-attr]


# --- logs -----------------------------------------------------------------------------------


def test_log_lines_are_json_with_trace_ids(log_stream: io.StringIO, tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("contact_svc.api").info("contact created", extra={"contact_id": "c-1"})
    ctx = span.get_span_context()

    [line] = lines(log_stream)
    assert list(line)[:7] == ["timestamp", "level", "logger", "message", "service", "trace_id", "span_id"]
    assert line["level"] == "info"
    assert line["logger"] == "contact_svc.api"
    assert line["message"] == "contact created"
    assert line["service"] == "test-svc"
    assert line["trace_id"] == f"{ctx.trace_id:032x}"
    assert line["span_id"] == f"{ctx.span_id:016x}"
    assert line["contact_id"] == "c-1"
    assert line["timestamp"].endswith("Z")


def test_log_lines_outside_a_span_have_no_trace_id(log_stream: io.StringIO) -> None:
    structlog.get_logger("tag_svc.rules").info("rule evaluated", rule_id="r-1")

    [line] = lines(log_stream)
    assert "trace_id" not in line
    assert line["rule_id"] == "r-1"
    assert line["logger"] == "tag_svc.rules"


def test_personal_data_never_reaches_the_log(log_stream: io.StringIO, tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("work"):
        logging.getLogger("contact_svc.api").info(
            "friend added for %s",
            PHONE,
            extra={
                "customer_name": NAME,
                "phone": PHONE,
                "external_userid": "wmAbCdEf123",
                "payload": {"nickname": NAME, "remark_mobiles": [PHONE], "store_id": "s-1"},
                "note": f"call +86 {PHONE} back",
            },
        )
        structlog.get_logger("contact_svc.stream").warning(
            "contact updated",
            name=NAME,
            mobile=PHONE,
            avatar="https://wx/avatar.png",
            unionid="oAbc",
            tags=["vip"],
        )
        try:
            raise ValueError(f"bad phone {PHONE}")
        except ValueError:
            logging.getLogger("contact_svc.api").exception("update failed")

    text = log_stream.getvalue()
    assert PHONE not in text
    assert NAME not in text
    assert "wmAbCdEf123" not in text
    assert "avatar.png" not in text
    assert "oAbc" not in text
    first, second, third = lines(log_stream)
    assert first["message"] == "friend added for [redacted]"
    assert first["customer_name"] == first["phone"] == first["external_userid"] == "[redacted]"
    assert first["payload"] == {"nickname": "[redacted]", "remark_mobiles": "[redacted]", "store_id": "s-1"}
    assert second["name"] == second["mobile"] == "[redacted]"
    assert second["tags"] == ["vip"]
    assert "ValueError: bad phone [redacted]" in third["exception"]


def test_console_logs_are_redacted_too(restore_logging: None) -> None:
    stream = io.StringIO()
    telemetry.configure_logging("test-svc", level="INFO", json_output=False, stream=stream)

    logging.getLogger("x").info("hello", extra={"phone": PHONE})

    out = stream.getvalue()
    assert "hello" in out
    assert PHONE not in out
    assert not out.lstrip().startswith("{")


def test_log_level_is_honoured(restore_logging: None) -> None:
    stream = io.StringIO()
    telemetry.configure_logging("test-svc", level="WARNING", json_output=True, stream=stream)

    logging.getLogger("x").info("quiet")
    structlog.get_logger("y").info("quiet too")
    logging.getLogger("x").warning("loud")

    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_reconfiguring_replaces_only_our_handler(restore_logging: None) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)

    telemetry.configure_logging("a", stream=io.StringIO())
    telemetry.configure_logging("b", stream=io.StringIO())

    ours = [h for h in logging.getLogger().handlers if getattr(h, "_scrm_telemetry_handler", False)]
    assert len(ours) == 1
    assert other in logging.getLogger().handlers


def test_scrubber_leaves_ids_alone() -> None:
    event = {
        "trace_id": "13800138000" + "a" * 21,
        "event_id": "0b9c2f1e-1380-0138-0001-138001380000",
        "count": 7,
    }

    assert telemetry.scrub_personal_data(None, "info", dict(event)) == event


# --- trace context through Kafka headers ----------------------------------------------------


def test_traceparent_round_trip(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("produce") as span:
        headers = telemetry.inject_headers()
    sent = span.get_span_context()

    assert [k for k, _ in headers] == ["traceparent"]
    assert headers[0][1] == f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{sent.trace_flags:02x}".encode()
    received = trace.get_current_span(telemetry.extract_context(tuple(headers))).get_span_context()
    assert received.is_remote
    assert (received.trace_id, received.span_id) == (sent.trace_id, sent.span_id)


def test_extracted_context_parents_the_consumer_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("produce") as producer:
        headers = telemetry.inject_headers()

    with tracer.start_as_current_span("consume", context=telemetry.extract_context(headers)) as consumer:
        pass

    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.get_span_context().span_id


def test_first_traceparent_wins(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("original") as original:
        headers = telemetry.inject_headers()
    with tracer.start_as_current_span("relay"):
        headers += telemetry.inject_headers()

    ctx = trace.get_current_span(telemetry.extract_context([("x-other", b"1"), *headers])).get_span_context()

    assert ctx.span_id == original.get_span_context().span_id


@pytest.mark.parametrize("headers", [None, [], (), [("traceparent", b"garbage")], [("traceparent", None)]])
def test_no_or_bad_headers_give_an_empty_context(headers: Any) -> None:
    ctx = trace.get_current_span(telemetry.extract_context(headers)).get_span_context()

    assert not ctx.is_valid


def test_nothing_to_inject_outside_a_span() -> None:
    assert telemetry.inject_headers() == []


# --- tracing of FastAPI apps ----------------------------------------------------------------


async def test_instrumented_app_traces_requests_with_route(log_stream: io.StringIO) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = metered_app(f"svc-{uuid.uuid4().hex[:8]}")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        logging.getLogger("probe").info("probed")
        return {"status": "ok"}

    @app.get("/logged/{thing}")
    async def logged(thing: str) -> dict[str, str]:
        logging.getLogger("route").info("handling", extra={"thing": thing})
        return {"thing": thing}

    telemetry.instrument_app(app, tracer_provider=provider)
    telemetry.instrument_app(app, tracer_provider=provider)  # a second call must not double-wrap

    assert (await get(app, "/logged/t-1")).status_code == 200
    await get(app, "/healthz")

    servers = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert [s.attributes["http.route"] for s in servers] == ["/logged/{thing}"]  # type: ignore[index]
    by_message = {line["message"]: line for line in lines(log_stream)}
    assert by_message["handling"]["trace_id"] == f"{servers[0].context.trace_id:032x}"
    assert "trace_id" not in by_message["probed"]


# --- setup ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_setup(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Run setup() without touching process-wide state: provider and instrumentations recorded."""
    recorded: dict[str, Any] = {"providers": [], "instrumented": 0}
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    monkeypatch.setattr(trace, "set_tracer_provider", recorded["providers"].append)

    def instrument_libraries() -> None:
        recorded["instrumented"] += 1

    monkeypatch.setattr(telemetry, "instrument_libraries", instrument_libraries)
    telemetry._reset_for_tests()
    try:
        yield recorded
    finally:
        telemetry._reset_for_tests()
        for provider in recorded["providers"]:
            provider.shutdown()


def test_setup_configures_everything_once(fresh_setup: dict[str, Any]) -> None:
    settings = PlatformSettings(env="test", log_level="DEBUG", log_json=True)

    telemetry.setup("contact-svc", settings)
    telemetry.setup("contact-svc", settings)
    telemetry.setup("tag-svc", settings)

    [provider] = fresh_setup["providers"]
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "contact-svc"
    assert fresh_setup["instrumented"] == 1
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_scrm_telemetry_handler", False)]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.DEBUG


def test_setup_with_an_otlp_endpoint_exports_over_http(fresh_setup: dict[str, Any]) -> None:
    telemetry.setup("metrics-svc", PlatformSettings(env="test", otlp_endpoint="http://127.0.0.1:9/"))

    [provider] = fresh_setup["providers"]
    assert provider.resource.attributes["service.name"] == "metrics-svc"
    assert tracing._traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing._traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"


def test_setup_survives_tracing_failures(
    fresh_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> TracerProvider:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(telemetry, "build_tracer_provider", broken)

    telemetry.setup("campaign-svc", PlatformSettings(env="test"))

    assert fresh_setup["providers"] == []
    assert fresh_setup["instrumented"] == 1


def test_instrument_app_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    telemetry.instrument_app(object())  # type: ignore[arg-type]

    assert "FastAPI instrumentation failed" in caplog.text


def test_library_instrumentation_is_guarded_and_reversible() -> None:
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    already = AsyncPGInstrumentor().is_instrumented_by_opentelemetry
    tracing.instrument_libraries()
    tracing.instrument_libraries()  # the second call is a no-op

    try:
        assert AsyncPGInstrumentor().is_instrumented_by_opentelemetry
        assert AIOKafkaInstrumentor().is_instrumented_by_opentelemetry
    finally:
        if not already:
            AsyncPGInstrumentor().uninstrument()
            AIOKafkaInstrumentor().uninstrument()


def test_get_tracer_returns_a_tracer() -> None:
    assert isinstance(telemetry.get_tracer(__name__), trace.Tracer)
