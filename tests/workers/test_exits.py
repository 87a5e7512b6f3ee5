"""docs/design.md, "One enrollment per contact" and "Exits": one enrollment ever; exits on
signals and between actions, each
with its outcome code and the evaluator's explanation (time-skipping server)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import asyncpg
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment

from shared import search_attributes as sa
from shared.contact import ContactState
from shared.enrollment import ContactChanged, EnrollmentInput, Outcome, Phase, Unenroll
from tests.helpers.enrollments import enroll, until_state, waiting
from tests.helpers.journeys import event, go_to, journey, send, stage, wait
from workers.activities import JourneyActivities
from workers.steps import SEND_MESSAGE, SendMessageRequest, StepResult
from workers.worker import build_worker

PRICING_GOAL = {"criteria": {"event": "form_submitted", "target": "pricing", "min_count": 1}}


async def test_3_1_one_enrollment_per_contact_per_journey_ever(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await enrollment.result()
        again = EnrollmentInput(
            workspace="default",
            journey_id=enrollment.journey_id,
            journey_version=1,
            journey=j,
            contact_id=enrollment.contact_id,
            contact=ContactState(),
        )
        # the first enrollment completed, and still the id cannot run again
        with pytest.raises(WorkflowAlreadyStartedError):
            await ts_env.client.start_workflow(
                "EnrollmentWorkflow",
                again,
                id=enrollment.workflow_id,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )


async def test_3_3_goal_met_during_a_three_day_wait_exits_at_once_and_no_action_follows(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", wait("P3D"), send("never"), go_to("success"))], goal=PRICING_GOAL)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        await enrollment.signal(
            "contact_event", event(enrollment.watermark + 1, "form_submitted", "pricing")
        )
        view = await enrollment.result()
    assert view.outcome is Outcome.GOAL_MET and view.phase is Phase.COMPLETED
    assert view.explanation is not None and view.explanation["result"] is True
    assert await enrollment.outbox() == []
    steps = await enrollment.steps()
    assert [(r["action"], r["result"]) for r in steps] == [
        ("enter_stage", "entered"),
        ("exit", "goal_met"),
    ]
    # the exit happened in the same second of (skipped) time as the wait began
    assert (steps[-1]["at"] - steps[0]["at"]).total_seconds() < 1
    assert steps[-1]["detail"]["explanation"] == view.explanation
    row = await enrollment.row()
    assert (row["outcome"], row["status"]) == ("goal_met", "completed")
    events = (await enrollment.handle.fetch_history()).events
    assert not any(e.event_type == EventType.EVENT_TYPE_TIMER_FIRED for e in events)


class SlowSend:
    """A stand-in for the send_message activity that heartbeats until it is cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        self.started.set()
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_3_3_an_exit_cancels_a_running_activity_and_waits_for_the_cancellation(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    slow = SlowSend()
    real = JourneyActivities(pool)
    j = journey([stage("a", send("slow"), send("never"), go_to("success"))])
    async with build_worker(
        ts_env.client,
        pool,
        task_queue,
        activities=[slow.send_message, real.record_steps],
        # heartbeats reach the server at least every half second, so the cancellation
        # arrives quickly (the default throttle is 80% of the heartbeat timeout)
        max_heartbeat_throttle_interval=timedelta(seconds=0.5),
        default_heartbeat_throttle_interval=timedelta(seconds=0.5),
    ):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await asyncio.wait_for(slow.started.wait(), 30)
        await enrollment.signal("unenroll", Unenroll())
        view = await enrollment.result()
    assert slow.cancelled
    assert view.outcome is Outcome.UNENROLLED
    assert await enrollment.actions() == [("enter_stage", "entered"), ("exit", "unenrolled")]
    kinds = [e.event_type for e in (await enrollment.handle.fetch_history()).events]
    # the cancellation was awaited: the activity's end is in the history before the close
    assert kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) < kinds.index(
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    )
    assert kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1


class DeafSend:
    """A send deaf to the exit's cancellation (it does not heartbeat) until the test lets
    it go, then raising `error`. Its worker gone (never let go before the heartbeat
    timeout), Temporal ends it by that timeout; busy in Postgres, it fails instead."""

    def __init__(self, error: ApplicationError) -> None:
        self.error = error
        self.started = asyncio.Event()
        self.release = asyncio.Event()  # the test lets it go, so the worker can stop

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        self.started.set()
        while not self.release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # deaf to the cancellation
                await self.release.wait()
        raise self.error


