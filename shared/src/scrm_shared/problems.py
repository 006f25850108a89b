"""RFC 9457 problem details: every error a service returns is ``application/problem+json``.

A body always has ``type``, ``title``, ``status`` and ``instance`` (the request path), ``detail``
when there is something specific to say, and ``trace_id`` when the request is traced, so a
front-end can quote it to support. Services raise :class:`Problem`; :func:`install` turns it,
Starlette/FastAPI ``HTTPException`` (404, 405, the auth 401/403, ... with their headers),
request validation errors (422) and unhandled exceptions (500) into problem bodies.

Personal data never leaves through an error: a 422 lists where and why the input is wrong, never
the input itself, and a 500 says nothing but "internal error" (the stack trace goes to the log,
with the trace id).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROBLEM_JSON",
    "TYPE_BASE",
    "Problem",
    "install",
    "json_path",
    "problem_response",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

TYPE_BASE = "urn:scrm:problem:"
"""Prefix of the ``type`` URI of the platform's own problem types: slug ``tag-exists`` becomes
``urn:scrm:problem:tag-exists`` (RFC 9457 allows non-resolvable URIs; a front-end switches on it)."""

# Members the RFC defines (plus ours); extension members may not shadow them.
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "trace_id"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Problem(StarletteHTTPException):
    """An error to return as problem details: ``raise Problem(404, "Contact not found")``.

    ``type`` is a slug under :data:`TYPE_BASE` (or a full URI); without it the problem is
    ``about:blank``, whose title should be the HTTP status phrase (the default). Keyword
    arguments beyond the named ones become extension members of the body and must be JSON-able;
    ``headers`` go on the response (e.g. ``Retry-After``).

    It subclasses Starlette's ``HTTPException`` so that an app without :func:`install` still
    answers with the right status and headers instead of a 500.
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str | None = None,  # the RFC names the member "type"
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        clash = _RESERVED & extra.keys()
        if clash:
            raise ValueError(f"extension members may not shadow standard members: {sorted(clash)}")
        super().__init__(status_code=status, detail=detail, headers=dict(headers) if headers else None)
        self.title = title or _phrase(status)
        self.type = _type_uri(type)
        self.problem_detail = detail
        self.extra = extra

    @property
    def status(self) -> int:
        return self.status_code

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem-details object of this problem (without ``trace_id``)."""
        return _body(
            status=self.status_code,
            title=self.title,
            detail=self.problem_detail,
            type_uri=self.type,
            instance=instance,
            extra=self.extra,
        )


def problem_response(
    request: Request | None,
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    type: str | None = None,  # the RFC names the member "type"
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response, for code that returns rather than raises."""
    body = _body(
        status=status,
        title=title or _phrase(status),
        detail=detail,
        type_uri=_type_uri(type),
        instance=request.url.path if request is not None else None,
        extra=extra,
    )
    return _respond(body, status, headers)


def json_path(loc: Sequence[str | int]) -> str:
    """``("body", "items", 0, "unit_price")`` -> ``"$.body.items[0].unit_price"``.

    Names that are not identifiers use bracket notation (``$.header['x-request-id']``).
    """
    out = ["$"]
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            out.append(f".{part}")
        else:
            escaped = str(part).replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem details (idempotent)."""
    if getattr(app.state, "problems_installed", False):
        return
    app.state.problems_installed = True
    app.add_exception_handler(Problem, _handle_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _handle_validation_error)  # type: ignore[arg-type]
    # Exceptions from route code are answered by the middleware (inside the tracing span, and
    # without re-raising, so the server does not log them a second time); the Exception handler
    # covers what middlewares added later raise.
    app.add_middleware(_UnhandledErrorMiddleware)
    app.add_exception_handler(Exception, _handle_unhandled)


async def _handle_problem(request: Request, exc: Problem) -> Response:
    return _respond(_with_trace(exc.body(request.url.path)), exc.status_code, exc.headers)


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    if isinstance(exc, Problem):  # registered handlers are looked up by MRO; be explicit anyway
        return await _handle_problem(request, exc)
    status = exc.status_code
    if status < 200 or status in (204, 205, 304):
        return Response(status_code=status, headers=exc.headers)
    phrase = _phrase(status)
    detail: str | None = None
    extra: dict[str, Any] = {}
    if isinstance(exc.detail, str):
        detail = exc.detail if exc.detail != phrase else None
    elif exc.detail is not None:
        # FastAPI lets code put structured data in ``detail``; RFC 9457 wants a string there.
        extra["errors" if isinstance(exc.detail, list) else "context"] = jsonable_encoder(exc.detail)
    body = _body(
        status=status,
        title=phrase,
        detail=detail,
        type_uri="about:blank",
        instance=request.url.path,
        extra=extra,
    )
    return _respond(_with_trace(body), status, exc.headers)


async def _handle_validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [_error_item(e) for e in exc.errors()]
    count = len(errors)
    body = _body(
        status=422,
        title="Request validation failed",
        detail=f"{count} invalid value{'s' if count != 1 else ''} in the request; see errors",
        type_uri=_type_uri("validation-error"),
        instance=request.url.path,
        extra={"errors": errors},
    )
    return _respond(_with_trace(body), 422, None)


async def _handle_unhandled(request: Request, exc: Exception) -> Response:
    return _internal_error(request.scope, exc)


class _UnhandledErrorMiddleware:
    """Turns an exception escaping the app into a generic 500 problem (when nothing was sent yet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:  # a response is already on the wire; let the server close the connection
                raise
            await _internal_error(scope, exc)(scope, receive, send)


def _internal_error(scope: Scope, exc: Exception) -> Response:
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    route = getattr(scope.get("route"), "path_format", None) or "<unmatched>"
    log.error(
        "unhandled error while serving a request",
        exc_info=exc,
        extra={"http_method": scope.get("method"), "http_route": route, "error_type": type(exc).__name__},
    )
    body = _body(
        status=500,
        title="Internal Server Error",
        detail="The server failed to handle this request; quote the trace_id when reporting it.",
        type_uri="about:blank",
        instance=scope.get("path"),
        extra={},
    )
    return _respond(_with_trace(body), 500, None)


def _error_item(error: Mapping[str, Any]) -> dict[str, Any]:
    # Only where and why: pydantic's ``input`` and ``ctx`` can carry the submitted values.
    loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
    return {
        "loc": json_path(loc),
        "loc_parts": loc,
        "msg": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }


def _body(
    *,
    status: int,
    title: str,
    detail: str | None,
    type_uri: str,
    instance: str | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    for key, value in extra.items():
        body[key] = jsonable_encoder(value)
    return body


def _with_trace(body: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        body["trace_id"] = trace.format_trace_id(ctx.trace_id)
    return body


def _respond(body: dict[str, Any], status: int, headers: Mapping[str, str] | None) -> Response:
    return JSONResponse(
        body, status_code=status, headers=dict(headers) if headers else None, media_type=PROBLEM_JSON
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _type_uri(slug: str | None) -> str:
    if not slug:
        return "about:blank"
    return slug if ":" in slug else TYPE_BASE + slug
