"""Signals that arrive while an activity is in flight (time-skipping server).

docs/design.md, "Stage moves" under a race: the caller sets the stage property while the
journey's own
write of it is in flight. Whichever commits first, the caller's move must win in the
database and in the workflow. And an event during the action before a `wait_for_event`
does not answer that wait (DECISIONS: it counts events from the moment it starts).

The journey's write of stage "a" rides along with the first send. The send activity here
is the real one, wrapped so that the caller's write lands just before or just after the
activity's transaction, and the caller's snapshot (what the relay would signal) reaches
the workflow while the activity is still running."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from shared.enrollment import ContactChanged, EnrollmentRef, Outcome, StepRecord, WriteProperty
from store import contacts as contacts_store
from tests.helpers import WORKSPACE
from tests.helpers.enrollments import Enrollment, enroll, until_state
from tests.helpers.journeys import event, go_to, journey, send, stage, wait, wait_for_event
from workers.activities import JourneyActivities
from workers.steps import SEND_MESSAGE, SendMessageRequest, StepRequest, StepResult
from workers.worker import build_worker

JOURNEY = journey(
    [
        stage("a", send("first"), wait("P3D"), go_to("failure:churned")),
        stage("b", send("in-b"), go_to("success")),
    ]
)


@dataclass
class CallerMovesDuringFirstSend:
    real: JourneyActivities
    pool: asyncpg.Pool
    caller_first: bool
    enrollment: list[Enrollment] = field(default_factory=list)
    moved: bool = False

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        if self.moved:
            return await self.real.send_message(request)
        self.moved = True
        if self.caller_first:
            await self._caller_sets_b()
        result = await self.real.send_message(request)
        if not self.caller_first:
            await self._caller_sets_b()
        # the relay's snapshot of the contact, read now, reaches the workflow before the
        # activity's result does
        row = await self.pool.fetchrow(
            "SELECT seq, properties FROM contacts WHERE workspace = $1 AND id = $2",
            WORKSPACE,
            request.enrollment.contact_id,
        )
        assert row is not None
        enrollment = self.enrollment[0]
        snapshot = ContactChanged(seq=row["seq"], properties=row["properties"])
        await enrollment.signal("contact_changed", snapshot)
        await until_state(enrollment, lambda v: v.contact_seq >= row["seq"])
        return result

    async def _caller_sets_b(self) -> None:
        await contacts_store.write_property(self.pool, WORKSPACE, "ada", "journey_stage", "b")


@pytest.mark.parametrize("caller_first", [True, False], ids=["caller_first", "journey_first"])
async def test_the_callers_stage_move_wins_over_the_journeys_write_in_flight(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, caller_first: bool
) -> None:
    real = JourneyActivities(pool)
    racing = CallerMovesDuringFirstSend(real, pool, caller_first)
    async with build_worker(
        ts_env.client,
        pool,
        task_queue,
        activities=[racing.send_message, real.record_steps],
    ):
        racing.enrollment.append(await enroll(ts_env.client, pool, task_queue, JOURNEY))
        enrollment = racing.enrollment[0]
        view = await enrollment.result()
    assert racing.moved
    # the contact moved to b between actions: b's send, then success
    assert view.outcome is Outcome.SUCCESS, view
    assert [r["payload"]["template"] for r in await enrollment.outbox()] == ["first", "in-b"]
    assert await enrollment.stage_paths() == {("a", "b"): 1, ("b", "end:success"): 1}
    # and the journey's own write of "a" never overwrote the caller's "b" (the end value
    # came after it)
    assert (await enrollment.contact_properties())["journey_stage"] == "customer"


async def test_a_retried_step_reports_what_its_writes_came_to(pool: asyncpg.Pool) -> None:
    """The first attempt committed and its result was lost: the retry finds the step row,
    runs nothing again, and still returns the contact sequence and the refused writes
    (without them the workflow could not date its own write)."""
    activities = JourneyActivities(pool)
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ($1, 'ada', $2)",
        WORKSPACE,
        {"journey_stage": "b"},
    )
    ref = EnrollmentRef(
        workspace=WORKSPACE, journey_id="jrn_1", contact_id="ada", workflow_id="enrollment/x"
    )
    writes = [
        WriteProperty(property="journey_stage", value="a", conditional=True, expected=None),
        WriteProperty(property="score", value=3),
    ]
    record = StepRecord(
        step_seq=1, at=datetime.now(UTC), stage="a", action="x", result="y", effects=writes
    )
    request = StepRequest(enrollment=ref, pending=[record])
    env = ActivityEnvironment()
    first = await env.run(activities.record_steps, request)
    again = await env.run(activities.record_steps, request)
    assert first.applied == [1] and again.applied == []
    assert first.refused_writes == again.refused_writes == ["journey_stage"]
    assert first.contact_seq is not None and again.contact_seq == first.contact_seq
    properties = await pool.fetchval("SELECT properties FROM contacts WHERE id = 'ada'")
    assert properties == {"journey_stage": "b", "score": 3}


@dataclass
class EventDuringFirstSend:
    real: JourneyActivities
    enrollment: list[Enrollment] = field(default_factory=list)

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        result = await self.real.send_message(request)
        enrollment = self.enrollment[0]
        seq = enrollment.watermark + 1
        await enrollment.signal("contact_event", event(seq, "form_submitted", "demo-request"))
        await until_state(enrollment, lambda v: v.contact_seq >= seq)
        return result


async def test_an_event_during_the_action_before_a_wait_for_event_does_not_answer_it(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    waits = wait_for_event(
        "form_submitted", "P5D", "demo-request", on_event="engaged", on_timeout="nudge"
    )
    j = journey(
        [
            stage("a", send("first"), waits),
            stage("engaged", go_to("success")),
            stage("nudge", go_to("failure:churned")),
        ]
    )
    real = JourneyActivities(pool)
    during = EventDuringFirstSend(real)
    async with build_worker(
        ts_env.client, pool, task_queue, activities=[during.send_message, real.record_steps]
    ):
        during.enrollment.append(await enroll(ts_env.client, pool, task_queue, j))
        view = await during.enrollment[0].result()
    assert view.outcome is Outcome.FAILURE and view.end_value == "churned"
    assert ("wait_for_event", "timeout") in await during.enrollment[0].actions()
