"""Real servers on loopback for the channel tests: the SMTP sink (aiosmtpd, the one
`nurture dev` runs) and an HTTP webhook receiver (uvicorn) that answers as scripted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session

from cli.mail_sink import Mailbox, start_sink
from cli.stack import free_port
from shared.channels import ChannelSettings
from shared.enrollment import EnrollmentRef, StepRecord
from shared.journey import SendMessage
from shared.settings import Settings
from store import workspaces as workspaces_store
from workers.steps import SendMessageRequest

WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


@asynccontextmanager
async def smtp_sink(pool: asyncpg.Pool) -> AsyncIterator[Settings]:
    """The dev SMTP sink on a free port; yields worker settings that send to it."""
    port = free_port()
    server = await start_sink(pool, "127.0.0.1", port)
    try:
        yield Settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_from="journeys@acme.test",
        )
    finally:
        server.close()
        await server.wait_closed()


async def mailbox(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM dev_mailbox ORDER BY id")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)
        return data

    def signature_valid(self, secret: str = WEBHOOK_SECRET) -> bool:
        parts = dict(p.split("=", 1) for p in self.headers["x-nurture-signature"].split(","))
        signed = f"{parts['t']}.".encode() + self.raw
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])


@dataclass
class WebhookReceiver:
    """An ASGI app that records every complete request and answers with the next scripted
    status (then `default`)."""

    script: list[tuple[int, str]] = field(default_factory=list)
    default: tuple[int, str] = (200, '{"ok": true}')
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request: like any server, nothing was taken
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, raw))
        status, body = self.script.pop(0) if self.script else self.default
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


@asynccontextmanager
async def webhook_receiver(
    pool: asyncpg.Pool, receiver: WebhookReceiver, workspace: str = "default", **settings: Any
) -> AsyncIterator[WebhookReceiver]:
    """Serves `receiver` on a free port and makes it the workspace's webhook."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    receiver.url = f"http://127.0.0.1:{port}/hooks/nurture"
    channel_settings = ChannelSettings.model_validate(
        {"webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET}, **settings}
    )
    await workspaces_store.save_channel_settings(pool, workspace, channel_settings)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await serving


async def put_template(pool: asyncpg.Pool, name: str, **parts: str) -> None:
    await pool.execute(
        "INSERT INTO templates (workspace, name, subject, html, text) VALUES ('default', $1, $2,"
        " $3, $4)",
        name,
        parts.get("subject"),
        parts.get("html"),
        parts.get("text"),
    )


async def ada_and_welcome(
    pool: asyncpg.Pool, workflow_id: str = "enrollment/x"
) -> SendMessageRequest:
    """Contact ada with an address, a plain `welcome` template, and the send request for
    her welcome email (step 1 of `workflow_id`)."""
    await put_template(pool, "welcome", subject="Welcome", text="Hi there.")
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ('default', 'ada', $1)",
        {"email": "ada@example.test"},
    )
    return email_request(workflow_id)


def email_request(workflow_id: str) -> SendMessageRequest:
    """A send_message activity request for ada's welcome email, as the workflow makes it."""
    ref = EnrollmentRef(
        workspace="default", journey_id="jrn_x", contact_id="ada", workflow_id=workflow_id
    )
    step = StepRecord(
        step_seq=1,
        at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        stage="s",
        action="send_message",
        result="queued",
    )
    action = SendMessage(channels=["email"], template="welcome", marketing=True)
    return SendMessageRequest(enrollment=ref, step=step, action=action)


class GatedMailbox(Mailbox):
    """The dev sink's mailbox, for tests of the hand-over: it keeps every message; the
    first `drops` times it then cuts the connection instead of answering 250 (the sender
    cannot tell whether the message arrived); every message waits for `gate` before it is
    kept (`waiting` counts the messages that reached it)."""

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


async def gated_smtp(handler: GatedMailbox) -> tuple[asyncio.Server, Settings]:
    """An SMTP server on a free port around `handler`, and settings that send to it."""
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
