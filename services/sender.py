"""The sender: hands queued outbox rows to the providers, in a process of its own.

The send activity only queues (the outbox row, in the step's transaction) and waits for
the row's outcome; the sender delivers it. So a worker that dies, at any moment, never
leaves a message half handed over: the worker holds no provider connection to lose. The
sender runs in the API process (`NURTURE_SEND_FROM_API`, the default) or on its own
(`nurture sender`); any number of them share the queue.

A row is claimed with a session advisory lock on its key, held on the connection that
records the delivery, so two senders never hand over the same row at once, and a sender
that dies releases its rows the moment its connection closes. A row is `sending` from
just before its message goes out until the provider's answer is recorded; a sender that
finds a row `sending` (the sender before it died in between, or lost its database) cannot
know whether the provider took it: it sends again and counts the resend on the row
(`answer.resends`) and in the step's log. That is the one place a message can arrive
twice, at most once more per resend, and only when a sender, not a worker, dies.

A transient failure puts the row back with backoff (`next_attempt_at`); a permanent one
marks it `failed`. Commits that queue a row wake the sender (LISTEN/NOTIFY); it also polls.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.providers import Email, Handover, PermanentFailure, TransientFailure, Webhook
from shared.channels import ChannelSettings
from shared.settings import Settings
from store import outbox as outbox_store
from store import workspaces as workspaces_store
from store.db import create_pool, listen, wait_any

log = logging.getLogger("nurture.sender")

CHANNEL = "nurture_outbox"


@dataclass(frozen=True)
class SenderOptions:
    concurrency: int = 16
    """Rows handed over at once (each holds a database connection while it is)."""
    poll_interval: float = 1.0
    min_backoff: float = 1.0
    max_backoff: float = 60.0
    busy_for: float = 5.0
    """How long a row locked by another sender is left to it before being looked at again."""
    workspace_share: float = 0.75
    """The part of `concurrency` one workspace may hold at once: slow receivers of one
    workspace leave the rest to the others."""

    @property
    def per_workspace(self) -> int:
        return max(1, int(self.concurrency * self.workspace_share))

    def backoff(self, attempts: int) -> float:
        return min(self.max_backoff, self.min_backoff * 2 ** min(attempts, 10))


class Superseded(Exception):
    """Another sender recorded this row's outcome first (or the send was withdrawn)."""


class _Recorded(Handover):
    """The outbox row's side of a hand-over, on the connection that holds the row's lock:
    `sending` (counting a resend when an earlier hand-over never got its answer
    recorded), then `delivered` with the provider's answer."""

    def __init__(self, conn: PoolConnectionProxy, key: str) -> None:
        self.conn = conn
        self.key = key
        self.resends: int | None = None  # set once this attempt has begun the hand-over

    async def begin(self) -> None:
        self.resends = await outbox_store.handing_over(self.conn, self.key)
        if self.resends is None:
            raise Superseded(self.key)

    async def done(self, answer: dict[str, Any]) -> None:
        await outbox_store.delivered(self.conn, self.key, answer)


