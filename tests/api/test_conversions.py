"""Journey status in lists: a counted conversion joins the goal's `add_to_list` and shows
under `?converted=true`; a goal met before any marketing message does neither."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, send, stage, wait
from tests.helpers.relay import enrollment
from tests.helpers.stack import eventually, running_stack

GOAL = {
    "criteria": {"event": "purchase", "min_count": 1},
    "add_to_list": "converted-trial",
}


async def test_a_counted_conversion_joins_the_goals_list_and_is_listed_as_converted(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    mails_first = definition(
        [stage("a", send("welcome"), wait("PT1H"))], enroll_empty_stage=False, goal=GOAL
    )
    waits_first = definition(
        [stage("a", wait("PT1H"), send("welcome"))],
        enroll_empty_stage=False,
        goal=GOAL,
        stage_property="other_stage",
    )
    async with running_stack(pool, dev_env.client, task_queue) as http:
        ids = []
        for flow in (mails_first, waits_first):
            journey_id = (await http.post("/v1/journeys", json=flow)).json()["id"]
            assert (
                await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
            ).status_code == 200
            ids.append(journey_id)
        converting, not_converting = ids
        for contact, journey_id in (("ada", converting), ("bob", not_converting)):
            assert (
                await http.put(f"/v1/contacts/{contact}", json={"properties": {}})
            ).status_code == 200
            enrolled = await http.post(
                f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact}
            )
            assert enrolled.status_code == 201, enrolled.text

        async def ada_mailed() -> None:
            # no SMTP here: the email is kept in the outbox, which counts as sent
            steps = (await enrollment(http, converting, "ada"))["steps"]
            assert "send_message" in [s["action"] for s in steps]
            row = await pool.fetchrow(
                "SELECT marketing_sent FROM enrollments WHERE contact_id = 'ada'"
            )
            assert row is not None and row["marketing_sent"]

        await eventually(ada_mailed)
        for contact in ("ada", "bob"):
            await http.post("/v1/events", json={"contact_id": contact, "type": "purchase"})

        async def both_left() -> None:
            assert (await enrollment(http, converting, "ada"))["outcome"] == "goal_met"
            assert (await enrollment(http, not_converting, "bob"))["outcome"] == "goal_met"
            members = (await http.get("/v1/lists/converted-trial/members")).json()
            assert members["items"] == ["ada"]

        await eventually(both_left)

        async def listed(journey_id: str, converted: str) -> list[str]:
            page = await http.get(
                f"/v1/journeys/{journey_id}/enrollments", params={"converted": converted}
            )
            assert page.status_code == 200, page.text
            return [item["contact_id"] for item in page.json()["items"]]

        assert await listed(converting, "true") == ["ada"]
        assert await listed(converting, "false") == []
        assert await listed(not_converting, "true") == []
        assert await listed(not_converting, "false") == ["bob"]
        contact = (await http.get("/v1/contacts/ada")).json()
        assert "converted-trial" in contact["lists"]
