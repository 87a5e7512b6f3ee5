"""The sender (services/sender.py): the activity queues and waits, the sender hands over.

The one place a message can arrive twice: the provider took it and the sender's record of
the answer never got made. The outbox row stays `sending`; the next attempt sends again
and counts it. Two senders never hand over one row at once, and a send cancelled by an
exit before the sender began it is withdrawn, not sent."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from services.sender import Sender, SenderOptions
from shared.settings import Settings
from tests.helpers.channels import GatedMailbox, ada_and_welcome, gated_smtp, mailbox
from tests.helpers.stack import eventually, running_stack
from workers.activities import JourneyActivities
from workers.steps import SendMessageRequest, StepResult

KEY = "enrollment/x:1:email"


def _sender(pool: asyncpg.Pool, settings: Settings) -> Sender:
    """A sender stepped by the test (`send_due`), retrying at once after a failure."""
    return Sender(pool, settings, SenderOptions(min_backoff=0))


async def _queued(pool: asyncpg.Pool) -> None:
    async def check() -> None:
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE idempotency_key = $1", KEY)

    await eventually(check, timeout=10)


async def _sending(
    pool: asyncpg.Pool, settings: Settings, request: SendMessageRequest
) -> asyncio.Task[StepResult]:
    """The send activity, running in the background until the sender gives its outcome;
    returns once its outbox row is queued."""
    env = ActivityEnvironment()
    task = asyncio.create_task(env.run(JourneyActivities(pool, settings).send_message, request))
    await _queued(pool)
    return task


async def _row(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT status, answer, attempts FROM outbox WHERE idempotency_key = $1", KEY
    )
    assert row is not None
    return row


async def _logged(pool: asyncpg.Pool) -> dict[str, Any]:
    detail: dict[str, Any] = await pool.fetchval(
        "SELECT detail->'delivery'->'channels'->'email' FROM enrollment_steps"
        " WHERE workflow_id = 'enrollment/x' AND step_seq = 1"
    )
    return detail


async def test_a_send_whose_answer_was_lost_is_sent_again_and_the_resend_counted(
    pool: asyncpg.Pool,
) -> None:
    request = await ada_and_welcome(pool)
    handler = GatedMailbox(pool, drops=1)
    server, settings = await gated_smtp(handler)
    sender = _sender(pool, settings)
    try:
        waiting = await _sending(pool, settings, request)
        assert await sender.send_due() == 1
        cut = await _row(pool)
        assert cut["status"] == "sending"  # handed over, no answer: it may have arrived
        assert not waiting.done()  # the activity waits for an outcome
        assert await sender.send_due() == 1
        sent = await asyncio.wait_for(waiting, 10)
        assert await sender.send_due() == 0  # delivered: nothing is due
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.status == "sent"
    # the server kept both: the copy the sender could not know about, and the resend
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY, KEY]
    row = await _row(pool)
    assert row["status"] == "delivered" and row["answer"]["resends"] == 1
    assert row["answer"]["smtp"] == "Message accepted for delivery"
    assert (await _logged(pool))["resends"] == 1
    assert sent.send.channels["email"]["resends"] == 1


async def test_an_answered_refusal_is_not_counted_as_a_resend(pool: asyncpg.Pool) -> None:
    """A 4xx answer to DATA: the server said it did not take the message."""
    request = await ada_and_welcome(pool)

    class Busy(GatedMailbox):
        refusals = 1

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            if self.refusals:
                self.refusals -= 1
                return "451 Try again later"
            return await super().handle_DATA(server, session, envelope)

    server, settings = await gated_smtp(Busy(pool))
    sender = _sender(pool, settings)
    try:
        waiting = await _sending(pool, settings, request)
        await sender.send_due()
        refused = await _row(pool)
        assert (refused["status"], refused["attempts"]) == ("queued", 1)
        await sender.send_due()
        sent = await asyncio.wait_for(waiting, 10)
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.channels["email"]["status"] == "delivered"
    assert "resends" not in sent.send.channels["email"]
    assert len(await mailbox(pool)) == 1
    row = await _row(pool)
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert "resends" not in row["answer"]


async def test_two_senders_never_hand_over_one_row_at_once(pool: asyncpg.Pool) -> None:
    """While one sender is handing a row over, another sender skips it: one copy."""
    request = await ada_and_welcome(pool)
    handler = GatedMailbox(pool)
    handler.gate.clear()
    server, settings = await gated_smtp(handler)
    first, second = _sender(pool, settings), _sender(pool, settings)
    try:
        waiting = await _sending(pool, settings, request)
        assert await first.start_due() == 1
        while handler.waiting < 1:
            await asyncio.sleep(0.01)
        assert await second.send_due() == 0  # locked by the first
        handler.gate.set()
        await first.send_due()
        sent = await asyncio.wait_for(waiting, 10)
        assert await second.send_due() == 0
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.status == "sent"
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY]
    assert "resends" not in (await _row(pool))["answer"]


async def test_a_sender_that_lost_its_database_mid_send_is_resent_by_the_next(
    pool: asyncpg.Pool,
) -> None:
    """The sender's connection dies while the provider holds the message (what a killed
    sender process looks like to Postgres): its lock goes with it, the row stays
    `sending`, and the next sender sends again and counts it."""
    request = await ada_and_welcome(pool)
    handler = GatedMailbox(pool)
    handler.gate.clear()
    server, settings = await gated_smtp(handler)
    dying, next_one = _sender(pool, settings), _sender(pool, settings)
    try:
        waiting = await _sending(pool, settings, request)
        assert await dying.start_due() == 1
        while handler.waiting < 1:
            await asyncio.sleep(0.01)
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
        )
        handler.gate.set()
        await dying.send_due()  # the message went out; its answer could not be recorded
        assert (await _row(pool))["status"] == "sending"
        assert await next_one.send_due() == 1
        sent = await asyncio.wait_for(waiting, 10)
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.status == "sent"
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY, KEY]
    assert (await _row(pool))["answer"]["resends"] == 1


async def test_a_send_cancelled_before_the_sender_began_is_withdrawn(pool: asyncpg.Pool) -> None:
    """An exit cancels the waiting activity: the row the sender has not begun is withdrawn
    and never sent. A retry of the activity (a worker shutting down cancelled it, not an
    exit) puts it back."""
    request = await ada_and_welcome(pool)
    handler = GatedMailbox(pool)
    server, settings = await gated_smtp(handler)
    sender = _sender(pool, settings)
    env = ActivityEnvironment()
    activities = JourneyActivities(pool, settings)
    try:
        waiting = asyncio.create_task(env.run(activities.send_message, request))
        await _queued(pool)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await _row(pool))["status"] == "withdrawn"
        assert await sender.send_due() == 0
        assert await mailbox(pool) == []
        again = ActivityEnvironment()
        again.info = dataclasses.replace(again.info, attempt=2)
        retry = asyncio.create_task(again.run(activities.send_message, request))
        await eventually(lambda: _status_is(pool, "queued"), timeout=10)
        assert await sender.send_due() == 1
        sent = await asyncio.wait_for(retry, 10)
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.status == "sent"
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY]


async def _status_is(pool: asyncpg.Pool, status: str) -> None:
    assert (await _row(pool))["status"] == status


async def test_healthz_says_how_many_messages_wait_for_a_sender(
    pool: asyncpg.Pool, ts_env: WorkflowEnvironment, task_queue: str
) -> None:
    """No sender runs: the queued email waits, and /healthz says so (still 200)."""
    await ada_and_welcome(pool)
    await pool.execute(
        "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id,"
        " kind, channel, payload, next_attempt_at)"
        " VALUES ($1, 'default', 'enrollment/x', 'jrn_x', 'ada', 'message', 'email', $2,"
        " now() - interval '30 seconds')",
        KEY,
        {"to": "ada@example.test", "content": {"subject": "Welcome", "text": "Hi there."}},
    )
    async with running_stack(pool, ts_env.client, task_queue, relay=False, worker=False) as http:
        waiting = (await http.get("/healthz")).json()
        handler = GatedMailbox(pool)
        server, settings = await gated_smtp(handler)
        try:
            await _sender(pool, settings).send_due()
        finally:
            server.close()
            await server.wait_closed()
        sent = (await http.get("/healthz")).json()
    assert waiting["status"] == "ok"
    assert waiting["outbox"]["due"] == 1 and waiting["outbox"]["oldest_due_seconds"] >= 30
    assert sent["outbox"] == {"due": 0, "oldest_due_seconds": 0.0}
