"""Golden samples: realistic events every consumer must accept, and bad ones with their verdicts.

``golden/valid/<type>.v<version>[.<variant>].json`` is produced to the topic named by its type.
``golden/invalid/MANIFEST.json`` gives, per invalid file, the topic it is produced to, the
expected ``InvalidEvent.kind``, the (loc, type) errors it must report, a phrase the reason
must contain, personal data it must not repeat, and ``schema_can_tell: false`` where the
exported JSON Schema cannot see the fault (cross-field rules).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scrm_shared.events import EVENT_CLASSES, InvalidEvent, parse_event
from scrm_shared.events.schema_export import DEFAULT_SCHEMA_DIR, schema_filename

GOLDEN = Path(__file__).parents[1] / "golden"
VALID = sorted((GOLDEN / "valid").glob("*.json"))
INVALID_DIR = GOLDEN / "invalid"
MANIFEST: dict[str, dict[str, Any]] = json.loads((INVALID_DIR / "MANIFEST.json").read_text(encoding="utf-8"))


def test_there_is_a_valid_sample_per_event_type() -> None:
    covered = {json.loads(p.read_text(encoding="utf-8"))["type"] for p in VALID}
    assert covered == set(EVENT_CLASSES)


def test_the_manifest_covers_exactly_the_invalid_files() -> None:
    files = {p.name for p in INVALID_DIR.glob("*.json")} - {"MANIFEST.json"}
    assert files == set(MANIFEST)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_sample_parses_with_the_models(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert path.name.startswith(f"{raw['type']}.v{raw['version']}")
    event = parse_event(raw["type"], path.read_bytes())
    assert isinstance(event, EVENT_CLASSES[raw["type"]])
    assert str(event.event_id) == raw["event_id"]


def _schema_validator(type_name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not a workspace dependency yet")
    schema_path = DEFAULT_SCHEMA_DIR / schema_filename(EVENT_CLASSES[type_name])
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_valid_samples_validate_against_the_exported_schemas() -> None:
    failures = {}
    for path in VALID:
        raw = json.loads(path.read_text(encoding="utf-8"))
        messages = [e.message for e in _schema_validator(raw["type"]).iter_errors(raw)]
        if messages:
            failures[path.name] = messages
    assert not failures


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_invalid_sample_is_rejected_with_the_expected_error(name: str) -> None:
    expected = MANIFEST[name]
    with pytest.raises(InvalidEvent) as info:
        parse_event(expected["topic"], (INVALID_DIR / name).read_bytes())
    exc = info.value
    assert exc.kind == expected["kind"], exc.reason
    reported = [(e["loc"], e["type"]) for e in exc.errors]
    for error in expected.get("errors", []):
        assert (error["loc"], error["type"]) in reported, reported
    assert expected.get("reason_contains", "") in exc.reason
    for personal in expected.get("reason_excludes", []):
        assert personal not in exc.reason
        assert personal not in json.dumps(exc.errors, ensure_ascii=False)


def test_invalid_samples_are_rejected_by_the_exported_schemas_too() -> None:
    accepted = []
    for name, expected in sorted(MANIFEST.items()):
        if expected["kind"] == "undecodable" or not expected.get("schema_can_tell", True):
            continue  # not a JSON object, or a cross-field rule JSON Schema cannot express
        raw = json.loads((INVALID_DIR / name).read_text(encoding="utf-8"))
        if not list(_schema_validator(expected["topic"]).iter_errors(raw)):
            accepted.append(name)
    assert not accepted
