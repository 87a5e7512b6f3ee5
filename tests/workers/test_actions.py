"""One test per action type, on the time-skipping server."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import Outcome, Phase, Unenroll
from tests.helpers.enrollments import enroll, until_state, waiting
from tests.helpers.journeys import event, go_to, journey, send, stage, wait, wait_for_event
from workers.worker import build_worker


async def test_send_message_queues_one_outbox_row_per_channel_keyed_by_step(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", send("nudge", "email", "sms"), go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await enrollment.result()
    outbox = await enrollment.outbox()
    step = next(r["step_seq"] for r in await enrollment.steps() if r["action"] == "send_message")
    assert [(r["idempotency_key"], r["kind"], r["channel"]) for r in outbox] == [
        (f"{enrollment.workflow_id}:{step}:email", "message", "email"),
        (f"{enrollment.workflow_id}:{step}:sms", "message", "sms"),
    ]
    assert all(r["payload"]["template"] == "nudge" for r in outbox)
    assert (await enrollment.row())["marketing_sent"] is True


async def test_send_message_that_is_not_marketing_leaves_marketing_sent_false(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", send("receipt", marketing=False), go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await enrollment.result()
    assert view.marketing_sent is False
    assert (await enrollment.row())["marketing_sent"] is False
    assert len(await enrollment.outbox()) == 1


async def test_wait_waits_its_whole_duration_then_continues(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", wait("P2D"), send("after"), go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await until_state(enrollment, waiting)
        assert view.next_action == "wait P2D"
        assert "waiting until" in view.details
        # the stage entry is written before the contact starts waiting
        assert await enrollment.stage_stats() == {"a": (1, 1)}
        await enrollment.result()
    steps = await enrollment.steps()
    waited = next(r for r in steps if r["action"] == "wait")
    sent = next(r for r in steps if r["action"] == "send_message")
    assert waited["result"] == "elapsed"
    assert (sent["at"] - steps[0]["at"]).total_seconds() >= 2 * 86400


async def test_wait_for_event_takes_on_event_branch_when_the_event_arrives(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [
            stage(
                "onboarding",
                wait_for_event(
                    "form_submitted", "P5D", "demo-request", on_event="engaged", on_timeout="nudge"
                ),
            ),
            stage("engaged", go_to("success")),
            stage("nudge", go_to("failure:churned")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        # another target does not match
        other = event(enrollment.watermark + 1, "form_submitted", "newsletter")
        await enrollment.signal("contact_event", other)
        match = event(enrollment.watermark + 2, "form_submitted", "demo-request")
        await enrollment.signal("contact_event", match)
        view = await enrollment.result()
    assert view.outcome is Outcome.SUCCESS
    assert ("wait_for_event", "event") in await enrollment.actions()
    assert await enrollment.stage_paths() == {
        ("onboarding", "engaged"): 1,
        ("engaged", "end:success"): 1,
    }


async def test_wait_for_event_takes_on_timeout_branch_when_nothing_arrives(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [
            stage(
                "onboarding",
                wait_for_event("form_submitted", "P5D", on_event="engaged", on_timeout="nudge"),
            ),
            stage("engaged", go_to("success")),
            stage("nudge", go_to("failure:churned")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await enrollment.result()
    assert view.outcome is Outcome.FAILURE and view.end_value == "churned"
    steps = await enrollment.steps()
    timed_out = next(r for r in steps if r["action"] == "wait_for_event")
    assert timed_out["result"] == "timeout" and timed_out["detail"]["go_to"] == "nudge"
    assert (await enrollment.row())["outcome"] == "failure"
    assert await enrollment.stage_paths() == {
        ("onboarding", "nudge"): 1,
        ("nudge", "end:failure:churned"): 1,
    }


async def test_wait_for_event_without_branches_continues_with_the_next_action(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey([stage("a", wait_for_event("page_viewed", "PT1H"), send("after"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await until_state(enrollment, waiting)
        await enrollment.signal("contact_event", event(enrollment.watermark + 1, "page_viewed"))
        # all actions done, no go_to: the contact stays in the stage
        view = await until_state(enrollment, lambda v: v.next_action is None)
        assert view.phase is Phase.RUNNING and view.stage == "a"
        assert [r["kind"] for r in await enrollment.outbox()] == ["message"]
        # one worker throughout: the time-skipping server keeps a stopped worker's sticky
        # queue, so a second worker would never see the workflow's next task
        await enrollment.signal("unenroll", Unenroll())
        assert (await enrollment.result()).outcome is Outcome.UNENROLLED


async def test_create_task_records_a_rendered_task_in_the_outbox(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    task = {"type": "create_task", "title": "Call {{ contact.first_name }}", "assign_to": "owner"}
    j = journey([stage("a", task, go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(
            ts_env.client, pool, task_queue, j, properties={"first_name": "Ada"}
        )
        await enrollment.result()
    [row] = await enrollment.outbox()
    assert row["kind"] == "task" and row["channel"] is None
    assert row["payload"]["title"] == "Call Ada" and row["payload"]["assign_to"] == "owner"
    assert ("create_task", "created") in await enrollment.actions()


async def test_a_task_renders_the_contact_as_it_is_when_it_is_created(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A property only the template reads is never signalled to the workflow: the task is
    rendered from the contact row when it is created, not from the enrollment's snapshot."""
    task = {"type": "create_task", "title": "Call {{ contact.first_name }}", "assign_to": "owner"}
    note = {"type": "send_notification", "to": ["owner"], "message": "{{ contact.first_name }}"}
    j = journey([stage("a", wait("P1D"), task, note, go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(
            ts_env.client, pool, task_queue, j, properties={"first_name": "Ada"}
        )
        await until_state(enrollment, waiting)
        await pool.execute(
            'UPDATE contacts SET properties = properties || \'{"first_name": "Adelaide"}\','
            " seq = nextval('change_seq') WHERE id = $1",
            enrollment.contact_id,
        )
        await enrollment.result()
    task_row, note_row = await enrollment.outbox()
    assert task_row["payload"]["title"] == "Call Adelaide"
    assert note_row["payload"]["message"] == "Adelaide"


async def test_set_property_writes_the_contact_property(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    setter = {"type": "set_property", "property": "lead_status", "value": "sales_ready"}
    j = journey([stage("a", setter, go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, properties={"x": 1})
        await enrollment.result()
    properties = await enrollment.contact_properties()
    assert properties["lead_status"] == "sales_ready" and properties["x"] == 1
    assert ("set_property", "set") in await enrollment.actions()


async def test_set_property_of_the_stage_property_moves_the_contact_to_that_stage(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    move = {"type": "set_property", "property": "journey_stage", "value": "b"}
    j = journey(
        [
            stage("a", move, send("never")),
            stage("b", send("in-b"), go_to("success")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        await enrollment.result()
    assert [r["payload"]["template"] for r in await enrollment.outbox()] == ["in-b"]
    assert await enrollment.stage_paths() == {("a", "b"): 1, ("b", "end:success"): 1}
    assert await enrollment.stage_stats() == {"a": (1, 0), "b": (1, 0)}


async def test_send_notification_records_a_rendered_notification(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    notify = {
        "type": "send_notification",
        "to": ["team:sales", "owner"],
        "message": "{{ contact.first_name }} asked for a demo",
    }
    j = journey([stage("a", notify, go_to("success"))])
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(
            ts_env.client, pool, task_queue, j, properties={"first_name": "Ada"}
        )
        await enrollment.result()
    [row] = await enrollment.outbox()
    assert row["kind"] == "notification"
    assert row["payload"]["to"] == ["team:sales", "owner"]
    assert row["payload"]["message"] == "Ada asked for a demo"


async def test_go_to_an_earlier_stage_loops_until_the_loop_limit(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    # a -> b -> a -> b -> a: the fifth entry is the cap, going to b once more ends it
    j = journey(
        [
            stage("a", send("a"), wait("P1D"), go_to("b")),
            stage("b", wait("P1D"), go_to("a")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, max_stage_entries=5)
        view = await enrollment.result()
    assert view.outcome is Outcome.LOOP_LIMIT and view.stage_entries == 5
    assert await enrollment.stage_stats() == {"a": (3, 0), "b": (2, 0)}
    assert await enrollment.stage_paths() == {
        ("a", "b"): 2,
        ("b", "a"): 2,
        ("a", "exit:loop_limit"): 1,
    }
    assert len(await enrollment.outbox()) == 3


async def test_go_to_a_failure_end_records_its_value(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [stage("a", go_to("failure:lost"))],
        ends={"success": {"value": "customer"}, "failure": [{"value": "lost"}]},
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j)
        view = await enrollment.result()
    assert (view.outcome, view.end_value) == (Outcome.FAILURE, "lost")
    row = await enrollment.row()
    assert (row["outcome"], row["end_value"], row["status"]) == ("failure", "lost", "completed")
    assert await enrollment.stage_paths() == {("a", "end:failure:lost"): 1}
    assert (await enrollment.contact_properties())["journey_stage"] == "lost"


async def test_an_enrollment_entering_a_later_stage_runs_that_stages_actions_from_the_first(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    j = journey(
        [
            stage("a", send("welcome"), go_to("success")),
            stage("b", wait("P1D"), send("nudge"), go_to("failure:churned")),
        ]
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(
            ts_env.client, pool, task_queue, j, properties={"journey_stage": "b"}, entry_stage="b"
        )
        view = await enrollment.result()
    assert (view.outcome, view.end_value) == (Outcome.FAILURE, "churned")
    steps = await enrollment.steps()
    assert [(r["stage"], r["action"]) for r in steps][:3] == [
        ("b", "enter_stage"),
        ("b", "wait"),
        ("b", "send_message"),
    ]
    assert [r["payload"]["template"] for r in await enrollment.outbox()] == ["nudge"]
    # the contact already held the value: entering writes no property
    assert await enrollment.stage_stats() == {"b": (1, 0)}
