"""Entry at any stage value: a contact whose stage property holds a stage's value enters
that stage (activation, triggers, an explicit enrollment, the preview); one holding an
end's value is refused `already_at_end`."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, send, stage, wait
from tests.helpers.lifecycle import activation_done, create
from tests.helpers.relay import relay_running
from tests.helpers.stack import eventually, running_stack

FLOW = definition(
    [
        stage("onboarding", send("welcome"), wait("PT1H")),
        stage("nudge", {"type": "set_property", "property": "nudged", "value": True}, wait("PT1H")),
    ],
    eligible_lists=["trial"],
    enroll_empty_stage=True,
)


async def _enrollment(http: httpx.AsyncClient, journey_id: str, contact: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def entered() -> None:
        got = await http.get(f"/v1/journeys/{journey_id}/enrollments/{contact}")
        assert got.status_code == 200, got.text
        found.update(got.json())
        assert found.get("stage") is not None

    await eventually(entered)
    return found


async def _contact(http: httpx.AsyncClient, contact: str, **properties: Any) -> None:
    put = await http.put(f"/v1/contacts/{contact}", json={"properties": properties})
    assert put.status_code == 200, put.text


async def test_activation_enrolls_each_contact_into_the_stage_its_value_names(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        await _contact(http, "ada", journey_stage="nudge")
        await _contact(http, "bob")
        await _contact(http, "cy", journey_stage="customer")  # the success end's value
        await _contact(http, "dee", journey_stage="somewhere else")
        for contact in ("ada", "bob", "cy", "dee"):
            assert (await http.put(f"/v1/lists/trial/members/{contact}")).status_code == 204
        await pool.execute("DELETE FROM change_queue")  # no trigger races the activation
        journey_id = await create(http, FLOW)
        preview = (await http.post(f"/v1/journeys/{journey_id}/preview")).json()
        assert (preview["eligible"], preview["would_enroll"]) == (2, 2), preview
        metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
        assert metrics["eligible"] == 2, metrics  # four list members, two with a stage value
        assert (
            await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        ).status_code == 200
        done = await activation_done(http, journey_id)
        assert (done["eligible"], done["started"]) == (2, 2), done

        ada = await _enrollment(http, journey_id, "ada")
        assert ada["stage"] == "nudge"
        actions = [(s["action"], s["result"]) for s in ada["steps"]]
        assert actions[0] == ("enter_stage", "entered")

        async def nudged() -> None:
            contact = (await http.get("/v1/contacts/ada")).json()
            assert contact["properties"].get("nudged") is True  # stage nudge's first action

        await eventually(nudged)
        assert (await _enrollment(http, journey_id, "bob"))["stage"] == "onboarding"
        for outside in ("cy", "dee"):
            got = await http.get(f"/v1/journeys/{journey_id}/enrollments/{outside}")
            assert got.status_code == 404, got.text


async def test_a_trigger_enrolls_into_the_stage_the_caller_sets_and_an_end_value_is_refused(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    flow = {**FLOW, "enroll_empty_stage": False}
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await create(http, flow)
        assert (
            await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        ).status_code == 200
        assert (await http.put("/v1/lists/trial/members/eve")).status_code == 204
        await _contact(http, "eve", journey_stage="nudge")
        eve = await _enrollment(http, journey_id, "eve")
        assert eve["stage"] == "nudge"

        await _contact(http, "fay", journey_stage="churned")  # a failure end's value
        assert (await http.put("/v1/lists/trial/members/fay")).status_code == 204
        refused = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "fay"}
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "already_at_end"
        assert refused.json()["explanation"]["result"] is True

        # an explicit enrollment of a contact holding another stage's value starts there
        await _contact(http, "gus", journey_stage="nudge")
        assert (await http.put("/v1/lists/trial/members/gus")).status_code == 204
        enrolled = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "gus"}
        )
        assert enrolled.status_code in (201, 409), enrolled.text  # the trigger may be first
        assert (await _enrollment(http, journey_id, "gus"))["stage"] == "nudge"


async def test_metrics_give_each_end_its_count_and_share_as_the_stages_paths_do(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    two_failures = definition(
        [
            stage("a", wait("PT1S"), {"type": "go_to", "target": "failure:lost"}),
            stage("b", wait("PT1S"), {"type": "go_to", "target": "failure:churned"}),
        ],
        eligible_lists=["trial"],
        ends={
            "success": {"value": "customer"},
            "failure": [{"value": "lost"}, {"value": "churned"}],
        },
    )
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        for contact, value in (("ada", "a"), ("bob", "b"), ("cy", "b")):
            await _contact(http, contact, journey_stage=value)
            assert (await http.put(f"/v1/lists/trial/members/{contact}")).status_code == 204
        await pool.execute("DELETE FROM change_queue")
        journey_id = await create(http, two_failures)
        assert (
            await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        ).status_code == 200
        metrics: dict[str, Any] = {}

        async def all_ended() -> None:
            metrics.update((await http.get(f"/v1/journeys/{journey_id}/metrics")).json())
            assert metrics["ended"].get("failure", {}).get("count") == 3, metrics

        await eventually(all_ended)
    assert {node: (s["count"], s["percent"]) for node, s in metrics["ends"].items()} == {
        "end:success": (0, 0.0),
        "end:failure:lost": (1, 33.33),
        "end:failure:churned": (2, 66.67),
    }
    assert metrics["exits"] == {}
    paths = {(s["key"], p["to"]): p["count"] for s in metrics["stages"] for p in s["paths"]}
    assert paths == {("a", "end:failure:lost"): 1, ("b", "end:failure:churned"): 2}


async def test_why_a_contact_is_not_in_the_journey(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    guarded = {**FLOW, "suppression_lists": ["staff"], "enroll_empty_stage": False}
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        journey_id = await create(http, guarded)
        for contact, lists, stage_value in (
            ("sam", ["trial", "staff"], "nudge"),
            ("end", ["trial"], "customer"),
            ("out", [], "nudge"),
            ("new", ["trial"], "nudge"),
        ):
            await _contact(http, contact, journey_stage=stage_value)
            for name in lists:
                assert (await http.put(f"/v1/lists/{name}/members/{contact}")).status_code == 204

        async def answer(contact: str) -> dict[str, Any]:
            got = await http.get(f"/v1/journeys/{journey_id}/eligibility/{contact}")
            assert got.status_code == 200, got.text
            body: dict[str, Any] = got.json()
            return body

        draft = await answer("new")
        assert (draft["would_enroll"], draft["reason"], draft["stage"]) == (
            False,
            "journey_not_active",
            "nudge",
        )
        assert (
            await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        ).status_code == 200
        assert (await answer("sam"))["reason"] == "suppressed"
        at_end = await answer("end")
        assert at_end["reason"] == "already_at_end"
        stage_check = next(c for c in at_end["checks"] if c["check"] == "stage_value")
        assert stage_check["explanation"]["result"] is True
        outside = await answer("out")
        assert outside["reason"] == "not_eligible"
        assert [c["check"] for c in outside["checks"] if not c["passed"]] == ["eligible_lists"]

        await activation_done(http, journey_id)
        enrolled = await answer("new")
        assert enrolled["reason"] == "already_enrolled"
        missing = await http.get(f"/v1/journeys/{journey_id}/eligibility/nobody")
        assert (missing.status_code, missing.json()["reason"]) == (404, "contact_not_found")
