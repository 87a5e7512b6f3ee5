"""One real enrollment, end to end, through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from shared import search_attributes as sa
from tests.helpers.journeys import skeleton_journey
from tests.helpers.stack import eventually, running_stack


async def _start_journey(http: httpx.AsyncClient, wait: str) -> str:
    created = await http.post("/v1/journeys", json=skeleton_journey(wait))
    assert created.status_code == 201, created.text
    journey_id = created.json()["id"]
    activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    contact = await http.put("/v1/contacts/ada", json={"properties": {"first_name": "Ada"}})
    assert contact.status_code == 200, contact.text
    return journey_id


async def _enroll_twice(http: httpx.AsyncClient, journey_id: str) -> str:
    enrolled = await http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "ada"})
    assert enrolled.status_code == 201, enrolled.text
    workflow_id = enrolled.json()["workflow_id"]
    assert workflow_id == f"enrollment/default/{journey_id}/ada"
    again = await http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "ada"})
    assert again.status_code == 409
    assert again.json()["reason"] == "already_enrolled"
    return workflow_id


async def _metrics(http: httpx.AsyncClient, journey_id: str) -> dict:
    response = await http.get(f"/v1/journeys/{journey_id}/metrics")
    assert response.status_code == 200, response.text
    return response.json()


async def test_skeleton_enrollment_on_dev_server(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        journey_id = await _start_journey(http, "PT2S")
        workflow_id = await _enroll_twice(http, journey_id)

        metrics = await _metrics(http, journey_id)
        assert (metrics["enrolled"], metrics["active"]) == (1, 1)

        handle = dev_env.client.get_workflow_handle(workflow_id)
        description = await handle.describe()
        assert description.workflow_type == "EnrollmentWorkflow"
        attrs = description.typed_search_attributes
        assert attrs.get(sa.JOURNEY_ID) == journey_id
        assert attrs.get(sa.CONTACT_ID) == "ada"
        assert attrs.get(sa.JOURNEY_VERSION) == 1

        async def succeeded() -> None:
            metrics = await _metrics(http, journey_id)
            assert metrics["ended"].get("success", {}).get("count") == 1, metrics
            assert metrics["active"] == 0

        await eventually(succeeded)
        await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        outbox = await pool.fetch("SELECT idempotency_key, kind FROM outbox")
        assert [r["kind"] for r in outbox] == ["message"]
        assert outbox[0]["idempotency_key"].startswith(workflow_id + ":")


async def test_skeleton_enrollment_with_three_day_wait_on_time_skipping_server(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, ts_env.client, task_queue) as http:
        journey_id = await _start_journey(http, "P3D")
        workflow_id = await _enroll_twice(http, journey_id)
        metrics = await _metrics(http, journey_id)
        assert (metrics["enrolled"], metrics["active"]) == (1, 1)
        assert metrics["ended"] == {}

        # a handle got by id does not unlock time skipping: skip the three days explicitly
        await ts_env.sleep(timedelta(days=3, minutes=1))
        await ts_env.client.get_workflow_handle(workflow_id).result()
        metrics = await _metrics(http, journey_id)
        assert metrics["ended"]["success"] == {"count": 1, "percent": 100.0}
        assert metrics["active"] == 0
        stage = metrics["stages"][0]
        assert stage["key"] == "welcome" and stage["entered"] == 1
        assert stage["paths"] == [{"to": "end:success", "count": 1, "percent": 100.0}]
