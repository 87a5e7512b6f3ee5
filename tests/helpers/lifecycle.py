"""Helpers of the journey life cycle tests: a journey whose enrollments wait, contacts
seeded in a list, an activation's end, enrollments counted by outcome."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.helpers.journeys import definition, send
from tests.helpers.stack import eventually

SEED_CONTACTS = """
INSERT INTO contacts (workspace, id) SELECT 'default', unnest($1::text[])
"""
SEED_MEMBERS = """
INSERT INTO list_members (workspace, list, contact_id) SELECT 'default', $1, unnest($2::text[])
"""


def waiting(wait: str = "PT1H", after: str = "follow_up", **overrides: Any) -> dict[str, Any]:
    """A journey over list `trial` whose enrollments wait `wait`, then send `after`."""
    stage = {
        "key": "onboarding",
        "value": "onboarding",
        "actions": [{"type": "wait", "duration": wait}, send(after)],
    }
    return definition([stage], **{"eligible_lists": ["trial"], **overrides})


async def create(http: httpx.AsyncClient, definition: dict[str, Any]) -> str:
    created = await http.post("/v1/journeys", json=definition)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    journey_id: str = created.json()["id"]
    return journey_id


async def seed(pool: asyncpg.Pool, contacts: list[str], list_name: str = "trial") -> None:
    """Contacts that were in the list long before the journey: written straight to the
    tables, and their queued changes dropped, so that no trigger enrollment by the relay
    races the activation the test measures (a late-routed list join would enroll a
    contact the activation then counts as `already_enrolled`)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SEED_CONTACTS, contacts)
        await conn.execute(SEED_MEMBERS, list_name, contacts)
        await conn.execute("DELETE FROM change_queue")


async def activation_done(
    http: httpx.AsyncClient, journey_id: str, timeout: float = 60
) -> dict[str, Any]:
    """Waits until the journey's latest activation has finished; returns its progress."""
    progress: dict[str, Any] = {}

    async def finished() -> None:
        response = await http.get(f"/v1/journeys/{journey_id}/activation")
        assert response.status_code == 200, response.text
        progress.update(response.json())
        assert progress["status"] != "running"

    await eventually(finished, timeout=timeout)
    return progress


async def statuses(pool: asyncpg.Pool, journey_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT coalesce(outcome, status) AS s, count(*) AS n FROM enrollments"
        " WHERE journey_id = $1 GROUP BY 1",
        journey_id,
    )
    return {r["s"]: r["n"] for r in rows}
