"""Prometheus metrics every service shares (default registry, one ``/metrics`` per process).

Every series carries ``service`` so that one dashboard covers all services. Labels are bounded on
purpose: HTTP series use the route template (``/v1/contacts/{contact_id}``), never the raw path;
nothing is labelled by tenant, contact or event id.

HTTP (RED), recorded by :func:`add_http_metrics`:

- ``scrm_http_requests_total{service,method,route,status}``: finished requests.
- ``scrm_http_request_duration_seconds{service,method,route}``: time to the end of the response.

Events, recorded by the shared consume loop and outbox relay:

- ``scrm_events_consumed_total{service,topic}``: valid events handed to a handler.
- ``scrm_events_failed_total{service,topic,reason}``: failed attempts (``reason`` is an error
  class name, e.g. ``PostgresConnectionError``; ``topic`` is ``*`` when a whole batch failed).
- ``scrm_events_dead_lettered_total{service,topic,kind}``: records sent to ``dead-letter``
  (``kind``: why, e.g. ``decode``, ``schema``, ``handler``).
- ``scrm_consumer_lag{service,topic,partition}``: high watermark minus position, per partition.
- ``scrm_consumer_batch_seconds{service}``: time to process and commit one ``getmany`` batch.
- ``scrm_outbox_published_total{service,topic}``: outbox rows relayed to Kafka.
- ``scrm_outbox_pending{service}``: outbox rows not yet relayed.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # FastAPI >= 0.137.2 nests included routers; this yields each route with its full template.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI flattens routes, route.path_format is full
    iter_route_contexts = None

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
    "UNMATCHED_ROUTE",
    "add_http_metrics",
    "metrics_response",
    "metrics_route",
]

UNMATCHED_ROUTE = "<unmatched>"
"""``route`` label of requests no route matched (404s of scanners must not add series)."""

_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "scrm_http_requests",
    "HTTP requests finished, by route template and status code",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "scrm_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response",
    ["service", "method", "route"],
    buckets=_HTTP_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "scrm_events_consumed",
    "Valid events handed to a handler",
    ["service", "topic"],
)
EVENTS_FAILED = Counter(
    "scrm_events_failed",
    "Failed attempts at handling events, by error class",
    ["service", "topic", "reason"],
)
EVENTS_DEAD_LETTERED = Counter(
    "scrm_events_dead_lettered",
    "Records sent to the dead-letter topic, by kind of failure",
    ["service", "topic", "kind"],
)
CONSUMER_LAG = Gauge(
    "scrm_consumer_lag",
    "Records between the consumer's position and the partition's high watermark",
    ["service", "topic", "partition"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "scrm_consumer_batch_seconds",
    "Time to validate, handle and commit one consumed batch",
    ["service"],
    buckets=_BATCH_BUCKETS,
)
OUTBOX_PUBLISHED = Counter(
    "scrm_outbox_published",
    "Outbox rows relayed to Kafka",
    ["service", "topic"],
)
OUTBOX_PENDING = Gauge(
    "scrm_outbox_pending",
    "Outbox rows waiting to be relayed",
    ["service"],
)


def add_http_metrics(app: FastAPI, service_name: str) -> None:
    """Record RED metrics for every HTTP request of ``app`` (call once, before the app starts)."""
    app.add_middleware(HttpMetricsMiddleware, service=service_name, fastapi_app=app)


class HttpMetricsMiddleware:
    """ASGI middleware behind :func:`add_http_metrics`."""

    def __init__(self, app: ASGIApp, *, service: str, fastapi_app: FastAPI) -> None:
        self.app = app
        self.service = service
        self.templates = _RouteTemplates(fastapi_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = scope.get("method", "")
            method = method if method in _METHODS else "OTHER"
            route = self.templates.of(scope)
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(self.service, method, route).observe(time.perf_counter() - started)


class _RouteTemplates:
    """The full path template of the route that served a request.

    ``scope["route"]`` is the route object; under FastAPI's nested routers its own ``path`` lacks
    the prefixes, so the full templates are looked up once per route object (and re-read if the
    app gains routes later).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._by_route: dict[int, list[tuple[Any, str]]] = {}
        self._known_count = -1

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        candidates = self._candidates(route)
        if len(candidates) == 1:
            return candidates[0][1]
        path = scope.get("path", "")
        for regex, template in candidates:
            if regex is not None and regex.match(path):
                return template
        # Not from this app's tree (e.g. a mounted sub-application): the route's own template.
        return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE

    def _candidates(self, route: Any) -> list[tuple[Any, str]]:
        found = self._by_route.get(id(route))
        if found is None or len(self.app.routes) != self._known_count:
            self._rebuild()
            # Remember misses too, so a route outside the tree does not trigger a rebuild per request.
            found = self._by_route.setdefault(id(route), [])
        return found

    def _rebuild(self) -> None:
        by_route: dict[int, list[tuple[Any, str]]] = {}
        if iter_route_contexts is not None:
            for ctx in iter_route_contexts(self.app.routes):
                template = ctx.path_format
                if template:
                    regex = getattr(ctx, "path_regex", None)
                    by_route.setdefault(id(ctx.original_route), []).append((regex, template))
        else:  # pragma: no cover - older FastAPI
            for r in self.app.routes:
                template = getattr(r, "path_format", None)
                if template:
                    by_route.setdefault(id(r), []).append((getattr(r, "path_regex", None), template))
        self._by_route = by_route
        self._known_count = len(self.app.routes)


def metrics_response(accept: str | None = None) -> Response:
    """The default registry in the Prometheus text format (OpenMetrics if ``accept`` asks for it)."""
    if accept:
        encoder, content_type = choose_encoder(accept)
        return Response(encoder(REGISTRY), media_type=content_type)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def metrics_route(request: Request) -> Response:
    """A ``/metrics`` endpoint: ``app.add_api_route("/metrics", metrics_route, include_in_schema=False)``."""
    return metrics_response(request.headers.get("accept"))
