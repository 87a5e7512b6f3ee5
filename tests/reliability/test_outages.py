"""Temporal (file-backed dev server) and Postgres stopped and restarted in
the middle of a run. Enrollments all complete; events posted while Temporal is down are
accepted, then delivered by the relay, each exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.stack import EmbeddedPostgres, free_port, start_temporal, stop_process
from shared.enrollment import EnrollmentView, Outcome
from store.db import create_pool, migrate
from tests.helpers import enrollments as direct
from tests.helpers import journeys as build
from tests.helpers.histories import interrupted
from tests.helpers.journeys import definition, send
from tests.helpers.processes import kill, start
from tests.helpers.relay import activate, signals
from tests.helpers.stack import eventually, running_stack

FULL = os.environ.get("NURTURE_FAULT_FULL") == "1"
RUNNING, LISTENING, EVENTS_EACH = (200, 50, 40) if FULL else (60, 20, 25)

SEND_WAIT_SEND = [
    {
        "key": "onboarding",
        "value": "onboarding",
        "actions": [
            send("welcome"),
            {"type": "wait", "duration": "PT3S"},
            send("follow_up"),
            {"type": "go_to", "target": "success"},
        ],
    }
]


async def _enroll_all(http: httpx.AsyncClient, journey_id: str, contacts: list[str]) -> None:
    async def one(contact_id: str) -> None:
        put = await http.put(f"/v1/contacts/{contact_id}", json={"properties": {}})
        assert put.status_code == 200, put.text
        enrolled = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact_id}
        )
        assert enrolled.status_code == 201, enrolled.text

    for start_at in range(0, len(contacts), 20):
        await asyncio.gather(*(one(c) for c in contacts[start_at : start_at + 20]))


async def _connect(port: int) -> Client:
    """A client, once the freshly started server's frontend says it is healthy."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _completed(pool: asyncpg.Pool, journey_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM enrollments WHERE journey_id = $1 AND status = 'completed'",
        journey_id,
    )
    return count


