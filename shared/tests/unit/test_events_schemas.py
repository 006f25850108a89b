"""The exported JSON Schema files: committed, current, and usable without Python."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scrm_shared.events import ALL_EVENT_CLASSES, OrderPlacedEvent
from scrm_shared.events.primitives import MONEY_PATTERN, RFC3339_PATTERN
from scrm_shared.events.schema_export import DEFAULT_SCHEMA_DIR, event_schema, export_all, render_schemas

STALE = "is stale or missing: run `make schemas` (scrm schemas export) and commit shared/schemas/"


def test_default_schema_dir_is_shared_schemas() -> None:
    assert DEFAULT_SCHEMA_DIR == Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(render_schemas()))
def test_committed_schema_file_is_current(name: str) -> None:
    path = DEFAULT_SCHEMA_DIR / name
    assert path.exists(), f"shared/schemas/{name} {STALE}"
    committed = path.read_text(encoding="utf-8")
    assert committed == render_schemas()[name], f"shared/schemas/{name} {STALE}"


def test_export_is_deterministic_and_writes_one_file_per_type_version(tmp_path: Path) -> None:
    paths = export_all(str(tmp_path))
    assert sorted(p.name for p in paths) == sorted(
        f"{cls.TYPE}.v{cls.VERSION}.schema.json" for cls in ALL_EVENT_CLASSES
    )
    first = {p.name: p.read_bytes() for p in paths}
    export_all(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first
    for content in first.values():
        assert content.endswith(b"}\n")
        text = content.decode("utf-8")
        assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}/{i}"))
    return found


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=lambda c: c.TYPE)
def test_schema_states_the_wire_rules(cls: type) -> None:
    schema = event_schema(cls)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {
        "event_id",
        "type",
        "version",
        "tenant_id",
        "occurred_at",
        "source",
        "data",
    }
    props = schema["properties"]
    assert props["type"]["const"] == cls.TYPE and props["version"]["const"] == cls.VERSION
    assert props["event_id"]["format"] == "uuid"
    nodes = _walk(schema)
    times = [n for _, n in nodes if n.get("format") == "date-time"]
    assert times and all(n["type"] == "string" and n["pattern"] == RFC3339_PATTERN for n in times)
    # No money or time may be described as a number anywhere.
    assert not [p for p, n in nodes if n.get("type") == "number"]
    # Producers may add fields: nothing forbids additional properties.
    assert not [p for p, n in nodes if n.get("additionalProperties") is False]


def test_order_schema_describes_money_as_pattern_strings_and_the_identity_rule() -> None:
    schema = event_schema(OrderPlacedEvent)
    defs = schema["$defs"]
    money = [defs["OrderPlaced"]["properties"]["total_amount"], defs["OrderLine"]["properties"]["unit_price"]]
    for node in money:
        assert node["type"] == "string" and node["pattern"] == MONEY_PATTERN
    assert [branch["required"] for branch in defs["Customer"]["anyOf"]] == [
        ["external_userid"],
        ["unionid"],
        ["member_id"],
        ["phone_hash"],
    ]
    assert "sum(quantity × unit_price)" in defs["OrderPlaced"]["description"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("128.50", True),
        ("0", True),
        ("1299", True),
        ("12.345", False),
        ("-1.00", False),
        ("NaN", False),
        ("1e3", False),
        ("01.00", False),
    ],
)
def test_money_pattern_agrees_with_the_models(value: str, ok: bool) -> None:
    # Non-Python producers see only the pattern; it must say what the models say.
    assert bool(re.search(MONEY_PATTERN, value)) is ok
