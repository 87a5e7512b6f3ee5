"""docs/design.md, "Ends" and "Goal conversions": ends with add_to_list, the attribution window
and the `state`
query's phases, and which goals count as a conversion (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from temporalio.testing import WorkflowEnvironment

from shared import search_attributes as sa
from shared.enrollment import Outcome, Phase
from tests.helpers.enrollments import Enrollment, enroll, until_state, waiting
from tests.helpers.journeys import event, go_to, journey, send, stage, wait
from workers.worker import build_worker

GOAL = {
    "criteria": {"event": "form_submitted", "target": "pricing", "min_count": 1},
    "attribution_window": "P3D",
}
ENDS = {"success": {"value": "customer", "add_to_list": "customers"}, "failure": []}


async def conversions(enrollment: Enrollment) -> int:
    count: int = await enrollment.pool.fetchval(
        "SELECT count(*) FROM conversions WHERE journey_id = $1", enrollment.journey_id
    )
    return count


async def test_3_5_success_end_adds_to_list_then_the_window_listens_until_it_closes(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", wait("PT1H"), send("welcome"), go_to("success"))], goal=GOAL, ends=ENDS)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        assert (await until_state(enrollment, waiting)).phase is Phase.RUNNING
        await ts_env.sleep(timedelta(hours=1, minutes=1))
        view = await until_state(enrollment, lambda v: v.phase is Phase.IN_ATTRIBUTION_WINDOW)
        assert view.outcome is Outcome.SUCCESS and view.window_until is not None
        assert "attribution window open until" in view.details
        # add_to_list ran at the end, before the window
        assert await list_members(enrollment) == ["customers"]
        row = await enrollment.row()
        assert (row["status"], row["outcome"]) == ("in_attribution_window", "success")
        described = await enrollment.handle.describe()
        assert described.typed_search_attributes.get(sa.ENROLLMENT_OUTCOME) == "success"
        view = await enrollment.result()
    assert view.phase is Phase.COMPLETED and view.outcome is Outcome.SUCCESS
    steps = await enrollment.steps()
    assert [(r["action"], r["result"]) for r in steps[-2:]] == [
        ("end", "success"),
        ("complete", "completed"),
    ]
    assert (steps[-1]["at"] - steps[-2]["at"]).total_seconds() >= 3 * 86400
    assert (await enrollment.row())["status"] == "completed"
    assert await conversions(enrollment) == 0


async def list_members(enrollment: Enrollment) -> list[str]:
    rows = await enrollment.pool.fetch(
        "SELECT list FROM list_members WHERE contact_id = $1 ORDER BY list",
        enrollment.contact_id,
    )
    return [r["list"] for r in rows]


async def test_3_5_failure_end_adds_to_its_list(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    ends = {"success": {"value": "customer"}, "failure": [{"value": "lost", "add_to_list": "lost"}]}
    j = journey([stage("a", go_to("failure:lost"))], ends=ends)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await enrollment.result()
    assert (view.outcome, view.end_value, view.phase) == (Outcome.FAILURE, "lost", Phase.COMPLETED)
    assert await list_members(enrollment) == ["lost"]


async def test_3_6_a_goal_met_in_the_window_after_a_marketing_message_counts_once(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", send("welcome"), go_to("success"))], goal=GOAL, ends=ENDS)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, lambda v: v.phase is Phase.IN_ATTRIBUTION_WINDOW)
        goal_event = event(enrollment.watermark + 1, "form_submitted", "pricing")
        await enrollment.signal("contact_event", goal_event)
        await enrollment.signal("contact_event", goal_event)
        view = await enrollment.result()
    assert view.outcome is Outcome.SUCCESS and view.phase is Phase.COMPLETED
    assert ("goal_met", "after_end") in await enrollment.actions()
    assert await conversions(enrollment) == 1


async def test_3_6_a_goal_met_without_any_marketing_message_does_not_count(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", send("receipt", marketing=False), wait("P1D"))], goal=GOAL)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        goal_event = event(enrollment.watermark + 1, "form_submitted", "pricing")
        await enrollment.signal("contact_event", goal_event)
        view = await enrollment.result()
    assert view.outcome is Outcome.GOAL_MET
    assert await conversions(enrollment) == 0


async def test_3_6_a_goal_met_while_enrolled_after_a_marketing_message_counts(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", send("welcome"), wait("P1D"))], goal=GOAL)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        goal_event = event(enrollment.watermark + 1, "form_submitted", "pricing")
        await enrollment.signal("contact_event", goal_event)
        view = await enrollment.result()
    assert view.outcome is Outcome.GOAL_MET and view.window_until is None
    assert await conversions(enrollment) == 1