@pytest.mark.fault
@pytest.mark.timeout(600 if FULL else 300)
async def test_temporal_restarted_mid_run_all_complete_and_events_sent_meanwhile_arrive_once(
    pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()
    db_file, log = tmp_path / "temporal.db", tmp_path / "temporal.log"
    server = start_temporal(db_file, port, None, log)
    try:
        temporal = await _connect(port)
        async with running_stack(pool, temporal, task_queue) as http:
            running_id = await activate(
                http, definition(SEND_WAIT_SEND, name="Running", enroll_empty_stage=False)
            )
            # never met: the listening enrollments count every page view until the test ends
            goal = {"criteria": {"event": "page_viewed", "min_count": 1_000_000}}
            listening_id = await activate(
                http,
                definition(
                    [
                        {
                            "key": "wait",
                            "value": "wait",
                            "actions": [{"type": "wait", "duration": "P1D"}],
                        }
                    ],
                    name="Listening",
                    stage_property="listening_stage",
                    start_stage="wait",
                    enroll_empty_stage=False,
                    goal=goal,
                ),
            )
            try:
                listeners = [f"listener-{n:03d}" for n in range(LISTENING)]
                await _enroll_all(http, listening_id, listeners)
                runners = [f"runner-{n:03d}" for n in range(RUNNING)]
                await _enroll_all(http, running_id, runners)

                async def some_sent() -> None:
                    sent = await pool.fetchval(
                        "SELECT count(*) FROM outbox WHERE journey_id = $1", running_id
                    )
                    assert sent > 0

                await eventually(some_sent, timeout=60)
                stop_process(server)

                # Temporal is down: events keep coming, in batches from four clients at once
                events = [
                    {"contact_id": c, "type": "page_viewed", "idempotency_key": f"{c}-view-{i}"}
                    for i in range(EVENTS_EACH)
                    for c in listeners
                ]
                batches = [events[i : i + 100] for i in range(0, len(events), 100)]
                answers = []
                for start_at in range(0, len(batches), 4):
                    answers += await asyncio.gather(
                        *(
                            http.post("/v1/events", json={"events": b})
                            for b in batches[start_at : start_at + 4]
                        )
                    )
                assert {a.status_code for a in answers} == {202}
                assert sum(a.json()["accepted"] for a in answers) == len(events)
                assert await _completed(pool, running_id) < RUNNING  # the outage hit the run

                server = start_temporal(db_file, port, None, log)

                async def all_done() -> None:
                    assert await _completed(pool, running_id) == RUNNING
                    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0

                await eventually(all_done, timeout=240)
            finally:
                # the worker and the relay shut down cleanly only while Temporal is up
                if server.poll() is not None:
                    server = start_temporal(db_file, port, None, log)

        runs = [f"enrollment/default/{running_id}/{c}" for c in runners]
        for workflow_id in runs:
            handle = temporal.get_workflow_handle(workflow_id, result_type=EnrollmentView)
            view = await handle.result()
            assert view.outcome == Outcome.SUCCESS
        sent = await pool.fetch(
            "SELECT workflow_id, count(*) AS n FROM outbox WHERE journey_id = $1 GROUP BY 1",
            running_id,
        )
        assert len(sent) == RUNNING and {r["n"] for r in sent} == {2}

        # every event reached its enrollment exactly once
        for contact_id in listeners:
            workflow_id = f"enrollment/default/{listening_id}/{contact_id}"
            assert await signals(temporal, workflow_id) == ["contact_event"] * EVENTS_EACH
        failures = await interrupted(temporal, runs)
        assert failures["workflow_task_failures"] == 0
        print(
            f"Temporal restart: {RUNNING} enrollments completed; {len(events)} events posted"
            f" during the outage to {LISTENING} enrollments, each delivered once; {failures}"
        )
    finally:
        stop_process(server)


@pytest.mark.fault
@pytest.mark.timeout(600 if FULL else 300)
async def test_postgres_restarted_mid_run_activities_retry_and_all_complete(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    pg.start(tmp_path / "postgres.log")
    worker = None
    try:
        await migrate(pg.url)
        pool = await create_pool(pg.url, max_size=10)
        worker = start(
            "worker",
            temporal_address=dev_env.client.service_client.config.target_host,
            database_url=pg.url,
            task_queue=task_queue,
            log=tmp_path / "worker.log",
        )
        flow = build.journey(
            [
                build.stage(
                    "onboarding",
                    build.send("welcome"),
                    build.wait("PT2S"),
                    build.send("follow_up"),
                    build.go_to("success"),
                )
            ]
        )
        journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
        enrollments: list[Any] = []
        for start_at in range(0, RUNNING, 20):
            enrollments += await asyncio.gather(
                *(
                    direct.enroll(
                        dev_env.client,
                        pool,
                        task_queue,
                        flow,
                        journey_id=journey_id,
                        contact_id=f"c-{n:04d}",
                    )
                    for n in range(start_at, min(RUNNING, start_at + 20))
                )
            )

        async def some_sent() -> None:
            assert await pool.fetchval("SELECT count(*) FROM outbox") > 0

        await eventually(some_sent, timeout=60)
        await pool.close()
        # a fast shutdown (SIGINT): every connection is cut, as in a failover
        assert pg.proc is not None
        pg.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(pg.proc.wait, 30)
        await asyncio.sleep(3)  # activities fail against the closed port meanwhile
        pg.start(tmp_path / "postgres.log")

        views: list[EnrollmentView] = await asyncio.wait_for(
            asyncio.gather(*(e.result() for e in enrollments)), timeout=240
        )
        assert {v.outcome for v in views} == {Outcome.SUCCESS}
        pool = await create_pool(pg.url, max_size=5)
        try:
            rows = await pool.fetch(
                "SELECT workflow_id, count(*) AS n FROM outbox GROUP BY workflow_id"
            )
            assert len(rows) == RUNNING and {r["n"] for r in rows} == {2}
            statuses = await pool.fetch("SELECT DISTINCT status FROM enrollments")
            assert [r["status"] for r in statuses] == ["completed"]
        finally:
            await pool.close()
        redone = await interrupted(dev_env.client, [e.workflow_id for e in enrollments])
        assert redone["workflow_task_failures"] == 0
        print(f"Postgres restart: {RUNNING} enrollments completed; {redone}")
    finally:
        if worker is not None:
            kill(worker)
        pg.stop()
