"""GET /v1/tasks and /v1/notifications: what create_task and send_notification produced,
filtered by journey and contact, paged, with their delivery state; and GET /v1/journeys
is paged the same way."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, go_to, stage
from tests.helpers.stack import eventually, running_stack

CRM = definition(
    [
        stage(
            "a",
            {"type": "create_task", "title": "Call {{ contact.first_name }}", "assign_to": "owner"},
            {"type": "send_notification", "to": ["team:sales"], "message": "Hot lead"},
            go_to("success"),
        )
    ],
    enroll_empty_stage=False,
)


async def _all(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, a page of one at a time."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await http.get(path, params={**params, "limit": 1, "cursor": cursor})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


async def test_tasks_and_notifications_are_listed_by_journey_and_contact(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        journey_id = (await http.post("/v1/journeys", json=CRM)).json()["id"]
        other = {**CRM, "stage_property": "other_stage"}  # one active journey per audience
        other_id = (await http.post("/v1/journeys", json=other)).json()["id"]
        for jid in (journey_id, other_id):
            assert (
                await http.post(f"/v1/journeys/{jid}/activate", params={"force": "true"})
            ).status_code == 200
        for contact, name in (("ada", "Ada"), ("bob", "Bob")):
            props = {"properties": {"first_name": name}}
            assert (await http.put(f"/v1/contacts/{contact}", json=props)).status_code == 200
            enrolled = await http.post(
                f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact}
            )
            assert enrolled.status_code == 201, enrolled.text

        async def both_recorded() -> None:
            tasks = (await http.get("/v1/tasks", params={"journey_id": journey_id})).json()
            assert len(tasks["items"]) == 2, tasks

        await eventually(both_recorded)
        tasks = await _all(http, "/v1/tasks", journey_id=journey_id)
        assert sorted(t["content"]["title"] for t in tasks) == ["Call Ada", "Call Bob"]
        assert {t["status"] for t in tasks} <= {"kept", "queued", "delivered"}
        assert tasks[0]["created_at"] >= tasks[1]["created_at"]  # newest first
        ada = await _all(http, "/v1/notifications", journey_id=journey_id, contact_id="ada")
        assert [(n["contact_id"], n["content"]["message"]) for n in ada] == [("ada", "Hot lead")]
        assert ada[0]["id"].startswith(f"enrollment/default/{journey_id}/ada:")
        assert await _all(http, "/v1/tasks", journey_id=other_id) == []
        bad = await http.get("/v1/tasks", params={"cursor": "nope"})
        assert (bad.status_code, bad.json()["reason"]) == (400, "invalid_cursor")

        journeys = await _all(http, "/v1/journeys")
        assert [j["id"] for j in journeys] == [journey_id, other_id]  # oldest first