async def test_an_exit_outlives_an_activity_whose_worker_died(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """Found by the scale-out test: the exit's cancellation never reached the dead worker's
    activity, which then timed out, and the workflow failed with the timeout. (On the dev
    server, in real time: the time-skipping server does not skip while an activity runs;
    the heartbeat timeout is 30 s.)"""
    ts_env = dev_env
    lost = DeafSend(ApplicationError("the worker is gone", non_retryable=True))
    real = JourneyActivities(pool)
    j = journey([stage("a", send("lost"), send("never"), go_to("success"))])
    async with build_worker(
        ts_env.client, pool, task_queue, activities=[lost.send_message, real.record_steps]
    ):
        try:
            enrollment = await enroll(ts_env.client, pool, task_queue, j)
            await asyncio.wait_for(lost.started.wait(), 30)
            await enrollment.signal("unenroll", Unenroll())
            view = await asyncio.wait_for(enrollment.result(), 60)  # the heartbeat timeout
        finally:
            lost.release.set()
    assert view.outcome is Outcome.UNENROLLED
    assert await enrollment.actions() == [("enter_stage", "entered"), ("exit", "unenrolled")]
    kinds = [e.event_type for e in (await enrollment.handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT in kinds


async def test_an_exit_outlives_an_activity_that_fails_while_it_is_cancelled(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """On the dev server, in real time: the time-skipping server skipped the run to its
    timeout while the test watched the history."""
    ts_env = dev_env
    # as a deadlock Postgres broke did, in the scale-out test: not retried, cancellation
    # asked, so the workflow gets the failure instead of the cancellation
    failing = DeafSend(ApplicationError("deadlock detected", type="DeadlockDetectedError"))
    real = JourneyActivities(pool)
    j = journey([stage("a", send("failing"), send("never"), go_to("success"))])
    async with build_worker(
        ts_env.client, pool, task_queue, activities=[failing.send_message, real.record_steps]
    ):
        try:
            enrollment = await enroll(ts_env.client, pool, task_queue, j)
            await asyncio.wait_for(failing.started.wait(), 30)
            await enrollment.signal("unenroll", Unenroll())

            async def cancel_asked() -> bool:
                events = (await enrollment.handle.fetch_history()).events
                kinds = [e.event_type for e in events]
                return EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in kinds

            while not await cancel_asked():
                await asyncio.sleep(0.05)
        finally:
            failing.release.set()
        view = await asyncio.wait_for(enrollment.result(), 30)
    assert view.outcome is Outcome.UNENROLLED
    assert await enrollment.actions() == [("enter_stage", "entered"), ("exit", "unenrolled")]
    assert (await enrollment.row())["outcome"] == "unenrolled"
    kinds = [e.event_type for e in (await enrollment.handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED in kinds  # failed, not cancelled


class RefusedSend:
    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        raise ApplicationError(
            "the provider refused the address", type="DeliveryFailed", non_retryable=True
        )


async def test_3_3_a_refused_delivery_exits_delivery_failed(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    real = JourneyActivities(pool)
    j = journey([stage("a", send("welcome"), send("never"), go_to("success"))])
    async with build_worker(
        ts_env.client,
        pool,
        task_queue,
        activities=[RefusedSend().send_message, real.record_steps],
    ):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await enrollment.result()
    assert view.outcome is Outcome.DELIVERY_FAILED
    assert "the provider refused the address" in (view.reason or "")
    assert (await enrollment.row())["outcome"] == "delivery_failed"


async def test_3_3_joining_a_suppression_list_exits_suppressed_without_a_window(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [stage("a", wait("P3D"), send("never"))],
        suppression_lists=["competitors", "employees"],
        goal=PRICING_GOAL,
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        change = ContactChanged(seq=await enrollment.next_seq(), lists=["employees"])
        await enrollment.signal("contact_changed", change)
        view = await enrollment.result()
    assert view.outcome is Outcome.SUPPRESSED
    assert view.reason == "joined suppression list 'employees'"
    assert view.explanation is not None and view.explanation["result"] is True
    assert view.window_until is None  # a suppressed contact never converts
    assert await enrollment.outbox() == []


async def test_3_3_removal_from_every_eligible_list_exits_removed_from_list(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [stage("a", wait("P3D"), send("never"))],
        eligible_lists=["trial-users", "beta"],
        exit={"when_removed_from_eligible_lists": True, "when_stage_matches_end": False},
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, lists=["trial-users", "beta"])
        await until_state(enrollment, waiting)
        # still in one eligible list: stays
        seq = await enrollment.next_seq()
        await enrollment.signal("contact_changed", ContactChanged(seq=seq, lists=["beta"]))
        await until_state(enrollment, lambda v: v.contact_seq == seq)
        assert (await enrollment.state()).phase is Phase.RUNNING
        await enrollment.signal(
            "contact_changed", ContactChanged(seq=await enrollment.next_seq(), lists=[])
        )
        view = await enrollment.result()
    assert view.outcome is Outcome.REMOVED_FROM_LIST
    assert view.explanation is not None and view.explanation["result"] is True
    assert await enrollment.outbox() == []


async def test_3_3_stage_property_set_to_an_end_value_ends_early_at_that_end(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [stage("a", wait("P3D"), send("never"))],
        ends={"success": {"value": "customer", "add_to_list": "customers"}, "failure": []},
        exit={"when_removed_from_eligible_lists": False, "when_stage_matches_end": True},
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        change = ContactChanged(
            seq=await enrollment.next_seq(), properties={"journey_stage": "customer"}
        )
        await enrollment.signal("contact_changed", change)
        view = await enrollment.result()
    assert (view.outcome, view.end_value) == (Outcome.ENDED_EARLY, "customer")
    assert await enrollment.stage_paths() == {("a", "exit:ended_early"): 1}
    members = await pool.fetch(
        "SELECT list FROM list_members WHERE contact_id = $1", enrollment.contact_id
    )
    assert [r["list"] for r in members] == ["customers"]


@pytest.mark.parametrize("reason", ["unenrolled", "journey_deactivated"])
async def test_3_3_manual_unenroll_exits_with_its_reason(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, reason: str
) -> None:
    j = journey([stage("a", wait("P3D"), send("never"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        await enrollment.signal("unenroll", Unenroll(reason=reason))
        view = await enrollment.result()
    assert view.outcome == Outcome(reason)
    assert (await enrollment.row())["outcome"] == reason
    assert await enrollment.outbox() == []


async def test_3_4_the_caller_changing_the_stage_property_moves_the_contact_between_actions(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [
            stage("a", wait("P3D"), send("never")),
            stage("b", send("in-b"), go_to("success")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        change = ContactChanged(seq=await enrollment.next_seq(), properties={"journey_stage": "b"})
        await enrollment.signal("contact_changed", change)
        view = await enrollment.result()
    assert view.outcome is Outcome.SUCCESS
    assert [r["payload"]["template"] for r in await enrollment.outbox()] == ["in-b"]
    assert await enrollment.stage_paths() == {("a", "b"): 1, ("b", "end:success"): 1}
    description = await enrollment.handle.describe()
    assert description.typed_search_attributes.get(sa.JOURNEY_STAGE) == "b"


async def test_signals_at_or_below_the_watermark_and_repeated_event_ids_are_not_counted(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "page_viewed", "min_count": 2}}
    j = journey([stage("a", wait("P3D"), send("never"))], goal=goal)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        w = enrollment.watermark
        # already in the starting snapshot: ignored
        await enrollment.signal("contact_event", event(w, "page_viewed", id="old"))
        await enrollment.signal("contact_event", event(w + 1, "page_viewed", id="first"))
        # the same event again (redelivered with another sequence): ignored
        await enrollment.signal("contact_event", event(w + 2, "page_viewed", id="first"))
        await enrollment.signal("contact_event", event(w + 3, "email_opened", id="other"))
        view = await until_state(enrollment, lambda v: v.contact_seq == w + 3)
        assert view.phase is Phase.RUNNING, "an ignored event was counted"
        await enrollment.signal("contact_event", event(w + 4, "page_viewed", id="second"))
        view = await enrollment.result()
    assert view.outcome is Outcome.GOAL_MET
    assert view.contact_seq == w + 4
