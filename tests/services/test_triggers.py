"""Enrollment triggers: the list/stage rule and "goal achieved in journey
X", over HTTP with the relay, on the real dev server; refusals are counted."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from shared.entry import ContactView, enters, touches_entry
from shared.routing import Change
from tests.helpers.journeys import definition, send, stage, wait
from tests.helpers.relay import activate, enrollment, relay_running, relayed
from tests.helpers.stack import eventually, running_stack


async def _status(http: httpx.AsyncClient, journey_id: str, contact_id: str) -> int:
    response = await http.get(f"/v1/journeys/{journey_id}/enrollments/{contact_id}")
    return response.status_code


async def _metrics(http: httpx.AsyncClient, journey_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/journeys/{journey_id}/metrics")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _quiet(pool: asyncpg.Pool) -> None:
    """Every queued change routed and every delivery made."""
    assert await pool.fetchval("SELECT count(*) FROM change_queue") == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


STAGED = definition(
    name="Trial onboarding",
    eligible_lists=["trial"],
    suppression_lists=["employees"],
    enroll_empty_stage=False,
)


async def test_property_change_to_the_start_value_with_list_membership_enrolls(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, STAGED)
        # in the list but no stage (and enroll_empty_stage is off): not yet
        await http.put("/v1/lists/trial/members/ada")
        # the start value without the list: not either
        await http.put("/v1/contacts/bob", json={"properties": {"journey_stage": "onboarding"}})
        await eventually(lambda: _quiet(pool))
        assert await _status(http, journey_id, "ada") == 404
        assert await _status(http, journey_id, "bob") == 404

        put = await http.put(
            "/v1/contacts/ada", json={"properties": {"journey_stage": "onboarding"}}
        )
        assert put.status_code == 200

        async def enrolled() -> None:
            state = await enrollment(http, journey_id, "ada")
            assert (state["status"], state["stage"]) == ("running", "onboarding")

        await eventually(enrolled)
        # bob joins the list with the start value already set: enrolled too
        await http.post("/v1/lists/trial/members", json={"add": ["bob"]})
        await eventually(lambda: _enrolled_ok(http, journey_id, "bob"))
        await eventually(lambda: _quiet(pool))
        metrics = await _metrics(http, journey_id)
        assert metrics["enrolled"] == 2
        # the journey's own stage writes did not count as attempts to enter again
        assert metrics["refused"] == {}


async def _enrolled_ok(http: httpx.AsyncClient, journey_id: str, contact_id: str) -> None:
    assert await _status(http, journey_id, contact_id) == 200


async def test_joining_an_eligible_list_with_an_empty_stage_enrolls_when_the_journey_says_so(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    body = {**STAGED, "enroll_empty_stage": True}
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, body)
        await http.put("/v1/contacts/cy", json={"properties": {"journey_stage": "elsewhere"}})
        await http.post("/v1/lists/trial/members", json={"add": ["cy", "dee", "eve"]})
        await eventually(lambda: _enrolled_ok(http, journey_id, "dee"))
        await eventually(lambda: _enrolled_ok(http, journey_id, "eve"))
        await eventually(lambda: _quiet(pool))
        assert await _status(http, journey_id, "cy") == 404  # a stage value that is not the start


async def test_trigger_refusals_are_recorded_and_counted(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"property": "plan", "op": "eq", "value": "paid"}}
    body = {**STAGED, "enroll_empty_stage": True, "goal": goal}
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, body)
        await http.put("/v1/lists/employees/members/sam")
        await http.put("/v1/contacts/pat", json={"properties": {"plan": "paid"}})
        await http.post("/v1/lists/trial/members", json={"add": ["sam", "pat"]})

        async def refused() -> None:
            metrics = await _metrics(http, journey_id)
            assert _refusals(metrics) == {"suppressed": 1, "goal_already_met": 1}, metrics

        await eventually(refused)
        # the trigger matching pat again (leaving and joining trial) counts no new refusal:
        # triggers count refused contacts, not how often they looked at them
        await http.delete("/v1/lists/trial/members/pat")
        await http.put("/v1/lists/trial/members/pat")
        await relayed(pool)
        await refused()
        rows = await pool.fetch("SELECT contact_id, reason FROM refusals ORDER BY contact_id")
        assert [(r["contact_id"], r["reason"]) for r in rows] == [
            ("pat", "goal_already_met"),
            ("sam", "suppressed"),
        ]
        assert (await _metrics(http, journey_id))["enrolled"] == 0


def _refusals(metrics: dict[str, Any]) -> dict[str, int]:
    """Refusals by reason, whether metrics give a count or {count, percent}."""
    refused = metrics["refused"]
    return {k: (v["count"] if isinstance(v, dict) else v) for k, v in refused.items()}


async def test_goal_achieved_in_journey_x_enrolls_into_the_journey_that_names_it(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    x = definition(
        name="Trial",
        enroll_empty_stage=False,
        goal={"criteria": {"event": "purchase", "min_count": 1}},
    )
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        x_id = await activate(http, x)
        y = definition(
            name="Customer welcome",
            stage_property="welcome_stage",
            start_stage="welcome",
            enroll_empty_stage=False,
            stages=[
                {
                    "key": "welcome",
                    "value": "welcome",
                    "actions": [send("thanks"), {"type": "wait", "duration": "PT1H"}],
                }
            ],
            trigger={"goal_achieved_in": x_id},
        )
        y_id = await activate(http, y)
        await http.put("/v1/contacts/kim", json={"properties": {"first_name": "Kim"}})
        enrolled = await http.post(f"/v1/journeys/{x_id}/enrollments", json={"contact_id": "kim"})
        assert enrolled.status_code == 201, enrolled.text
        await eventually(lambda: _quiet(pool))
        assert await _status(http, y_id, "kim") == 404

        await http.post("/v1/events", json={"contact_id": "kim", "type": "purchase"})

        async def in_y() -> None:
            assert (await enrollment(http, x_id, "kim"))["outcome"] == "goal_met"
            state = await enrollment(http, y_id, "kim")
            assert (state["status"], state["stage"]) == ("running", "welcome")
            entered = state["steps"][0]
            assert entered["action"] == "enter_stage"
            assert entered["detail"]["reason"].startswith(f"converted in journey {x_id} at ")

        await eventually(in_y)


async def test_a_goal_met_that_x_does_not_count_enrolls_nobody_into_the_journey_naming_x(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """No marketing message before the goal: X's goal exit is not a conversion, and only a
    conversion enrolls into "goal achieved in X"."""
    x = definition(
        [stage("waiting", wait("PT1H"), send("welcome"))],
        name="Trial without a message yet",
        enroll_empty_stage=False,
        goal={"criteria": {"event": "purchase", "min_count": 1}},
    )
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        x_id = await activate(http, x)
        y = definition(
            [stage("welcome", send("thanks"), wait("PT1H"))],
            name="Customer welcome",
            stage_property="welcome_stage",
            enroll_empty_stage=False,
            trigger={"goal_achieved_in": x_id},
        )
        y_id = await activate(http, y)
        await http.put("/v1/contacts/lou", json={"properties": {}})
        enrolled = await http.post(f"/v1/journeys/{x_id}/enrollments", json={"contact_id": "lou"})
        assert enrolled.status_code == 201, enrolled.text
        await http.post("/v1/events", json={"contact_id": "lou", "type": "purchase"})

        async def left_x() -> None:
            assert (await enrollment(http, x_id, "lou"))["outcome"] == "goal_met"

        await eventually(left_x)
        await eventually(lambda: _quiet(pool))
        metrics = (await http.get(f"/v1/journeys/{x_id}/metrics")).json()
        assert metrics["goal"]["conversions"] == 0
        assert await _status(http, y_id, "lou") == 404


# --- the rule itself, pure -----------------------------------------------------------------


def test_the_list_stage_rule() -> None:
    from shared.journey import Journey

    staged = Journey.model_validate(STAGED)
    anyone = Journey.model_validate(definition(enroll_empty_stage=True))

    def view(lists: list[str], **properties: Any) -> ContactView:
        return ContactView(properties, frozenset(lists))

    assert enters(staged, view(["trial"], journey_stage="onboarding"))
    assert not enters(staged, view([], journey_stage="onboarding"))
    assert not enters(staged, view(["trial"]))
    assert not enters(staged, view(["trial"], journey_stage="nudge"))
    assert enters(anyone, view([]))
    assert enters(anyone, view([], journey_stage=""))
    assert enters(anyone, view([], journey_stage=None))
    assert not enters(anyone, view([], journey_stage="customer"))

    def change(kind: Any, **fields: Any) -> Change:
        return Change(id=1, workspace="w", contact_id="c", kind=kind, **fields)

    assert touches_entry(staged, change("list", name="trial"))
    assert not touches_entry(staged, change("list", name="news"))
    assert touches_entry(staged, change("contact", changed={"journey_stage": "onboarding"}))
    assert not touches_entry(staged, change("contact", changed={"first_name": "Ada"}))
    assert touches_entry(staged, change("contact", changed={}, created=True))
    assert not touches_entry(staged, change("event", name="page_viewed", seq=3))
