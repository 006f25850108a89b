"""Structured logs: one JSON object per line, with the trace, and without personal data.

Both ``logging.getLogger(__name__)`` (with ``extra={...}`` fields) and ``structlog.get_logger()``
(with keyword fields) end up in one handler on the root logger, rendered as::

    {"timestamp": "2024-05-01T08:00:00.123456Z", "level": "info", "logger": "contact_svc.api",
     "message": "contact created", "service": "contact-svc", "trace_id": "4bf9...", "span_id": "00f0...",
     ...fields}

``trace_id``/``span_id`` are those of the OpenTelemetry span current when the line was logged.
With ``log_json=False`` the same fields are printed for humans.

Personal data (PIPL): before rendering, every field whose key names personal data (see
:data:`PERSONAL_DATA_KEYS` and :data:`PERSONAL_DATA_KEY_PARTS`) has its value replaced by
``"[redacted]"``, in nested dicts and lists too, and mainland mobile numbers are masked in every
other string (the message and exception text included). Free text such as a customer's name inside
a message cannot be recognised: never format personal data into a message, pass ids instead.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "PERSONAL_DATA_KEYS",
    "PERSONAL_DATA_KEY_PARTS",
    "REDACTED",
    "configure_logging",
    "scrub_personal_data",
]

REDACTED = "[redacted]"

PERSONAL_DATA_KEYS: frozenset[str] = frozenset(
    {
        # names, as WeCom and POS systems send them
        "name",
        "nickname",
        "nick_name",
        "real_name",
        "full_name",
        "customer_name",
        "contact_name",
        # the guide's remark on a contact (often a name or a phone number), and its phones
        "remark",
        "remark_name",
        "remark_mobiles",
        "description",
        # other identifying attributes
        "birthday",
        "address",
        "gender",
    }
)
"""Field names (compared case-insensitively) whose values never reach the logs."""

PERSONAL_DATA_KEY_PARTS: tuple[str, ...] = (
    "phone",  # phone, phone_number, phone_hash (a hash of a phone is still personal data)
    "mobile",
    "unionid",
    "union_id",
    "openid",
    "open_id",
    "external_userid",  # the WeCom id of a customer
    "external_user_id",
    "avatar",
    "email",
    "id_card",
    "idcard",
)
"""Substrings: a field whose (lower-cased) name contains one of them never reaches the logs."""

# A mainland mobile number (optionally +86), not part of a longer token such as a hex id.
_PHONE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9]\d{9}(?![0-9A-Za-z])")
# Fields we add ourselves; scanning them would only risk mangling ids.
_OWN_KEYS = frozenset({"timestamp", "level", "logger", "service", "trace_id", "span_id"})
_MAX_DEPTH = 6

_HANDLER_MARK = "_scrm_telemetry_handler"


def is_personal_key(key: str) -> bool:
    """Whether a field named ``key`` holds personal data."""
    lowered = key.lower()
    return lowered in PERSONAL_DATA_KEYS or any(part in lowered for part in PERSONAL_DATA_KEY_PARTS)


def scrub_personal_data(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact personal-data fields and mask phone numbers in text."""
    for key in list(event_dict):
        if key in _OWN_KEYS:
            continue
        if is_personal_key(str(key)):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub_value(event_dict[key], 0)
    return event_dict


def _scrub_value(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _PHONE.sub(REDACTED, value)
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_personal_key(str(k)) else _scrub_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v, depth + 1) for v in value]
    # Anything else is rendered as text later; scrub that text now.
    return _PHONE.sub(REDACTED, str(value))


def _add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(ctx.trace_id)
        event_dict["span_id"] = trace.format_span_id(ctx.span_id)
    return event_dict


_LEADING = ("timestamp", "level", "logger", "message", "service", "trace_id", "span_id")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # A fixed head makes lines scannable by eye; the renderer keeps insertion order.
    ordered = {key: event_dict.pop(key) for key in _LEADING if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _add_service(service: str) -> Processor:
    def add_service(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(
    service: str, *, level: str = "INFO", json_output: bool = True, stream: IO[str] | None = None
) -> None:
    """Route stdlib and structlog logging through one scrubbing, trace-aware handler on the root.

    Calling it again replaces the handler it installed before (and leaves other handlers alone).
    ``stream`` defaults to the process's stderr.
    """
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # Fields taken from records of stdlib loggers (structlog's own carry them already).
    foreign_pre_chain: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        timestamper,
    ]
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _add_service(service),
        _add_trace_context,
        structlog.processors.format_exc_info,
        scrub_personal_data,
    ]
    if json_output:
        final += [
            structlog.processors.EventRenamer("message"),
            _leading_keys_first,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign_pre_chain, processors=final)

    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level))

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _level(name: str) -> int:
    level = logging.getLevelName(str(name).upper())
    return level if isinstance(level, int) else logging.INFO


class DropQueryStrings(logging.Filter):
    """Strip query strings from httpx's "HTTP Request: <method> <url>" log lines.

    Server APIs such as WeCom's take the corp secret, the access_token and customer ids in the
    query string; none of those may reach the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx  # imported here: only processes that log httpx requests need it

        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                str(a.copy_with(query=None)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_QUERY_FILTER = DropQueryStrings()


def hide_http_query_strings() -> None:
    """Install :class:`DropQueryStrings` on the ``httpx`` logger (idempotent)."""
    logger = logging.getLogger("httpx")
    if _QUERY_FILTER not in logger.filters:
        logger.addFilter(_QUERY_FILTER)
