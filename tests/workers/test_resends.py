"""The one place a message can arrive twice: the provider took it and the answer never
got recorded. The outbox row stays `sending`; the retry sends again and counts it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from cli.mail_sink import Mailbox
from cli.stack import free_port
from shared.settings import Settings
from tests.channel_servers import email_request, mailbox, put_template
from workers.activities import JourneyActivities
from workers.steps import SendMessageRequest

KEY = "enrollment/x:1:email"


class _Mailbox(Mailbox):
    """Keeps every message; the first `drops` times it then cuts the connection instead
    of answering 250 (the sender cannot tell whether the message arrived); every message
    waits for `gate` before it is kept."""

    def __init__(self, pool: asyncpg.Pool, drops: int = 0) -> None:
        super().__init__(pool)
        self.drops = drops
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.waiting += 1
        await self.gate.wait()
        answer = await super().handle_DATA(server, session, envelope)
        if self.drops:
            self.drops -= 1
            assert server.transport is not None
            server.transport.close()
        return answer


async def _server(handler: _Mailbox) -> tuple[asyncio.Server, Settings]:
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", port)
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from="journeys@acme.test",
    )
    return server, settings


async def _ada(pool: asyncpg.Pool) -> SendMessageRequest:
    await put_template(pool, "welcome", subject="Welcome", text="Hi there.")
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ('default', 'ada', $1)",
        {"email": "ada@example.test"},
    )
    return email_request("enrollment/x")


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
    request = await _ada(pool)
    handler = _Mailbox(pool, drops=1)
    server, settings = await _server(handler)
    env = ActivityEnvironment()
    activities = JourneyActivities(pool, settings)
    try:
        try:
            await env.run(activities.send_message, request)
            raise AssertionError("the cut connection should fail the attempt")
        except ApplicationError as exc:
            assert not exc.non_retryable
        cut = await _row(pool)
        assert cut["status"] == "sending"  # handed over, no answer: it may have arrived
        retried = await env.run(activities.send_message, request)
        again = await env.run(activities.send_message, request)
    finally:
        server.close()
        await server.wait_closed()
    assert retried.send is not None and retried.send.status == "sent"
    assert again.send is not None and again.send.status == "sent"
    # the server kept both: the copy the sender could not know about, and the resend
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY, KEY]
    row = await _row(pool)
    assert row["status"] == "delivered" and row["answer"]["resends"] == 1
    assert row["answer"]["smtp"] == "Message accepted for delivery"
    assert (await _logged(pool))["resends"] == 1
    assert retried.send.channels["email"] == {"status": "delivered", "resends": 1}


async def test_an_answered_refusal_is_not_counted_as_a_resend(pool: asyncpg.Pool) -> None:
    """A 4xx answer to DATA: the server said it did not take the message."""
    request = await _ada(pool)

    class Busy(_Mailbox):
        refusals = 1

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            if self.refusals:
                self.refusals -= 1
                return "451 Try again later"
            return await super().handle_DATA(server, session, envelope)

    server, settings = await _server(Busy(pool))
    env = ActivityEnvironment()
    activities = JourneyActivities(pool, settings)
    try:
        try:
            await env.run(activities.send_message, request)
            raise AssertionError("the 451 should fail the attempt")
        except ApplicationError:
            pass
        assert (await _row(pool))["status"] == "queued"
        sent = await env.run(activities.send_message, request)
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.channels["email"] == {"status": "delivered"}
    assert len(await mailbox(pool)) == 1
    row = await _row(pool)
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert "resends" not in row["answer"]


async def test_two_attempts_at_once_count_the_second_copy(pool: asyncpg.Pool) -> None:
    """An attempt Temporal gave up on (a worker that missed its heartbeats) may still be
    sending when the retry runs: both copies go out, and the second is counted."""
    request = await _ada(pool)
    handler = _Mailbox(pool)
    handler.gate.clear()
    server, settings = await _server(handler)
    env = ActivityEnvironment()
    activities = JourneyActivities(pool, settings)
    try:
        first = asyncio.create_task(env.run(activities.send_message, request))
        while handler.waiting < 1:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(env.run(activities.send_message, request))
        while handler.waiting < 2:
            await asyncio.sleep(0.01)
        handler.gate.set()
        results = await asyncio.gather(first, second)
    finally:
        server.close()
        await server.wait_closed()
    assert {r.send.status for r in results if r.send is not None} == {"sent"}
    assert [m["idempotency_key"] for m in await mailbox(pool)] == [KEY, KEY]
    row = await _row(pool)
    assert row["status"] == "delivered" and row["answer"]["resends"] == 1
