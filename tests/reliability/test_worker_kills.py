"""Issue 10 point 2: the worker process is SIGKILLed again and again while enrollments of a
journey with sends and waits run; every enrollment still completes, and every send left
exactly one outbox row.

CI runs 100 enrollments and 5 kills; `NURTURE_FAULT_FULL=1` runs 500 and 20.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import EnrollmentView, Outcome
from tests.api.conftest import eventually
from tests.reliability.histories import interrupted
from tests.reliability.processes import kill, start
from tests.workers.conftest import Enrollment, enroll, go_to, journey, send, stage, wait

FULL = os.environ.get("NURTURE_FAULT_FULL") == "1"
ENROLLMENTS, KILLS = (500, 20) if FULL else (100, 5)

SENDS = ["welcome", "follow_up"]
JOURNEY = journey(
    [stage("onboarding", send("welcome"), wait("PT2S"), send("follow_up"), go_to("success"))]
)


async def _outbox_rows(pool: asyncpg.Pool, journey_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE journey_id = $1", journey_id
    )
    return count


@pytest.mark.fault
@pytest.mark.timeout(900 if FULL else 300)
async def test_enrollments_complete_with_one_outbox_row_per_send_while_the_worker_is_killed(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    chooser = random.Random(10)
    address = dev_env.client.service_client.config.target_host

    def worker() -> object:
        return start(
            "worker",
            temporal_address=address,
            database_url=database_url,
            task_queue=task_queue,
            log=tmp_path / "worker.log",
        )

    enrollments: list[Enrollment] = []
    wave = ENROLLMENTS // KILLS
    for kill_no in range(KILLS):
        # a wave of new enrollments, so every kill lands in the middle of fresh work
        enrollments += await asyncio.gather(
            *(
                enroll(
                    dev_env.client,
                    pool,
                    task_queue,
                    JOURNEY,
                    journey_id=journey_id,
                    contact_id=f"c{kill_no:02d}-{n:04d}",
                )
                for n in range(wave)
            )
        )
        before = await _outbox_rows(pool, journey_id)
        proc = worker()
        try:

            async def working(before: int = before) -> None:
                assert await _outbox_rows(pool, journey_id) > before

            await eventually(working, timeout=60)
            await asyncio.sleep(chooser.uniform(0, 1.0))
        finally:
            kill(proc)

    proc = worker()
    try:
        results: list[EnrollmentView] = await asyncio.wait_for(
            asyncio.gather(*(e.result() for e in enrollments)), timeout=240
        )
    finally:
        kill(proc)

    assert len(results) == ENROLLMENTS
    assert {r.outcome for r in results} == {Outcome.SUCCESS}
    statuses = await pool.fetch(
        "SELECT status, count(*) AS n FROM enrollments WHERE journey_id = $1 GROUP BY status",
        journey_id,
    )
    assert {r["status"]: r["n"] for r in statuses} == {"completed": ENROLLMENTS}
    rows = await pool.fetch(
        "SELECT workflow_id, payload->>'template' AS template, count(*) AS n FROM outbox"
        " WHERE journey_id = $1 GROUP BY workflow_id, template",
        journey_id,
    )
    assert len(rows) == ENROLLMENTS * len(SENDS)
    assert {r["n"] for r in rows} == {1}
    assert {r["template"] for r in rows} == set(SENDS)
    # the log too: one row per step, each send logged once
    sends = await pool.fetchval(
        "SELECT count(*) FROM enrollment_steps WHERE journey_id = $1 AND action = 'send_message'",
        journey_id,
    )
    assert sends == ENROLLMENTS * len(SENDS)

    # the kills hit work in flight: tasks of the killed workers timed out and were redone
    redone = await interrupted(dev_env.client, [e.workflow_id for e in enrollments])
    print(f"{ENROLLMENTS} enrollments, {KILLS} SIGKILLs: {redone}")
    assert redone["workflow_task_timeouts"] + redone["activity_retries"] > 0
