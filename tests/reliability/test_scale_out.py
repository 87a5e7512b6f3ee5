"""Scale out (docs/operating.md, "Production topology"): two API processes (each with its
relay and sender) and two workers against one Temporal and one Postgres, with one API and
one worker SIGKILLed and restarted while contacts join the journey's list and post their
purchases through either API. Every contact is enrolled once, every purchase reaches its
enrollment (which exits `goal_met` and logs it once), and every welcome email arrives,
more than once only where its outbox row counts a resend.

CI runs 60 contacts and one kill of each; `NURTURE_FAULT_FULL=1` runs 400 and three.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.stack import free_port, wait_for_port
from store.api_keys import create_key
from tests.helpers.channels import put_template, smtp_sink
from tests.helpers.journeys import definition, send, stage, wait
from tests.helpers.processes import kill, smtp, start
from tests.helpers.stack import eventually

FULL = os.environ.get("NURTURE_FAULT_FULL") == "1"
CONTACTS, KILLS = (400, 3) if FULL else (60, 1)
BATCH = 20

JOURNEY = definition(
    [stage("welcome", send("welcome"), wait("P1D"))],
    eligible_lists=["scale"],
    enroll_empty_stage=True,
    goal={"criteria": {"event": "purchase", "min_count": 1}},
)


STUCK = """
SELECT e.workflow_id, e.status, e.stage,
       (SELECT count(*) FROM enrollment_steps s WHERE s.workflow_id = e.workflow_id) AS steps,
       (SELECT count(*) FROM deliveries d WHERE d.workflow_id = e.workflow_id) AS deliveries
