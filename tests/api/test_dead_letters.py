"""Dead letters: an event Temporal refuses for good is kept, listed with Temporal's answer,
and sent again on request; nothing behind it is held up. Temporal here is a real dev server
(file-backed) whose payload limit is set low, so an ordinary event is over it; the operator's
fix is shown too: the server restarted with a larger limit, the dead letter sent again."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.stack import free_port, start_temporal, stop_process
from tests.helpers.journeys import definition
from tests.helpers.relay import activate, relay_running, relayed, signals
from tests.helpers.stack import eventually, running_stack

BLOB_LIMIT = 30_000  # below the event budget (64 KB): Temporal refuses what we store
"""Bytes Temporal accepts in one payload here (its default is 2 MiB)."""


def _limits(error: int) -> dict[str, int]:
    # the error limit is checked only past the warning limit
    return {"limit.blobSize.warn": error // 2, "limit.blobSize.error": error}


async def _dead(http: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    response = await http.get("/v1/dead-letters", params=query)
    assert response.status_code == 200, response.text
    letters: list[dict[str, Any]] = response.json()
    return letters


@pytest.mark.timeout(240)
async def test_an_event_temporal_refuses_is_a_dead_letter_listed_and_sent_again(
    pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()
    db_file, log = tmp_path / "temporal.db", tmp_path / "temporal.log"
    server = start_temporal(db_file, port, None, log, _limits(BLOB_LIMIT))
    try:
        temporal = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        goal = {"criteria": {"event": "page_viewed", "min_count": 5}}
        # no relay yet: both events wait in one batch, the big one ahead of the small one
        async with running_stack(pool, temporal, task_queue, relay=False) as http:
            journey_id = await activate(http, definition(goal=goal, enroll_empty_stage=False))
            assert (await http.put("/v1/contacts/ada", json={"properties": {}})).status_code == 200
            enrolled = await http.post(
                f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "ada"}
            )
            assert enrolled.status_code == 201, enrolled.text
            workflow_id = enrolled.json()["workflow_id"]
            assert await _dead(http) == []

            big = {
                "contact_id": "ada",
                "type": "page_viewed",
                "idempotency_key": "view-big",
                "properties": {"html": "x" * (2 * BLOB_LIMIT)},
            }
            small = {"contact_id": "ada", "type": "page_viewed", "idempotency_key": "view-small"}
            accepted = [await http.post("/v1/events", json=event) for event in (big, small)]
            assert [a.status_code for a in accepted] == [202, 202]
            async with relay_running(pool, temporal, task_queue):
                await relayed(pool)

                # the small event behind the big one reached the enrollment; the big one did not
                assert (await signals(temporal, workflow_id)).count("contact_event") == 1
                [letter] = await _dead(http)
                assert letter["kind"] == "event"
                assert letter["event_id"] == accepted[0].json()["id"]
                assert (letter["event_idempotency_key"], letter["event_type"]) == (
                    "view-big",
                    "page_viewed",
                )
                assert (letter["contact_id"], letter["journey_id"]) == ("ada", journey_id)
                assert letter["workflow_id"] == workflow_id
                assert "size" in letter["last_error"].lower(), letter["last_error"]
                assert await _dead(http, journey_id=journey_id) == [letter]
                assert await _dead(http, contact_id="bob") == []

                # sent again with the limit unchanged: tried again, so dead again, later
                retried = await http.post(f"/v1/dead-letters/{letter['id']}/retry")
                assert retried.status_code == 202, retried.text
                assert (retried.json()["status"], retried.json()["id"]) == ("queued", letter["id"])

                async def dead_again() -> None:
                    letters = await _dead(http)
                    assert [again["id"] for again in letters] == [letter["id"]]
                    assert datetime.fromisoformat(letters[0]["failed_at"]) > datetime.fromisoformat(
                        letter["failed_at"]
                    )

                await eventually(dead_again)

                # the operator raises the limit and sends it again: delivered, once
                stop_process(server)
                server = start_temporal(db_file, port, None, log, _limits(4 * BLOB_LIMIT))
                assert (
                    await http.post(f"/v1/dead-letters/{letter['id']}/retry")
                ).status_code == 202
                await relayed(pool)
                assert await _dead(http) == []
                assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
                assert (await signals(temporal, workflow_id)).count("contact_event") == 2

                unknown = await http.post(f"/v1/dead-letters/{letter['id']}/retry")
                assert unknown.status_code == 404, unknown.text
                assert unknown.json()["reason"] == "dead_letter_not_found"
    finally:
        stop_process(server)
