"""Contacts and lists over HTTP: what the caller changes reaches running enrollments as
exits and stage moves, and only the enrollments that read it."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition
from tests.helpers.relay import activate, enrollment, relay_running, relayed, signals
from tests.helpers.stack import eventually, running_stack


async def _enrolled(http: httpx.AsyncClient, journey_id: str, contact_id: str) -> str:
    response = await http.post(
        f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact_id}
    )
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["workflow_id"]
    return workflow_id


async def _ends_with(
    http: httpx.AsyncClient, journey_id: str, contact_id: str, **expected: Any
) -> None:
    async def ended() -> None:
        state = await enrollment(http, journey_id, contact_id)
        assert {k: state[k] for k in expected} == expected, state

    await eventually(ended)


TRIAL = definition(
    eligible_lists=["trial"],
    suppression_lists=["competitors"],
    enroll_empty_stage=False,
    stages=[
        {
            "key": "onboarding",
            "value": "onboarding",
            "actions": [{"type": "wait", "duration": "PT1H"}, {"type": "go_to", "target": "nudge"}],
        },
        {"key": "nudge", "value": "nudge", "actions": [{"type": "wait", "duration": "PT1H"}]},
    ],
)


async def test_removal_from_every_eligible_list_exits_with_removed_from_list(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, TRIAL)
        assert (await http.put("/v1/lists/trial/members/ada")).status_code == 204
        assert (await http.put("/v1/lists/other/members/ada")).status_code == 204
        workflow_id = await _enrolled(http, journey_id, "ada")

        # leaving a list the journey does not read is not even signalled
        assert (await http.delete("/v1/lists/other/members/ada")).status_code == 204
        assert (await http.delete("/v1/lists/trial/members/ada")).status_code == 204
        await _ends_with(http, journey_id, "ada", outcome="removed_from_list", status="completed")
        assert await signals(dev_env.client, workflow_id) == ["contact_changed"]


async def test_joining_a_suppression_list_exits_with_suppressed(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, TRIAL)
        await http.put("/v1/lists/trial/members/bob")
        await _enrolled(http, journey_id, "bob")
        batch = await http.post("/v1/lists/competitors/members", json={"add": ["bob", "eve"]})
        assert batch.status_code == 200, batch.text
        assert batch.json() == {"added": 2, "removed": 0, "unchanged": 0}
        await _ends_with(http, journey_id, "bob", outcome="suppressed", status="completed")


async def test_caller_setting_the_stage_moves_the_contact_and_an_end_value_ends_it(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    # The caller's first move races the journey's own write of its first stage: the
    # caller's value wins whichever commits first (tests/workers/test_signals_in_flight.py).
    async with running_stack(pool, dev_env.client, task_queue) as http:
        journey_id = await activate(http, TRIAL)
        await http.put("/v1/lists/trial/members/cy")
        # routed before the enrollment exists, the list join is not signalled to it
        await relayed(pool)
        workflow_id = await _enrolled(http, journey_id, "cy")

        async def stage_is(stage: str) -> None:
            assert (await enrollment(http, journey_id, "cy"))["stage"] == stage

        await eventually(lambda: stage_is("onboarding"))
        # a property the journey does not read: stored, not signalled
        await http.put("/v1/contacts/cy", json={"properties": {"first_name": "Cy"}})
        moved = await http.put("/v1/contacts/cy", json={"properties": {"journey_stage": "nudge"}})
        assert moved.status_code == 200
        await eventually(lambda: stage_is("nudge"))
        await http.put("/v1/contacts/cy", json={"properties": {"journey_stage": "churned"}})
        await _ends_with(http, journey_id, "cy", outcome="ended_early", end_value="churned")
        # the journey's own stage writes did not come back to it as signals
        assert await signals(dev_env.client, workflow_id) == [
            "contact_changed",
            "contact_changed",
        ]


async def test_contact_properties_merge_and_null_removes(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        first = await http.put(
            "/v1/contacts/dee", json={"properties": {"a": 1, "b": {"c": None}, "d": "x"}}
        )
        assert first.status_code == 200, first.text
        assert first.json()["properties"] == {"a": 1, "b": {"c": None}, "d": "x"}
        second = await http.put("/v1/contacts/dee", json={"properties": {"a": None, "e": [1]}})
        body = second.json()
        assert body["properties"] == {"b": {"c": None}, "d": "x", "e": [1]}
        assert body["seq"] > first.json()["seq"]
        # the same values again: nothing changed, the sequence stays
        third = await http.put("/v1/contacts/dee", json={"properties": {"d": "x"}})
        assert third.json()["seq"] == body["seq"]
        got = await http.get("/v1/contacts/dee")
        assert got.json() == {**body, "lists": [], "enrollments": []}
        assert (await http.get("/v1/contacts/nobody")).json()["reason"] == "contact_not_found"


async def test_list_batches_page_and_refuse_what_they_cannot_take(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        added = await http.post("/v1/lists/news/members", json={"add": ["a", "b", "c", "a"]})
        assert added.json() == {"added": 3, "removed": 0, "unchanged": 0}
        again = await http.post("/v1/lists/news/members", json={"add": ["a"], "remove": ["b"]})
        assert again.json() == {"added": 0, "removed": 1, "unchanged": 1}
        # removing never creates a contact
        await http.post("/v1/lists/news/members", json={"remove": ["ghost"]})
        assert (await http.get("/v1/contacts/ghost")).status_code == 404

        page = (await http.get("/v1/lists/news/members", params={"limit": 1})).json()
        assert page == {"items": ["a"], "next_cursor": "a"}
        rest = await http.get("/v1/lists/news/members", params={"cursor": "a", "limit": 5})
        assert rest.json() == {"items": ["c"], "next_cursor": None}
        assert (await http.get("/v1/contacts/c")).json()["lists"] == ["news"]

        too_many = await http.post(
            "/v1/lists/news/members", json={"add": [f"x{i}" for i in range(1001)]}
        )
        assert (too_many.status_code, too_many.json()["reason"]) == (413, "batch_too_large")
        both = await http.post("/v1/lists/news/members", json={"add": ["a"], "remove": ["a"]})
        assert (both.status_code, both.json()["reason"]) == (422, "conflicting_membership")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/contacts/a%00b", {"properties": {}}),
        ("PUT", "/v1/contacts/a%0Ab", {"properties": {}}),
        ("PUT", "/v1/contacts/a", {"properties": {"k": "nul\u0000"}}),
        ("PUT", "/v1/contacts/a", {"properties": {"nul\u0000": 1}}),
        ("PUT", "/v1/contacts/a", {"properties": []}),
        ("PUT", "/v1/contacts/a", {"props": {}}),
        ("PUT", "/v1/contacts/" + "x" * 300, {"properties": {}}),
        ("PUT", "/v1/lists/l%00/members/a", None),
        ("DELETE", "/v1/lists/l/members/a%00", None),
        ("POST", "/v1/lists/l/members", {"add": ["ok", "bad\u0000"]}),
        ("POST", "/v1/lists/l/members", {"add": "a"}),
        ("GET", "/v1/lists/l/members?cursor=%00", None),
    ],
)
async def test_what_postgres_cannot_store_is_422_not_500(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    method: str,
    path: str,
    body: Any,
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        response = await http.request(method, path, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["reason"] == "invalid_request"
        assert await pool.fetchval("SELECT count(*) FROM contacts") == 0
