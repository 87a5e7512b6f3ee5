"""The relay running next to `running_stack` (which serves the app without its lifespan),
journeys activated over HTTP, and reads of a workflow's history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from services.relay import Relay, RelayOptions
from shared.settings import Settings
from tests.helpers.stack import eventually


@asynccontextmanager
async def relay_running(
    pool: asyncpg.Pool, temporal: Client, task_queue: str, **options: Any
) -> AsyncIterator[Relay]:
    """The relay as the API's lifespan runs it, until the block ends."""
    relay = Relay(pool, temporal, Settings(task_queue=task_queue), RelayOptions(**options))
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await running


async def relayed(pool: asyncpg.Pool) -> None:
    """Waits until the relay has routed and delivered every change committed so far."""

    async def drained() -> None:
        assert await pool.fetchval("SELECT count(*) FROM change_queue") == 0
        assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE failed_at IS NULL") == 0

    await eventually(drained)


async def activate(http: httpx.AsyncClient, definition: dict[str, Any]) -> str:
    created = await http.post("/v1/journeys", json=definition)
    assert created.status_code == 201, created.text
    journey_id: str = created.json()["id"]
    activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
    assert activated.status_code == 200, activated.text
    if activated.json()["activation"] is not None:
        # the activation enrolls who is already eligible: let it finish before the test
        # adds contacts, so what the test counts is what it does itself
        async def finished() -> None:
            progress = await http.get(f"/v1/journeys/{journey_id}/activation")
            assert progress.json()["status"] == "completed", progress.text

        await eventually(finished)
    return journey_id


async def enrollment(http: httpx.AsyncClient, journey_id: str, contact_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/journeys/{journey_id}/enrollments/{contact_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signals(temporal: Client, workflow_id: str) -> list[str]:
    """The names of the signals in a workflow's history, in order."""
    names = []
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            names.append(event.workflow_execution_signaled_event_attributes.signal_name)
    return names
