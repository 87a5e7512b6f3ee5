"""docs/journeys.md names every field of the journey's JSON Schema (GET /v1/journeys/schema)
and every action type, so the reference cannot fall behind the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.journey import Journey

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "journeys.md"


def _fields(schema: dict[str, Any]) -> set[str]:
    found = set(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        found |= set(definition.get("properties", {}))
    return found


def test_every_field_and_action_type_is_in_the_reference() -> None:
    schema = Journey.model_json_schema()
    text = REFERENCE.read_text()
    missing = sorted(f for f in _fields(schema) if f"`{f}`" not in text and f'"{f}"' not in text)
    assert missing == []
    actions = [
        d["properties"]["type"]["const"]
        for d in schema["$defs"].values()
        if "type" in d.get("properties", {}) and "const" in d["properties"]["type"]
    ]
    assert len(actions) == 9
    assert [a for a in actions if f"`{a}`" not in text] == []
