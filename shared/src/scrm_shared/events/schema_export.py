"""Export the JSON Schema of every event type, for producers that are not written in Python.

One file per type and version, ``<type>.v<version>.schema.json`` (draft 2020-12), written to
``shared/schemas/`` by ``make schemas`` (``scrm schemas export``). Output is deterministic
(sorted keys, 2-space indent, trailing newline) so a stale committed file shows up as a diff,
and a unit test fails until the files are regenerated.

What the schemas cannot say (checked by the consumers, documented in docs/events.md): an
order's ``total_amount`` equals sum(quantity × unit_price) - discount_amount.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scrm_shared.events.envelope import EventEnvelope
from scrm_shared.events.registry import ALL_EVENT_CLASSES

__all__ = ["DEFAULT_SCHEMA_DIR", "event_schema", "export_all", "render_schemas", "schema_filename"]

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
"""``shared/schemas/`` of the source tree this module lives in."""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(event_cls: type[EventEnvelope]) -> str:
    """``<type>.v<version>.schema.json``."""
    return f"{event_cls.TYPE}.v{event_cls.VERSION}.schema.json"


def event_schema(event_cls: type[EventEnvelope]) -> dict[str, Any]:
    """The JSON Schema (validation mode: what consumers accept) of one event class."""
    schema = event_cls.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:scrm:event:{event_cls.TYPE}:v{event_cls.VERSION}",
        **schema,
        "title": f"{event_cls.TYPE} v{event_cls.VERSION}",
    }


def _render(schema: dict[str, Any]) -> str:
    # ensure_ascii=False keeps Chinese descriptions readable; sort_keys makes diffs meaningful.
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """File name -> file content for every event type and version, without writing anything."""
    return {schema_filename(cls): _render(event_schema(cls)) for cls in ALL_EVENT_CLASSES}


def export_all(out: str | Path | None = None) -> list[Path]:
    """Write every schema file to ``out`` (default ``shared/schemas/``); return the paths.

    Files are rewritten only when their content changed, so the command is cheap to rerun.
    Files of types or versions that no longer exist are left alone: producers may still
    reference them, and removing one is a deliberate commit.
    """
    target = Path(out) if out is not None else DEFAULT_SCHEMA_DIR
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in render_schemas().items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