class Sender:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, options: SenderOptions | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.options = options or SenderOptions(concurrency=settings.sender_concurrency)
        self.email = Email(settings)
        self.webhook = Webhook(settings)
        self.wake = asyncio.Event()
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._workspace_of: dict[str, str] = {}  # the workspace of each row in flight
        self._elsewhere: dict[str, float] = {}  # locked by another sender, until

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sends until `stop` is set, then lets the hand-overs under way finish."""
        listening = asyncio.create_task(listen(self.pool, CHANNEL, lambda _: self.wake.set(), stop))
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    started = await self.start_due()
                except Exception:
                    log.exception("sender pass failed; retrying")
                    await wait_any(stop, None, self.options.max_backoff / 4)
                    continue
                if not started or len(self.in_flight) >= self.options.concurrency:
                    await wait_any(stop, self.wake, self.options.poll_interval)
        finally:
            listening.cancel()
            await asyncio.gather(listening, *self.in_flight.values(), return_exceptions=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Sender]:
        """Runs the sender in the background for the block (tests, in-process setups)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop))
        try:
            yield self
        finally:
            stop.set()
            await task

    async def start_due(self) -> int:
        """Claims due rows up to the free concurrency and starts handing them over; the
        number started."""
        free = self.options.concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        now = asyncio.get_running_loop().time()
        self._elsewhere = {k: t for k, t in self._elsewhere.items() if t > now}
        skip = [*self.in_flight, *self._elsewhere]
        held = Counter(self._workspace_of.values())
        started = 0
        for key, workspace in await outbox_store.due(self.pool, free * 2, skip):
            if started >= free or held[workspace] >= self.options.per_workspace:
                continue
            conn = await self.pool.acquire()
            try:
                locked = await outbox_store.try_lock(conn, key)
            except BaseException:
                await self.pool.release(conn)
                raise
            if not locked:
                await self.pool.release(conn)
                self._elsewhere[key] = now + self.options.busy_for
                continue
            self._start(key, workspace, self.send(conn, key))
            held[workspace] += 1
            started += 1
        return started

    def _start(self, key: str, workspace: str, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(sending)
        self.in_flight[key] = task
        self._workspace_of[key] = workspace

        def finished(_: asyncio.Task[None]) -> None:
            self.in_flight.pop(key, None)
            self._workspace_of.pop(key, None)
            self.wake.set()

        task.add_done_callback(finished)

    async def send_due(self) -> int:
        """One pass: hands over the rows due now and waits for them; how many it began."""
        started = await self.start_due()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        return started

    # --- one row ----------------------------------------------------------------------------

    async def send(self, conn: PoolConnectionProxy, key: str) -> None:
        """Hands one row over, on `conn`, which holds the row's lock; releasing the
        connection (the pool resets it) releases the lock."""
        row = None
        try:
            row = await outbox_store.row(conn, key)
            if row is None:
                return
            ws = await workspaces_store.channel_settings(conn, row["workspace"])
            await self._attempt(conn, ws, row)
        except Exception as exc:
            # not the provider's answer (a lost database, a bug): tried again after a
            # backoff, and a row already `sending` stays so
            log.exception("sender: %s could not be handed over; it is tried again", key)
            delay = self.options.backoff(row["attempts"] if row is not None else 0)
            with suppress(Exception):
                await outbox_store.attempt_failed(
                    conn, key, f"{type(exc).__name__}: {exc}", False, delay
                )
        finally:
            await self.pool.release(conn)

    async def _attempt(
        self, conn: PoolConnectionProxy, ws: ChannelSettings, row: asyncpg.Record
    ) -> None:
        key = row["idempotency_key"]
        handover = _Recorded(conn, key)
        try:
            await self._send(ws, row, handover)
        except Superseded:
            return
        except PermanentFailure as exc:
            await outbox_store.failed(conn, key, exc.answer, str(exc))
        except TransientFailure as exc:
            # queued again only if this attempt's own hand-over surely did not deliver; a
            # row left `sending` by an earlier attempt stays so (that copy may be out there)
            requeue = handover.resends is not None and not exc.maybe_delivered
            delay = self.options.backoff(row["attempts"])
            await outbox_store.attempt_failed(conn, key, str(exc), requeue, delay)
            log.info("sender: %s failed (%s); next attempt in %.0f s", key, exc, delay)

    async def _send(
        self, ws: ChannelSettings, row: asyncpg.Record, handover: Handover
    ) -> dict[str, Any]:
        payload: dict[str, Any] = row["payload"]
        key: str = row["idempotency_key"]
        if row["kind"] == "message" and row["channel"] == "email":
            sender = ws.email_from or self.settings.smtp_from
            content = payload["content"]
            msg = self.email.compose(key, sender, payload["to"], content, row["workspace"])
            return await self.email.send(msg, handover)
        if ws.webhook is None:
            raise PermanentFailure("the workspace's webhook was removed before delivery")
        body = {k: v for k, v in payload.items() if k not in ("properties", "content")}
        body.update(payload.get("content") or {})
        body.update(
            idempotency_key=key,
            kind=row["kind"],
            channel=row["channel"],
            workspace=row["workspace"],
            journey_id=row["journey_id"],
            contact_id=row["contact_id"],
            workflow_id=row["workflow_id"],
        )
        secret = ws.webhook.secret.get_secret_value()
        return await self.webhook.send(str(ws.webhook.url), secret, key, body, handover)


async def run_sender(
    settings: Settings,
    stop: asyncio.Event,
    pool: asyncpg.Pool | None = None,
    options: SenderOptions | None = None,
) -> None:
    """Runs a sender until `stop` is set, on `pool` or on a pool of its own (one connection
    per hand-over under way, one to listen, one to claim)."""
    owned = None
    if pool is None:
        size = (options.concurrency if options else settings.sender_concurrency) + 2
        pool = owned = await create_pool(settings.require_database_url(), 1, size)
    try:
        await Sender(pool, settings, options).run(stop)
    finally:
        if owned is not None:
            with suppress(Exception):
                await owned.close()


async def serve_sender(settings: Settings) -> None:
    """`nurture sender`: runs until SIGINT/SIGTERM, then lets hand-overs under way finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("sender: up to %d hand-overs at once", settings.sender_concurrency)
    await run_sender(settings, stop)
