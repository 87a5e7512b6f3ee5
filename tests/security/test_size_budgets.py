"""Inputs that broke Temporal, not just Postgres (docs/reliability.md, "Security"): a
contact over Temporal's payload limit got 503 `temporal_unavailable` (inviting endless
retries) and an activation holding it stayed `running, processed 0` forever. Now contacts,
events and journeys over a size budget are refused when written, and an enrollment
Temporal refuses for its size is refused with a reason: the activation counts it and
finishes."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, stage, wait
from tests.helpers.lifecycle import activation_done, create, seed
from tests.helpers.stack import running_stack

KB = 1024


async def test_contacts_events_and_journeys_over_budget_are_refused_when_written(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        big = {"notes": "x" * (300 * KB)}
        put = await http.put("/v1/contacts/ada", json={"properties": big})
        assert (put.status_code, put.json()["reason"]) == (422, "contact_too_large"), put.text
        assert (await http.get("/v1/contacts/ada")).status_code == 404

        # two halves that fit alone but not merged: the second is refused, the first kept
        half = "y" * (150 * KB)
        assert (await http.put("/v1/contacts/bob", json={"properties": {"a": half}})).is_success
        put = await http.put("/v1/contacts/bob", json={"properties": {"b": half}})
        assert put.json()["reason"] == "contact_too_large", put.text
        kept = (await http.get("/v1/contacts/bob")).json()["properties"]
        assert set(kept) == {"a"}

        event = {
            "contact_id": "bob",
            "type": "cart_abandoned",
            "idempotency_key": "cart-1",
            "properties": {"items": "z" * (70 * KB)},
        }
        posted = await http.post("/v1/events", json=event)
        assert (posted.status_code, posted.json()["reason"]) == (422, "event_too_large")
        assert await pool.fetchval("SELECT count(*) FROM events") == 0

        journey = definition([stage("s", wait("PT1H"))], name="n" * (300 * KB))
        created = await http.post("/v1/journeys", json=journey)
        assert (created.status_code, created.json()["reason"]) == (422, "journey_too_large")


async def test_an_enrollment_temporal_refuses_for_size_is_refused_and_activation_finishes(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        await seed(pool, ["ada", "bob", "cy"])
        # bob was written before the budget existed: 3 MB, over Temporal's 2 MB limit
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE contacts DROP CONSTRAINT contact_too_large")
            await conn.execute(
                "UPDATE contacts SET properties = jsonb_build_object('notes', repeat('x', $1))"
                " WHERE id = 'bob'",
                3 * KB * KB,
            )
            await conn.execute(  # as store/sql/013_size_budgets.sql adds it: old rows pass
                "ALTER TABLE contacts ADD CONSTRAINT contact_too_large"
                " CHECK (octet_length(properties::text) <= 262144) NOT VALID"
            )
        journey_id = await create(
            http, definition([stage("s", wait("PT1H"))], eligible_lists=["trial"])
        )
        activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert activated.status_code == 200, activated.text
        done = await activation_done(http, journey_id)
        assert done["status"] == "completed", done
        assert (done["processed"], done["started"]) == (3, 2), done
        assert done["refused"] == {"enrollment_too_large": 1}, done

        again = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "bob"}
        )
        assert (again.status_code, again.json()["reason"]) == (422, "enrollment_too_large")
        log = (await http.get(f"/v1/journeys/{journey_id}/enrollments/bob")).json()
        assert log["status"] == "refused", log
        assert log["steps"][-1]["result"] == "enrollment_too_large", log
