"""Opens, clicks and unsubscribes of tracked emails (docs/channels.md, "Tracking"): each
becomes an event of the contact (`email_opened`, `email_clicked`, `email_unsubscribed`),
stored by the same ingestion as `POST /v1/events`, so goals, exits and `wait_for_event`
hear them through the relay like any other. Each hit is its own event; `repeat` says the
message had one of its class (person or machine) before, `first` that it is the message's
very first of its kind, `machine` that a proxy or scanner most likely made it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared import tracking
from shared.settings import Settings
from store import contacts as contacts_store
from store import events as events_store
from store import tracking as tracking_store
from store.db import with_retry

EVENT_TYPES = {
    tracking.OPEN: "email_opened",
    tracking.CLICK: "email_clicked",
    tracking.UNSUBSCRIBE: "email_unsubscribed",
}


async def record(
    pool: asyncpg.Pool,
    settings: Settings,
    message_id: bytes,
    kind: str,
    link: int,
    agent: str,
) -> asyncpg.Record | None:
    """Counts the hit and stores its event; the tracked message, or None when the token
    names none (or a link it does not have): then nothing is recorded."""
    now = datetime.now(UTC)
    within = timedelta(seconds=settings.machine_seconds)
    async with pool.acquire() as conn, conn.transaction():
        row = await tracking_store.message(conn, message_id, kind)
        if row is None or (kind == tracking.CLICK and link >= len(row["links"])):
            return None
        machine = False
        if kind == tracking.OPEN:
            machine = tracking.machine_open(row["delivered_at"], now, agent, within)
        elif kind == tracking.CLICK:
            last = (row["last_at"], row["last_link"]) if row["last_at"] is not None else None
            machine = tracking.machine_click(row["delivered_at"], now, agent, within, last, link)
        first, first_any = await tracking_store.hit(conn, message_id, kind, not machine, now, link)
        if kind == tracking.UNSUBSCRIBE:
            await contacts_store.write_property(
                conn, row["workspace"], row["contact_id"], "unsubscribed_email", True
            )
    properties: dict[str, Any] = {
        "journey_id": row["journey_id"],
        "stage": row["stage"],
        "message_key": row["idempotency_key"],
        "template": row["template"],
        "machine": machine,
        "repeat": not first,
        "first": first_any,
    }
    if kind == tracking.CLICK:
        properties["url"] = row["links"][link]
    # the insert POST /v1/events makes (its trigger queues the event for the relay)
    event_id, key = f"evt_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    event = events_store.NewEvent(
        event_id, key, row["contact_id"], EVENT_TYPES[kind], row["template"], properties, now
    )

    async def append() -> None:
        await events_store.append(pool, row["workspace"], [event])

    await with_retry(append)
    return row
