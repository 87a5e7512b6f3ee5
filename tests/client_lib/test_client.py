"""The Python client against the real API: a method for every OpenAPI operation (sync and
async), errors with the API's reason, paging, and simulate returning typed results."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
from nurture_client import (
    API_VERSION,
    OPERATIONS,
    AsyncNurture,
    Nurture,
    NurtureError,
    journey,
    send,
    split,
    stage,
    wait,
)
from nurture_client.journeys import problems
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from shared.settings import Settings
from tests.helpers.stack import running_stack

ROOT = Path(__file__).resolve().parents[2]


def test_every_operation_has_a_method_sync_and_async() -> None:
    document = create_app(Settings()).openapi()
    operations = sorted(
        op["operationId"] for verbs in document["paths"].values() for op in verbs.values()
    )
    assert sorted(OPERATIONS) == operations
    missing = [op for op in operations if not hasattr(Nurture, op) or not hasattr(AsyncNurture, op)]
    assert missing == []
    assert API_VERSION == document["info"]["version"]


async def test_the_client_drives_the_api(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    definition = journey(
        "Client journey", "client@example.test",
        [stage("a", split("subject", A=50, B=50), send("welcome"), wait("P1D"))],
        stage_property="client_stage",
        goal={"criteria": {"event": "purchase"}, "attribution_window": "P1D"},
    )  # fmt: skip
    async with running_stack(pool, dev_env.client, task_queue) as http:
        key = http.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncNurture(str(http.base_url), key) as client:
            created = await client.create_journey(definition)
            journey_id = created["id"]
            await client.activate_journey(journey_id, force=True)
            await client.upsert_contact("ada", {"properties": {"email": "ada@example.test"}})
            enrolled = await client.enroll_contact(journey_id, {"contact_id": "ada"})
            assert enrolled["workflow_id"] == f"enrollment/default/{journey_id}/ada"
            listed = [j["id"] async for j in client.pages(client.list_journeys, limit=1)]
            assert journey_id in listed
            try:
                await client.get_journey("jrn_missing")
            except NurtureError as error:
                assert (error.status, error.reason) == (404, "journey_not_found")
            else:
                raise AssertionError("a missing journey did not raise")
            found = await client.simulate(
                journey_id,
                contact={"id": "sim", "properties": {"email": "s@example.test"}},
                timeline=[{"at": "PT5H", "event": {"type": "purchase"}}],
                force={"subject": "B"},
            )
            metrics = await client.journey_metrics(journey_id)
    assert found.outcome == "goal_met" and found.converted and found.finished
    assert [d["node"] for d in found.decisions] == ["split:subject/B"]
    assert found.path[:2] == [("a", "enter_stage"), ("a", "split")]
    assert metrics["enrolled"] == 1


def test_builders_refuse_what_they_can_see_alone() -> None:
    import pytest

    with pytest.raises(ValueError, match="add up to 100"):
        split("s", A=50, B=40)
    with pytest.raises(ValueError, match="unique"):
        journey("j", "o@x.test", [stage("a", wait("P1D")), stage("a", wait("P1D"))],
                stage_property="p")  # fmt: skip
    with pytest.raises(ValueError, match="ISO-8601"):
        wait("3 days")
    # the journey's JSON Schema, bundled, refuses before anything is sent
    with pytest.raises(ValueError, match="not a valid journey"):
        journey("j", "o@x.test", [stage("a", wait("P1D"))], stage_property="p", colour="blue")
    for example in sorted((ROOT / "examples").glob("*.json")):
        assert problems(json.loads(example.read_text())) == [], example
    broken = json.loads((ROOT / "examples" / "trial_to_paid.json").read_text())
    del broken["owner"]
    assert problems(broken) == ["journey: 'owner' is a required property"]


def test_the_generated_parts_are_current() -> None:
    """scripts/client.py was run after the API changed: the bundled schema is the API's."""
    from scripts.client import SCHEMA, journey_schema

    assert SCHEMA.read_text() == journey_schema()
