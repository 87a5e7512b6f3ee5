"""The walking skeleton's journey run by the workflow directly:
send_message, a three-day wait, go_to success, on the time-skipping server."""

from __future__ import annotations

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from shared import search_attributes as sa
from shared.enrollment import Outcome, Phase
from tests.helpers.enrollments import enroll
from tests.helpers.journeys import go_to, journey, send, stage, wait
from workers.worker import build_worker


async def test_send_wait_go_to_success_writes_outbox_and_read_models(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    skeleton = journey([stage("welcome", send("welcome"), wait("P3D"), go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, skeleton)
        view = await enrollment.result()

    assert view.phase is Phase.COMPLETED
    assert view.outcome is Outcome.SUCCESS and view.end_value == "customer"

    outbox = await enrollment.outbox()
    assert [(r["kind"], r["channel"]) for r in outbox] == [("message", "email")]
    assert outbox[0]["idempotency_key"].startswith(enrollment.workflow_id + ":")
    assert outbox[0]["payload"]["template"] == "welcome"

    row = await enrollment.row()
    assert row["status"] == "completed" and row["outcome"] == "success"
    assert row["end_value"] == "customer" and row["marketing_sent"]
    assert row["stage"] == "welcome"
    assert row["ended_at"] is not None and row["completed_at"] is not None
    # the three days were skipped, and the log says so
    assert (row["ended_at"] - row["enrolled_at"]).days >= 3

    assert await enrollment.actions() == [
        ("enter_stage", "entered"),
        ("send_message", "queued"),
        ("wait", "elapsed"),
        ("go_to", "jumped"),
        ("end", "success"),
    ]
    assert await enrollment.stage_stats() == {"welcome": (1, 0)}
    assert await enrollment.stage_paths() == {("welcome", "end:success"): 1}
    assert (await enrollment.contact_properties())["journey_stage"] == "customer"

    description = await enrollment.handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert description.typed_search_attributes.get(sa.ENROLLMENT_OUTCOME) == "success"
    assert description.typed_search_attributes.get(sa.JOURNEY_STAGE) == "welcome"

    # history events per action near the minimum: one activity for the
    # send (the stage entry's bookkeeping rides along), one timer for the wait, and one
    # local-activity marker writing the end; no bookkeeping activities
    # (what workflow.patched writes, a marker and a TemporalChangeVersion upsert once per
    # patch, is not part of an action's cost)
    def of_a_patch(event: HistoryEvent) -> bool:
        upserted = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        return event.marker_recorded_event_attributes.marker_name == "core_patch" or list(
            upserted.indexed_fields
        ) == ["TemporalChangeVersion"]

    history = await enrollment.handle.fetch_history()
    kinds = [e.event_type for e in history.events if not of_a_patch(e)]
    assert kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1
    assert kinds.count(EventType.EVENT_TYPE_TIMER_STARTED) == 1
    assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 1
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 3
    assert len(kinds) == 18
