"""Fair sharing between workspaces (docs/reliability.md, "Security"): one workspace could
starve the others (its flood queued their events behind it; "10 journeys per owner" was
bypassed by changing the free-text owner). Now ingest has a per-workspace rate (429 with
Retry-After), journeys are limited per workspace too, and an owner is an identifier.
The relay's and the sender's fair claims: tests/store/test_fair_claims.py; the flood's
effect on another workspace's event: `python -m bench.fairness` (docs/performance.md)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from cli.stack import free_port
from services.sender import Sender, SenderOptions
from shared.channels import ChannelSettings
from shared.settings import Settings
from store import workspaces as workspaces_store
from store.api_keys import create_key
from tests.helpers.journeys import definition, stage, wait
from tests.helpers.stack import running_stack


def _event(key: str) -> dict[str, str]:
    return {"contact_id": "ada", "type": "viewed", "idempotency_key": key}


async def test_ingest_past_the_rate_is_429_with_retry_after_and_other_workspaces_go_on(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(
        pool, dev_env.client, task_queue, relay=False, ingest_rate=1, ingest_burst=20
    ) as http:
        events = [
            {"contact_id": "ada", "type": "viewed", "idempotency_key": f"e{i}"} for i in range(15)
        ]
        assert (await http.post("/v1/events", json={"events": events})).status_code == 202
        more = [
            {"contact_id": "ada", "type": "viewed", "idempotency_key": f"f{i}"} for i in range(10)
        ]
        refused = await http.post("/v1/events", json={"events": more})
        assert refused.status_code == 429, refused.text
        assert refused.json()["reason"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 5  # 10 items at 1/s, 5 left
        assert (
            await pool.fetchval("SELECT count(*) FROM events WHERE idempotency_key LIKE 'f%'") == 0
        )
        for path in ("/v1/contacts/bob", "/v1/lists/trial/members/bob"):
            for _ in range(5):
                await http.put(path, json={"properties": {}} if "contacts" in path else None)
        assert (await http.put("/v1/contacts/cy", json={"properties": {}})).status_code == 429

        other_key = await create_key(pool, "other")
        async with httpx.AsyncClient(
            base_url=str(http.base_url), headers={"Authorization": f"Bearer {other_key}"}
        ) as other:
            answered = await other.post("/v1/events", json={"events": events})
            assert answered.status_code == 202, answered.text


async def test_journeys_are_limited_per_workspace_and_an_owner_is_an_identifier(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(
        pool, dev_env.client, task_queue, relay=False, max_journeys_per_workspace=2
    ) as http:
        flow = [stage("s", wait("PT1H"))]
        for owner in ("ann@acme.test", "bob@acme.test"):
            created = await http.post("/v1/journeys", json=definition(flow, owner=owner))
            assert created.status_code == 201, created.text
        third = await http.post("/v1/journeys", json=definition(flow, owner="cy@acme.test"))
        assert (third.status_code, third.json()["reason"]) == (409, "journey_limit_reached")

        for owner in ("ann@acme.test ", "ann\u00a0@acme.test", "a" * 129, "ann\t"):
            odd = await http.post("/v1/journeys", json=definition(flow, owner=owner))
            assert odd.status_code == 422, (owner, odd.text)
            reasons = [p["reason"] for p in odd.json()["problems"]]
            assert reasons == ["invalid_owner"], (owner, reasons)


async def test_one_workspace_cannot_hold_every_sender_slot(pool: asyncpg.Pool) -> None:
    """Workspace `slow`'s receiver never answers; with 4 slots it may hold 3, and `quick`'s
    message goes out meanwhile."""
    held: list[str] = []
    release = asyncio.Event()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        held.append(json.loads(await reader.readexactly(length))["workspace"])
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(receive, "127.0.0.1", port)
    hook = {"url": f"http://127.0.0.1:{port}/hook", "secret": "s" * 16}
    for workspace in ("slow", "quick"):
        settings = ChannelSettings.model_validate({"webhook": hook})
        await workspaces_store.save_channel_settings(pool, workspace, settings)
    await pool.execute(
        "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id,"
        " kind, payload, status, next_attempt_at)"
        " SELECT 's' || i, 'slow', 'wf' || i, 'j', 'c' || i, 'task', '{}', 'queued',"
        "        now() - interval '1 hour'"
        " FROM generate_series(1, 10) AS i"
    )
    sender = Sender(pool, Settings(webhook_allow="127.0.0.1"), SenderOptions(concurrency=4))
    try:
        async with sender.running():
            while len(held) < 3:
                await asyncio.sleep(0.02)
            await pool.execute(
                "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id,"
                " contact_id, kind, payload, status) VALUES ('q1', 'quick', 'wq', 'j', 'q',"
                " 'task', '{}', 'queued')"
            )
            while "quick" not in held:
                await asyncio.sleep(0.02)
            assert held.count("slow") == 3  # a fourth slow one never started
            release.set()
    finally:
        release.set()
        server.close()
    statuses = await pool.fetch("SELECT status, count(*) FROM outbox GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses}.get("delivered", 0) >= 4
