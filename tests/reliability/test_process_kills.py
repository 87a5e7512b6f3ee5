"""A process is SIGKILLed again and again while enrollments of a
journey with sends and waits run; every enrollment still completes, every send left
exactly one outbox row, and the providers got each message: the email through a real SMTP
server (the dev sink, which keeps every message it accepts and drops none as a duplicate)
and the SMS through a real webhook receiver (which records every request).

The worker killed: each message arrived exactly once. The worker only queues a message and
waits; the sender, another process, hands it over, so no kill of the worker can cut a
hand-over short.

The sender killed (the one process that talks to providers): a kill after a message was
handed over and before its answer was recorded leaves the row `sending`; the next sender
sends again and counts the resend on the row. So the assertion is exact: a message
arrived twice only if its row counts a resend, and never more often than 1 + its resends.

CI runs 100 enrollments and 5 kills each; `NURTURE_FAULT_FULL=1` runs 500 and 20.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import EnrollmentView, Outcome
from tests.helpers.channels import WebhookReceiver, put_template, smtp_sink, webhook_receiver
from tests.helpers.enrollments import Enrollment, enroll
from tests.helpers.histories import interrupted
from tests.helpers.journeys import go_to, journey, send, stage, wait
from tests.helpers.processes import kill, smtp, start
from tests.helpers.stack import eventually

FULL = os.environ.get("NURTURE_FAULT_FULL") == "1"
ENROLLMENTS, KILLS = (500, 20) if FULL else (100, 5)

SENDS = {"welcome": "email", "follow_up": "sms"}
JOURNEY = journey(
    [
        stage(
            "onboarding",
            send("welcome", "email"),
            wait("PT2S"),
            send("follow_up", "sms"),
            go_to("success"),
        )
    ]
)


async def _outbox_rows(pool: asyncpg.Pool, journey_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE journey_id = $1", journey_id
    )
    return count


def _bounded(channel: str, copies: Counter[str], resends: dict[str, int]) -> None:
    """Each message arrived at least once, and more than once only as often as its row
    counts resends after a hand-over that got no answer."""
    assert set(copies) == set(resends), f"{channel}: delivered keys differ from the outbox"
    over = {k: (n, resends[k]) for k, n in copies.items() if n > 1 + resends[k]}
    assert not over, f"{channel}: duplicates no resend accounts for (copies, resends): {over}"


async def _delivered(pool: asyncpg.Pool, journey_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE journey_id = $1 AND status = 'delivered'", journey_id
    )
    return count


@pytest.mark.fault
@pytest.mark.timeout(900 if FULL else 300)
@pytest.mark.parametrize("victim", ["worker", "sender"])
async def test_every_send_is_delivered_while_a_process_is_killed(
    victim: str,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    chooser = random.Random(10)
    address = dev_env.client.service_client.config.target_host
    await put_template(pool, "welcome", subject="Welcome, {{ contact.id }}", text="Hi there.")
    await put_template(pool, "follow_up", text="Still there?")
    receiver = WebhookReceiver()
    async with smtp_sink(pool) as mail, webhook_receiver(pool, receiver):

        def process(command: str) -> subprocess.Popen[bytes]:
            return start(
                command,
                temporal_address=address,
                database_url=database_url,
                task_queue=task_queue,
                log=tmp_path / f"{command}.log",
                **smtp(mail),
            )

        # the other process runs throughout
        steady = process("sender" if victim == "worker" else "worker")
        progress = _outbox_rows if victim == "worker" else _delivered
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
                        properties={
                            "email": f"c{kill_no:02d}-{n:04d}@example.test",
                            "phone": f"+1555{kill_no:02d}{n:04d}",
                        },
                    )
                    for n in range(wave)
                )
            )
            before = await progress(pool, journey_id)
            proc = process(victim)
            try:

                async def working(before: int = before) -> None:
                    assert await progress(pool, journey_id) > before

                await eventually(working, timeout=60)
                await asyncio.sleep(chooser.uniform(0, 1.0))
            finally:
                kill(proc)

        proc = process(victim)
        try:
            results: list[EnrollmentView] = await asyncio.wait_for(
                asyncio.gather(*(e.result() for e in enrollments)), timeout=240
            )
        finally:
            kill(proc)
            kill(steady)

    assert len(results) == ENROLLMENTS
    assert {r.outcome for r in results} == {Outcome.SUCCESS}
    statuses = await pool.fetch(
        "SELECT status, count(*) AS n FROM enrollments WHERE journey_id = $1 GROUP BY status",
        journey_id,
    )
    assert {r["status"]: r["n"] for r in statuses} == {"completed": ENROLLMENTS}

    # the outbox: one row per send, each delivered
    rows = await pool.fetch(
        "SELECT idempotency_key, workflow_id, payload->>'template' AS template, channel,"
        " status, coalesce((answer->>'resends')::int, 0) AS resends FROM outbox"
        " WHERE journey_id = $1",
        journey_id,
    )
    assert len(rows) == ENROLLMENTS * len(SENDS)
    assert Counter((r["workflow_id"], r["template"]) for r in rows) == {
        (e.workflow_id, template): 1 for e in enrollments for template in SENDS
    }
    assert {(r["template"], r["channel"]) for r in rows} == set(SENDS.items())
    assert {r["status"] for r in rows} == {"delivered"}
    # the log too: one row per step, each send logged once
    sends = await pool.fetchval(
        "SELECT count(*) FROM enrollment_steps WHERE journey_id = $1 AND action = 'send_message'",
        journey_id,
    )
    assert sends == ENROLLMENTS * len(SENDS)

    # what the providers received: every message, and no copy the outbox does not count
    resends = {
        channel: {r["idempotency_key"]: r["resends"] for r in rows if r["channel"] == channel}
        for channel in SENDS.values()
    }
    mails = await pool.fetch(
        "SELECT idempotency_key, message_id FROM dev_mailbox WHERE idempotency_key LIKE $1",
        f"enrollment/default/{journey_id}/%",
    )
    emails = Counter(m["idempotency_key"] for m in mails)
    assert len({m["message_id"] for m in mails}) == len(emails)
    _bounded("email", emails, resends["email"])
    hooks = [r.headers["x-nurture-idempotency-key"] for r in receiver.received]
    webhooks = Counter(hooks)
    assert {r.body["idempotency_key"] for r in receiver.received} == set(webhooks)
    _bounded("sms", webhooks, resends["sms"])
    # a resend is said in the enrollment's log, on the channel it concerns
    logged = await pool.fetch(
        "SELECT workflow_id || ':' || step_seq || ':' || c.key AS key,"
        " (c.value->>'resends')::int AS resends FROM enrollment_steps,"
        " jsonb_each(detail->'delivery'->'channels') c"
        " WHERE journey_id = $1 AND c.value ? 'resends'",
        journey_id,
    )
    flagged = {r["idempotency_key"]: r["resends"] for r in rows if r["resends"]}
    assert {r["key"]: r["resends"] for r in logged} == flagged

    received = len(mails) + len(hooks)
    figures = {
        "killed": victim,
        "enrollments": ENROLLMENTS,
        "kills": KILLS,
        "sends": sends,
        "outbox_rows": len(rows),
        "received": received,
        "emails": len(mails),
        "webhooks": len(hooks),
        "duplicates": received - len(rows),
        "resends": sum(flagged.values()),
        "seconds": round(time.monotonic() - began),
    }
    if victim == "worker":
        # no kill of the worker can cut a hand-over short: each message arrived once
        assert set(emails.values()) == {1} and set(webhooks.values()) == {1}
        assert not flagged
        # the kills hit work in flight: tasks of the killed workers timed out and were redone
        redone = await interrupted(dev_env.client, [e.workflow_id for e in enrollments])
        print(f"process kills: {figures} {redone}")
        assert redone["workflow_task_timeouts"] + redone["activity_retries"] > 0
    else:
        print(f"process kills: {figures}")
