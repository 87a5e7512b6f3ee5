"""The dev SMTP sink: a real SMTP server (aiosmtpd) on loopback that keeps every message
it receives in Postgres (`dev_mailbox`), where GET /v1/messages shows them. `nurture dev`
runs it and points the worker's SMTP settings at it, so a user sees the journey's emails.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import signal
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.settings import Settings
from store import mailbox as mailbox_store
from store.db import create_pool

log = logging.getLogger(__name__)


def _part(msg: EmailMessage, subtype: str) -> str | None:
    body = msg.get_body(preferencelist=(subtype,))
    if body is None:
        return None
    content: str = body.get_content()
    return content


def _header(msg: EmailMessage, name: str) -> str | None:
    # a long value is folded onto the next line; unfolded, it keeps that line's space
    value = msg.get(name)
    return None if value is None else str(value).strip()


class Mailbox:
    """aiosmtpd handler: every message accepted is stored, then answered 250."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        headers: dict[str, Any] = {k: str(v).strip() for k, v in msg.items()}
        await mailbox_store.keep(
            self.pool,
            _header(msg, "X-Nurture-Workspace"),
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            _header(msg, "Subject"),
            _header(msg, "Message-ID"),
            _header(msg, "X-Nurture-Idempotency-Key"),
            _part(msg, "plain"),
            _part(msg, "html"),
            headers,
        )
        return "250 Message accepted for delivery"


async def start_sink(pool: asyncpg.Pool, host: str, port: int) -> asyncio.Server:
    """Serves SMTP on host:port in the running loop until the server is closed."""
    handler = Mailbox(pool)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname="nurture-dev-sink", loop=loop), host, port
    )


async def run_sink(settings: Settings) -> None:
    """`nurture mail-sink`: runs until SIGINT/SIGTERM."""
    pool = await create_pool(settings.require_database_url(), 1, 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await start_sink(pool, "127.0.0.1", settings.dev_smtp_port)
    log.info("SMTP sink on 127.0.0.1:%d", settings.dev_smtp_port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await pool.close()
