"""SIGTERM to the worker finishes in-flight activities (or, past its grace
period, hands them back to Temporal for another worker); SIGTERM to the API drains the
requests in flight; SIGTERM to the sender lets the hand-over under way finish. Real
processes; the "in flight" work is held by a real Postgres lock (or a real SMTP server)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from cli.stack import free_port, port_open
from shared.enrollment import Outcome
from store.api_keys import create_key
from tests.helpers.channels import GatedMailbox, ada_and_welcome, gated_smtp, mailbox
from tests.helpers.enrollments import Enrollment, enroll
from tests.helpers.journeys import go_to, journey, send, stage
from tests.helpers.processes import kill, smtp, start
from tests.helpers.stack import eventually
from workers.activities import JourneyActivities
from workers.worker import build_worker

SEND_THEN_SUCCEED = journey([stage("welcome", send("welcome"), go_to("success"))])


async def _someone_waits_for_a_lock(pool: asyncpg.Pool) -> None:
    waiting = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
    assert waiting > 0


async def _send_attempts(enrollment: Enrollment) -> list[int]:
    attempts = []
    async for event in enrollment.handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempts.append(event.activity_task_started_event_attributes.attempt)
    return attempts


@pytest.mark.parametrize(
    ("grace", "held_after_sigterm", "attempts"),
    [(10.0, 1.0, [1]), (1.0, 4.0, [2])],
    ids=["finishes-in-flight-activity", "hands-it-back-after-grace"],
)
async def test_sigterm_to_the_worker_finishes_or_hands_back_the_running_activity(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
    grace: float,
    held_after_sigterm: float,
    attempts: list[int],
) -> None:
    proc = start(
        "worker",
        temporal_address=dev_env.client.service_client.config.target_host,
        database_url=database_url,
        task_queue=task_queue,
        log=tmp_path / "worker.log",
        worker_shutdown_grace_seconds=str(grace),
    )
    try:
        lock = await pool.acquire()
        tx = lock.transaction()
        await tx.start()
        # the send's INSERT into the outbox waits on this lock: an activity in flight
        await lock.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        enrollment = await enroll(dev_env.client, pool, task_queue, SEND_THEN_SUCCEED)
        await eventually(lambda: _someone_waits_for_a_lock(pool), timeout=60)

        sigterm_at = time.monotonic()
        proc.terminate()
        await asyncio.sleep(held_after_sigterm)
        await tx.commit()
        await pool.release(lock)
        code = await asyncio.to_thread(proc.wait, grace + 20)
        took = time.monotonic() - sigterm_at
    finally:
        kill(proc)

    assert code == 0, (tmp_path / "worker.log").read_text()[-2000:]
    assert took < grace + 10
    async with build_worker(dev_env.client, pool, task_queue):
        view = await enrollment.result()
    assert view.outcome == Outcome.SUCCESS
    # finished: the first attempt completed; handed back: a second attempt did the work
    assert await _send_attempts(enrollment) == attempts
    assert len(await enrollment.outbox()) == 1


async def test_sigterm_to_the_api_drains_the_requests_in_flight(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = start(
        "api",
        temporal_address=dev_env.client.service_client.config.target_host,
        database_url=database_url,
        task_queue=task_queue,
        log=tmp_path / "api.log",
        api_host="127.0.0.1",
        api_port=str(port),
    )
    key = await create_key(pool, "default")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as http:

            async def serving() -> None:
                assert port_open("127.0.0.1", port)

            await eventually(serving, timeout=60)
            created = await http.put("/v1/contacts/ada", json={"properties": {"plan": "trial"}})
            assert created.status_code == 200, created.text

            lock = await pool.acquire()
            tx = lock.transaction()
            await tx.start()
            await lock.execute("SELECT 1 FROM contacts WHERE id = 'ada' FOR UPDATE")
            in_flight = asyncio.create_task(
                http.put("/v1/contacts/ada", json={"properties": {"plan": "gold"}})
            )
            await eventually(lambda: _someone_waits_for_a_lock(pool), timeout=30)

            proc.terminate()
            await asyncio.sleep(1.0)
            assert proc.poll() is None  # still draining
            assert not port_open("127.0.0.1", port)  # but no longer accepting
            await tx.commit()
            await pool.release(lock)
            answered = await in_flight
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        kill(proc)

    assert answered.status_code == 200, answered.text
    assert answered.json()["properties"]["plan"] == "gold"
    log = (tmp_path / "api.log").read_text()
    # uvicorn finishes its shutdown, then exits by the signal it was sent
    assert code in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log, log[-2000:]
    stored = await pool.fetchval("SELECT properties->>'plan' FROM contacts WHERE id = 'ada'")
    assert stored == "gold"


async def test_sigterm_to_the_sender_lets_its_hand_over_finish(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    """`nurture sender` gets SIGTERM while the SMTP server holds a message: it takes no new
    row, waits for the server's answer, records the delivery and exits 0."""
    request = await ada_and_welcome(pool)
    handler = GatedMailbox(pool)
    handler.gate.clear()
    server, settings = await gated_smtp(handler)
    proc = start(
        "sender",
        temporal_address=dev_env.client.service_client.config.target_host,
        database_url=database_url,
        task_queue=task_queue,
        log=tmp_path / "sender.log",
        **smtp(settings),
    )
    try:
        sending = asyncio.create_task(
            ActivityEnvironment().run(JourneyActivities(pool, settings).send_message, request)
        )
        while handler.waiting < 1:
            await asyncio.sleep(0.02)
        proc.terminate()
        await asyncio.sleep(1.0)
        assert proc.poll() is None  # still handing over
        handler.gate.set()
        code = await asyncio.to_thread(proc.wait, 30)
        sent = await asyncio.wait_for(sending, 30)
    finally:
        kill(proc)
        server.close()
        await server.wait_closed()

    assert code == 0, (tmp_path / "sender.log").read_text()[-2000:]
    assert sent.send is not None and sent.send.status == "sent"
    row = await pool.fetchrow("SELECT status, answer FROM outbox")
    assert row is not None and row["status"] == "delivered"
    assert "resends" not in row["answer"]
    assert [m["idempotency_key"] for m in await mailbox(pool)] == ["enrollment/x:1:email"]
