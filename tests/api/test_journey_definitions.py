"""Journey definitions over HTTP: the schema, validate-without-saving, and 422s that name path
and reason."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.stack import running_stack

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
TRIAL = json.loads((EXAMPLES[0].parent / "trial_to_paid.json").read_text())


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    journey = copy.deepcopy(TRIAL)
    change(journey)
    return journey


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(journey: dict[str, Any]) -> None:
        node = journey
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


MALFORMED = [
    ("unknown field", _set(["colour"], "blue"), "colour", "unknown_field"),
    (
        "missing stage property",
        lambda j: j.pop("stage_property"),
        "stage_property",
        "missing_field",
    ),
    (
        "bad duration",
        _set(["stages", 0, "actions", 1, "duration"], "two days"),
        "stages[0].actions[1].duration",
        "invalid_duration",
    ),
    (
        "negative duration",
        _set(["stages", 0, "actions", 1, "duration"], "-P1D"),
        "stages[0].actions[1].duration",
        "duration_not_positive",
    ),
    (
        "unknown action type",
        _set(["stages", 0, "actions", 0, "type"], "send_pigeon"),
        "stages[0].actions[0].type",
        "unknown_action_type",
    ),
    (
        "go_to nowhere",
        _set(["stages", 1, "actions", 2, "target"], "nowhere"),
        "stages[1].actions[2].target",
        "unknown_go_to_target",
    ),
    (
        "duplicate stage key",
        _set(["stages", 1, "key"], "onboarding"),
        "stages[1].key",
        "duplicate_stage_key",
    ),
    ("unknown start stage", _set(["start_stage"], "limbo"), "start_stage", "unknown_start_stage"),
    ("no actions", _set(["stages", 2, "actions"], []), "stages[2].actions", "no_actions"),
    (
        "six eligible lists",
        _set(["eligible_lists"], [f"l{i}" for i in range(6)]),
        "eligible_lists",
        "too_many_eligible_lists",
    ),
    (
        "busy loop",
        _set(["stages", 1, "actions"], [{"type": "go_to", "target": "nudge"}]),
        "stages[1]",
        "busy_loop",
    ),
    (
        "end collides with stage",
        _set(["ends", "success", "value"], "engaged"),
        "ends.success.value",
        "end_value_collides_with_stage",
    ),
]


@pytest.fixture
async def http(dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> Any:
    async with running_stack(pool, dev_env.client, task_queue) as client:
        yield client


async def test_examples_validate_and_save(http: Any) -> None:
    assert len(EXAMPLES) >= 3
    for example in EXAMPLES:
        body = json.loads(example.read_text())
        checked = await http.post("/v1/journeys/validate", json=body)
        assert checked.status_code == 200
        assert checked.json()["valid"], (example.name, checked.json())
        saved = await http.post("/v1/journeys", json=body)
        assert saved.status_code == 201, saved.text
        assert saved.json()["status"] == "draft"
        assert saved.json()["definition"]["stages"] == json.loads(
            json.dumps(saved.json()["definition"]["stages"])
        )


@pytest.mark.parametrize(
    ("kind", "change", "path", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
async def test_malformed_journey_gets_422_naming_path_and_reason(
    http: Any, kind: str, change: Callable[[dict[str, Any]], None], path: str, reason: str
) -> None:
    response = await http.post("/v1/journeys", json=broken(change))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["reason"] == "invalid_journey"
    found = {(p["path"], p["reason"]) for p in body["problems"]}
    assert any(p.startswith(path) and r == reason for p, r in found), found
    assert (await http.get("/v1/journeys")).json()["items"] == []  # nothing saved


async def test_all_problems_come_at_once(http: Any) -> None:
    journey = broken(_set(["start_stage"], "limbo"))
    journey["stages"][1]["key"] = "onboarding"
    journey["stages"][0]["actions"][1]["duration"] = "-PT1S"
    response = await http.post("/v1/journeys", json=journey)
    reasons = {p["reason"] for p in response.json()["problems"]}
    assert {"unknown_start_stage", "duplicate_stage_key", "duration_not_positive"} <= reasons


@pytest.mark.parametrize("body", [b"", b"[]", b"not json", b"null", b'"a string"', b"{"])
async def test_garbage_bodies_are_422_not_500(http: Any, body: bytes) -> None:
    response = await http.post(
        "/v1/journeys", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "reason" in response.json()


async def test_schema_and_openapi_describe_a_journey(http: Any) -> None:
    schema = (await http.get("/v1/journeys/schema")).json()
    assert {"stages", "ends", "goal", "stage_property"} <= set(schema["properties"])
    openapi = (await http.get("/openapi.json")).json()
    assert "Journey" in openapi["components"]["schemas"]


async def test_unreachable_stage_is_a_warning_returned_with_the_save(http: Any) -> None:
    journey = copy.deepcopy(TRIAL)
    journey["stages"].append(
        {"key": "orphan", "value": "orphan", "actions": [{"type": "wait", "duration": "P1D"}]}
    )
    response = await http.post("/v1/journeys", json=journey)
    assert response.status_code == 201, response.text
    warnings = {(w["path"], w["reason"]) for w in response.json()["warnings"]}
    assert ("stages[3]", "unreachable_stage") in warnings, warnings


async def test_a_body_over_the_size_limit_is_413(http: Any) -> None:
    journey = copy.deepcopy(TRIAL)
    journey["name"] = "x" * (3 * 1024 * 1024)
    response = await http.post("/v1/journeys", json=journey)
    assert response.status_code == 413
    assert response.json()["reason"] == "payload_too_large"

    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 100_000

    streamed = await http.post(
        "/v1/journeys", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
