"""Continue-as-new carries the whole state; signals that arrive while the
run switches are not lost (time-skipping server, a small history threshold)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import Outcome
from tests.helpers.enrollments import enroll, until_state, waiting
from tests.helpers.journeys import event, journey, send, stage
from workers.worker import build_worker

EVENTS = 12


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.1)


async def test_continue_as_new_carries_the_whole_state_and_loses_no_signal(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "page_viewed", "min_count": EVENTS}}
    j = journey(
        [stage("a", send("welcome"), {"type": "wait", "duration": "P3D"}, send("never"))],
        goal=goal,
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, continue_as_new_after=20)
        await until_state(enrollment, waiting)
        w = enrollment.watermark
        # bursts of concurrent signals: the history passes the threshold meanwhile, so
        # some land while the run is handing over to the next
        for burst in range(0, EVENTS - 1, 4):
            await asyncio.gather(
                *(
                    enrollment.signal("contact_event", event(w + n, "page_viewed"))
                    for n in range(burst + 1, min(burst + 5, EVENTS))
                )
            )
        first = ts_env.client.get_workflow_handle(
            enrollment.workflow_id, run_id=enrollment.handle.result_run_id
        )

        async def continued() -> bool:
            status = (await first.describe()).status
            return status == WorkflowExecutionStatus.CONTINUED_AS_NEW

        await until(continued)
        view = await until_state(enrollment, lambda v: v.contact_seq == w + EVENTS - 1)
        # all but one counted, none twice: the goal is not met yet
        assert view.outcome is None
        await enrollment.signal("contact_event", event(w + EVENTS, "page_viewed"))
        view = await enrollment.result()

    # every event counted exactly once: the goal needs all of them
    assert view.outcome is Outcome.GOAL_MET
    assert view.contact_seq == w + EVENTS
    # the carried state: stage entries, the step counter, the marketing flag
    assert view.stage == "a" and view.stage_entries == 1 and view.marketing_sent
    assert await enrollment.actions() == [
        ("enter_stage", "entered"),
        ("send_message", "queued"),
        ("exit", "goal_met"),
    ]
    assert [r["payload"]["template"] for r in await enrollment.outbox()] == ["welcome"]
    # the three-day wait was not restarted by the new runs
    steps = await enrollment.steps()
    assert (steps[-1]["at"] - steps[0]["at"]).total_seconds() < 86400