FROM enrollments e WHERE e.journey_id = $1 AND e.outcome IS NULL LIMIT 5
"""


async def _stuck(pool: asyncpg.Pool, env: WorkflowEnvironment, journey_id: str) -> str:
    """What the enrollments that have not met their goal look like, for the failure."""
    lines = []
    for row in await pool.fetch(STUCK, journey_id):
        handle = env.client.get_workflow_handle(row["workflow_id"])
        try:
            described = await handle.describe()
            events = (await handle.fetch_history()).events
            kinds = [e.event_type for e in events]
            temporal = f"{described.status} {len(events)} events {kinds}; the last: {events[-1]}"
        except Exception as exc:
            temporal = f"{type(exc).__name__}: {exc}"
        lines.append(f"{dict(row)} temporal: {temporal}")
    return "not every enrollment met its goal:\n" + "\n".join(lines)


@pytest.mark.fault
@pytest.mark.timeout(900 if FULL else 300)
async def test_two_apis_and_two_workers_lose_and_double_nothing_through_kills(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    address = dev_env.client.service_client.config.target_host
    await put_template(pool, "welcome", subject="Welcome, {{ contact.id }}", text="Hi.")
    key = await create_key(pool, "default")
    ports = [free_port(), free_port()]
    async with smtp_sink(pool) as mail:

        def process(command: str, n: int) -> subprocess.Popen[bytes]:
            extra = {"api_port": str(ports[n])} if command == "api" else {}
            proc = start(
                command,
                temporal_address=address,
                database_url=database_url,
                task_queue=task_queue,
                log=tmp_path / f"{command}-{n}.log",
                **smtp(mail),
                **extra,
            )
            if command == "api":
                wait_for_port("127.0.0.1", ports[n], 60, proc)
            return proc

        running = {(c, n): process(c, n) for c in ("api", "worker") for n in (0, 1)}
        apis = [
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for port in ports
        ]
        try:
            created = await apis[0].post("/v1/journeys", json=JOURNEY)
            assert created.status_code == 201, created.text
            journey_id = created.json()["id"]
            activated = await apis[1].post(
                f"/v1/journeys/{journey_id}/activate", params={"force": "true"}
            )
            assert activated.status_code == 200, activated.text
            contacts = [f"s{i:04d}" for i in range(CONTACTS)]
            waves = [contacts[i :: KILLS + 1] for i in range(KILLS + 1)]

            async def call(n: int, method: str, path: str, **kwargs: object) -> None:
                """Through API n, or the other one while n is down (a load balancer)."""
                for attempt in range(20):
                    try:
                        response = await apis[(n + attempt) % 2].request(method, path, **kwargs)  # type: ignore[arg-type]
                    except httpx.TransportError:
                        await asyncio.sleep(0.25)
                        continue
                    assert response.status_code < 300, response.text
                    return
                raise AssertionError(f"{method} {path}: no API answered")

            async def join_and_buy(wave: list[str]) -> None:
                for n, start_at in enumerate(range(0, len(wave), BATCH)):
                    batch = wave[start_at : start_at + BATCH]
                    for contact in batch:
                        await call(
                            n,
                            "PUT",
                            f"/v1/contacts/{contact}",
                            json={"properties": {"email": f"{contact}@example.test"}},
                        )
                    await call(n, "POST", "/v1/lists/scale/members", json={"add": batch})

            for round_no, wave in enumerate(waves):
                await join_and_buy(wave)
                if round_no < KILLS:
                    victims = [("api", round_no % 2), ("worker", (round_no + 1) % 2)]
                    await asyncio.sleep(0.5)
                    for victim in victims:
                        kill(running[victim])
                    await asyncio.sleep(1.0)
                    for victim in victims:
                        running[victim] = process(*victim)

            async def all_enrolled() -> None:
                n = await pool.fetchval(
                    "SELECT count(*) FROM enrollments WHERE journey_id = $1", journey_id
                )
                assert n == CONTACTS

            await eventually(all_enrolled, timeout=120)
            for i, contact in enumerate(contacts):
                await call(
                    i % 2,
                    "POST",
                    "/v1/events",
                    json={
                        "contact_id": contact,
                        "type": "purchase",
                        "idempotency_key": f"buy-{contact}",
                    },
                )

            async def all_converted() -> None:
                rows = await pool.fetch(
                    "SELECT outcome, count(*) AS n FROM enrollments WHERE journey_id = $1"
                    " GROUP BY outcome",
                    journey_id,
                )
                outcomes = {r["outcome"]: r["n"] for r in rows}
                if outcomes != {"goal_met": CONTACTS}:
                    raise AssertionError(await _stuck(pool, dev_env, journey_id))

            await eventually(all_converted, timeout=180)

            async def all_handed_over() -> None:
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM outbox WHERE journey_id = $1"
                    " AND status IN ('queued', 'sending')",
                    journey_id,
                )
                assert waiting == 0

            await eventually(all_handed_over, timeout=120)
        finally:
            for proc in running.values():
                kill(proc)
            for api in apis:
                await api.aclose()

    # enrolled once each: one row, one workflow, one entry step
    rows = await pool.fetch(
        "SELECT contact_id, workflow_id FROM enrollments WHERE journey_id = $1", journey_id
    )
    assert sorted(r["contact_id"] for r in rows) == contacts
    entries = await pool.fetch(
        "SELECT contact_id, count(*) AS n FROM enrollment_steps WHERE journey_id = $1"
        " AND action = 'enter_stage' GROUP BY contact_id",
        journey_id,
    )
    assert {r["contact_id"]: r["n"] for r in entries} == dict.fromkeys(contacts, 1)
    # each purchase met the goal once: one goal exit logged per contact
    exits = await pool.fetch(
        "SELECT contact_id, count(*) AS n FROM enrollment_steps WHERE journey_id = $1"
        " AND action = 'exit' AND result = 'goal_met' GROUP BY contact_id",
        journey_id,
    )
    assert {r["contact_id"]: r["n"] for r in exits} == dict.fromkeys(contacts, 1)
    # at most one outbox row per enrollment (none where the purchase came before the send):
    # delivered, or withdrawn by the goal exit before a sender began it; each delivered
    # mail received once or as often as its resends say, and no withdrawn one at all
    outbox = await pool.fetch(
        "SELECT workflow_id, idempotency_key, status,"
        " coalesce((answer->>'resends')::int, 0) AS resends FROM outbox WHERE journey_id = $1",
        journey_id,
    )
    assert set(Counter(r["workflow_id"] for r in outbox).values()) <= {1}
    assert {r["status"] for r in outbox} <= {"delivered", "withdrawn"}
    outbox = [r for r in outbox if r["status"] == "delivered"]
    mails = Counter(
        r["idempotency_key"]
        for r in await pool.fetch(
            "SELECT idempotency_key FROM dev_mailbox WHERE idempotency_key LIKE $1",
            f"enrollment/default/{journey_id}/%",
        )
    )
    resends = {r["idempotency_key"]: r["resends"] for r in outbox}
    assert set(mails) == set(resends)
    assert all(1 <= mails[k] <= 1 + resends[k] for k in resends), (mails, resends)
