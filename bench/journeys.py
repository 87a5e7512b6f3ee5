"""The journeys the benchmarks run, and putting them and their contacts in place over the API.

Every benchmark journey has a stage property of its own and does not enroll empty stages:
creating the contacts, or another journey's stage writes, never triggers an enrollment
the benchmark did not ask for (docs/design.md, "Triggers"), so each run measures exactly the
POSTs it makes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from bench.api_client import Api, TransportError

CONTACTS_LIST = "bench-contacts"
"""Contacts are created by adding them to this list, which no journey reads."""

BATCH = 1000

WAITING_GOAL = {
    "criteria": {
        "any": [
            {"event": "purchase", "min_count": 1},
            # routes page_viewed to every enrollment without ever meeting the goal (ingest)
            {"event": "page_viewed", "min_count": 1_000_000},
        ]
    },
    "target": {"count": 1},
    "attribution_window": "P1D",
}


def journey(
    actions: list[dict[str, Any]], *, goal: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A one-stage journey around `actions` (extra stages in `extra["stages"]`)."""
    tag = uuid.uuid4().hex[:8]
    definition: dict[str, Any] = {
        "name": f"bench {tag}",
        "owner": f"bench-{tag}@nurture.test",
        "stage_property": f"bench_stage_{tag}",
        "eligible_lists": [],
        "start_stage": "main",
        "enroll_empty_stage": False,
        "stages": [{"key": "main", "value": "main", "actions": actions}, *extra.pop("stages", [])],
        "ends": {"success": {"value": "done"}, "failure": [{"value": "lost"}]},
    }
    if goal is not None:
        definition["goal"] = goal
    definition.update(extra)
    return definition


SEND = {"type": "send_message", "channels": ["email"], "template": "welcome", "marketing": True}
END = {"type": "go_to", "target": "success"}


def three_actions(wait: str = "PT1S") -> dict[str, Any]:
    """The throughput journey: send_message, a short wait, go_to success."""
    return journey([SEND, {"type": "wait", "duration": wait}, END])


def waiting(first_send: bool = True) -> dict[str, Any]:
    """Enrollments that wait a month for a purchase (the goal) on a durable timer."""
    actions: list[dict[str, Any]] = [SEND] if first_send else []
    actions += [{"type": "wait", "duration": "P30D"}, END]
    return journey(actions, goal=WAITING_GOAL)


async def create_active(http: httpx.AsyncClient, definition: dict[str, Any]) -> str:
    created = await http.post("/v1/journeys", json=definition)
    created.raise_for_status()
    journey_id: str = created.json()["id"]
    activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
    activated.raise_for_status()
    return journey_id


async def create_contacts(http: httpx.AsyncClient, contacts: list[str]) -> None:
    for start in range(0, len(contacts), BATCH):
        response = await http.post(
            f"/v1/lists/{CONTACTS_LIST}/members", json={"add": contacts[start : start + BATCH]}
        )
        response.raise_for_status()


async def enroll_all(
    api: Api, journey_id: str, contacts: list[str], concurrency: int = 32
) -> list[str]:
    """POSTs one enrollment per contact, `concurrency` at a time; returns the workflow ids."""
    return [wf for wf, _ in await enroll_runs(api, journey_id, contacts, concurrency)]


async def enroll_runs(
    api: Api, journey_id: str, contacts: list[str], concurrency: int = 32
) -> list[tuple[str, str | None]]:
    """`enroll_all`, with each enrollment's run id (None when a retry found it enrolled)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(contact: str) -> tuple[str, str | None]:
        for attempt in range(5):
            try:
                async with gate:
                    answer = await api.post(
                        f"/v1/journeys/{journey_id}/enrollments", {"contact_id": contact}
                    )
            except TransportError:  # the API restarting (see bench.stack._supervise)
                await asyncio.sleep(2)
                continue
            if answer.status == 201:
                return str(answer.body["workflow_id"]), answer.body.get("run_id")
            if attempt and answer.status == 409:  # the lost answer's enrollment
                return f"enrollment/default/{journey_id}/{contact}", None
            raise RuntimeError(f"enrolling {contact}: {answer.status} {answer.body}")
        raise RuntimeError(f"enrolling {contact}: the API did not answer")

    return list(await asyncio.gather(*(one(c) for c in contacts)))
