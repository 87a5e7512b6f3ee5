"""docs/design.md, "Entry and refusals": enrollment refuses, in order, with a reason code; a
refused contact never
gets a workflow (time-skipping server, services.enrolling as the API uses it)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from services.enrolling import enroll
from shared.enrollment import workflow_id
from shared.entry import Enrolled, JourneyRecord, Refused
from shared.settings import Settings
from tests.helpers import WORKSPACE
from tests.helpers.journeys import go_to, journey, stage
from workers.worker import build_worker


async def test_3_2_enrollment_refuses_in_order_with_a_reason_code(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [stage("a", go_to("success"))],
        eligible_lists=["trial-users"],
        suppression_lists=["employees"],
        goal={"criteria": {"property": "lifecycle_stage", "op": "eq", "value": "customer"}},
    )
    record = JourneyRecord(WORKSPACE, f"jrn_{uuid.uuid4().hex[:12]}", 1, "active", 1, j)
    contacts = {
        # (properties, lists): each fails the checks before its own only by its own
        "nobody": ({}, []),
        "staff": ({"lifecycle_stage": "customer"}, ["trial-users", "employees"]),
        "buyer": ({"lifecycle_stage": "customer"}, ["trial-users"]),
        "ada": ({}, ["trial-users"]),
    }
    for contact_id, (properties, lists) in contacts.items():
        await pool.execute(
            "INSERT INTO contacts (workspace, id, properties) VALUES ($1, $2, $3)",
            WORKSPACE,
            contact_id,
            properties,
        )
        for name in lists:
            await pool.execute(
                "INSERT INTO list_members (workspace, list, contact_id) VALUES ($1, $2, $3)",
                WORKSPACE,
                name,
                contact_id,
            )
    await pool.execute(
        "INSERT INTO journeys (workspace, id, name, owner, status, definition)"
        " VALUES ($1, $2, $3, $4, 'active', $5)",
        WORKSPACE,
        record.id,
        j.name,
        j.owner,
        j.model_dump(mode="json"),
    )
    await pool.execute(
        "INSERT INTO journey_versions (workspace, journey_id, version, definition, changed_by)"
        " VALUES ($1, $2, 1, $3, 'test')",
        WORKSPACE,
        record.id,
        j.model_dump(mode="json"),
    )
    settings = Settings(task_queue=task_queue)
    async with build_worker(ts_env.client, pool, task_queue):
        results = {
            contact_id: await enroll(pool, ts_env.client, settings, record, contact_id)
            for contact_id in contacts
        }
        again = await enroll(pool, ts_env.client, settings, record, "ada")
        handle = ts_env.client.get_workflow_handle(workflow_id(WORKSPACE, record.id, "ada"))
        described = await handle.describe()
    assert isinstance(results.pop("ada"), Enrolled)
    assert {c: r.reason for c, r in results.items() if isinstance(r, Refused)} == {
        "nobody": "not_eligible",
        "staff": "suppressed",
        "buyer": "goal_already_met",
    }
    assert isinstance(again, Refused) and again.reason == "already_enrolled"
    assert described.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    for refused in results:
        refused_id = workflow_id(WORKSPACE, record.id, refused)
        with pytest.raises(RPCError) as missing:
            await ts_env.client.get_workflow_handle(refused_id).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    refusals = await pool.fetch(
        "SELECT contact_id, reason FROM refusals WHERE journey_id = $1 ORDER BY contact_id",
        record.id,
    )
    assert [(r["contact_id"], r["reason"]) for r in refusals] == [
        ("ada", "already_enrolled"),
        ("buyer", "goal_already_met"),
        ("nobody", "not_eligible"),
        ("staff", "suppressed"),
    ]
