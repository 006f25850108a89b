"""Problem details (RFC 9457) for raised problems, HTTP errors, validation errors and crashes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import structlog
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from scrm_shared import problems, telemetry
from scrm_shared.problems import Problem, json_path, problem_response

PHONE = "13800138000"


class Item(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal


class Order(BaseModel):
    order_id: str
    items: list[Item]


def make_app() -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.post("/orders")
    async def create_order(order: Order) -> dict[str, str]:
        return {"order_id": order.order_id}

    @app.get("/orders")
    async def list_orders(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/tags/{tag_id}")
    async def get_tag(tag_id: str) -> dict[str, str]:
        raise Problem(
            409,
            "Tag already exists",
            "a tag with this name exists in the group",
            type="tag-exists",
            headers={"X-Existing": "t-1"},
            existing_tag_id="t-1",
        )

    @app.get("/limited")
    async def limited() -> None:
        raise HTTPException(status_code=429, detail="slow down", headers={"Retry-After": "3"})

    @app.get("/structured")
    async def structured() -> None:
        raise HTTPException(status_code=400, detail={"reason": "bad cursor"})

    @app.get("/returned")
    async def returned() -> object:
        return problem_response(None, 410, detail="gone for good", type="gone")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"customer {PHONE} broke it")

    return app


async def request(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["type"], str)
    # When a tracer provider is installed (another test may have run the service setup), every
    # problem carries the request's trace id; the other members are what these tests compare.
    trace_id = body.pop("trace_id", None)
    assert trace_id is None or (isinstance(trace_id, str) and len(trace_id) == 32)
    return body


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    telemetry.configure_logging("test-svc", level="INFO", json_output=True, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()


async def test_raised_problem_has_all_members_and_headers() -> None:
    response = await request(make_app(), "GET", "/tags/t-1")

    body = assert_problem(response, 409)
    assert body == {
        "type": "urn:scrm:problem:tag-exists",
        "title": "Tag already exists",
        "status": 409,
        "detail": "a tag with this name exists in the group",
        "instance": "/tags/t-1",
        "existing_tag_id": "t-1",
    }
    assert response.headers["x-existing"] == "t-1"


def test_problem_refuses_extension_members_that_shadow_standard_ones() -> None:
    with pytest.raises(ValueError):
        Problem(400, instance="/elsewhere")
    with pytest.raises(ValueError):
        Problem(400, trace_id="0" * 32)


def test_problem_defaults_to_about_blank_with_the_status_phrase() -> None:
    problem = Problem(404)

    assert problem.body("/x") == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/x",
    }


async def test_returned_problem_response() -> None:
    body = assert_problem(await request(make_app(), "GET", "/returned"), 410)

    assert body["type"] == "urn:scrm:problem:gone"
    assert body["title"] == "Gone"
    assert "instance" not in body


async def test_validation_error_lists_json_paths_without_input() -> None:
    payload = {
        "order_id": "o-1",
        "items": [
            {"sku": "A", "quantity": 1, "unit_price": "12.50"},
            {"sku": "B", "quantity": "three-" + PHONE, "unit_price": "not-a-price-" + PHONE},
        ],
        "phone": PHONE,
    }

    response = await request(make_app(), "POST", "/orders", json=payload)

    body = assert_problem(response, 422)
    assert body["type"] == "urn:scrm:problem:validation-error"
    assert body["instance"] == "/orders"
    errors = {e["loc"]: e for e in body["errors"]}  # type: ignore[union-attr]
    assert set(errors) == {"$.body.items[1].quantity", "$.body.items[1].unit_price"}
    price = errors["$.body.items[1].unit_price"]
    assert price["loc_parts"] == ["body", "items", 1, "unit_price"]
    assert price["type"] == "decimal_parsing"
    assert price["msg"]
    assert set(price) == {"loc", "loc_parts", "msg", "type"}
    assert PHONE not in response.text
    assert "three" not in response.text


async def test_validation_error_for_query_and_missing_body() -> None:
    query = assert_problem(await request(make_app(), "GET", "/orders", params={"limit": PHONE + "x"}), 422)
    missing = assert_problem(await request(make_app(), "POST", "/orders"), 422)

    assert [e["loc"] for e in query["errors"]] == ["$.query.limit"]  # type: ignore[union-attr]
    assert [e["type"] for e in missing["errors"]] == ["missing"]  # type: ignore[union-attr]
    assert PHONE not in json.dumps(query)


async def test_malformed_json_body_is_422_without_echo() -> None:
    response = await request(
        make_app(),
        "POST",
        "/orders",
        content=b'{"order_id": "' + PHONE.encode() + b'", ',
        headers={"content-type": "application/json"},
    )

    assert_problem(response, 422)
    assert PHONE not in response.text


async def test_unknown_path_is_404_problem() -> None:
    response = await request(make_app(), "GET", "/nowhere")

    body = assert_problem(response, 404)
    assert body == {"type": "about:blank", "title": "Not Found", "status": 404, "instance": "/nowhere"}


async def test_wrong_method_is_405_problem_keeping_allow() -> None:
    response = await request(make_app(), "DELETE", "/orders")

    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


async def test_http_exception_keeps_detail_and_headers() -> None:
    response = await request(make_app(), "GET", "/limited")

    body = assert_problem(response, 429)
    assert body["detail"] == "slow down"
    assert body["title"] == "Too Many Requests"
    assert response.headers["retry-after"] == "3"


async def test_http_exception_with_structured_detail() -> None:
    body = assert_problem(await request(make_app(), "GET", "/structured"), 400)

    assert body["context"] == {"reason": "bad cursor"}
    assert "detail" not in body


async def test_unhandled_error_is_generic_500_and_logged(log_stream: io.StringIO) -> None:
    response = await request(make_app(), "GET", "/boom")

    body = assert_problem(response, 500)
    assert body["title"] == "Internal Server Error"
    assert body["instance"] == "/boom"
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert PHONE not in response.text
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    [error] = [line for line in lines if line["logger"] == "scrm_shared.problems"]
    assert error["level"] == "error"
    assert error["http_route"] == "/boom"
    assert error["error_type"] == "RuntimeError"
    assert "Traceback" in error["exception"]
    assert PHONE not in log_stream.getvalue()


async def test_unhandled_error_carries_the_trace_id(log_stream: io.StringIO) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app()
    telemetry.instrument_app(app, tracer_provider=provider)

    response = await request(app, "GET", "/boom")

    body = response.json()
    assert_problem(response, 500)
    [server_span] = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    trace_id = f"{server_span.context.trace_id:032x}"
    assert body["trace_id"] == trace_id
    assert server_span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in server_span.events)
    [error] = [json.loads(line) for line in log_stream.getvalue().splitlines() if "unhandled" in line]
    assert error["trace_id"] == trace_id


def test_install_is_idempotent() -> None:
    app = FastAPI()
    problems.install(app)
    problems.install(app)

    assert len(app.user_middleware) == 1


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "items", 0, "unit_price"), "$.body.items[0].unit_price"),
        (("body", 2), "$.body[2]"),
        (("header", "x-request-id"), "$.header['x-request-id']"),
        (("body", "it's"), "$.body['it\\'s']"),
        ((), "$"),
    ],
)
def test_json_path(loc: tuple[str | int, ...], path: str) -> None:
    assert json_path(loc) == path
