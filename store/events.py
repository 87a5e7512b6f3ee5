"""Events (`events`): appended once per idempotency key, read back by sequence number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.contact import ContactEvent
from store.db import Queryable

# The contacts' upsert runs to completion first: the events' insert reads its count (an
# InitPlan, evaluated before the first event row), so every event's seq is drawn while its
# contact's row lock is held, as two statements in one transaction did.
APPEND_EVENTS = """
WITH locked AS (
    INSERT INTO contacts AS c (workspace, id)
    SELECT $1, id FROM unnest($2::text[]) AS id ORDER BY id
    ON CONFLICT (workspace, id) DO UPDATE SET updated_at = c.updated_at
    RETURNING 1
)
INSERT INTO events (workspace, id, idempotency_key, contact_id, type, target, properties,
                    occurred_at)
SELECT $1, id, key, contact_id, type, target, properties, occurred_at
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
            $9::timestamptz[]) WITH ORDINALITY
     AS t(id, key, contact_id, type, target, properties, occurred_at, position)
WHERE (SELECT count(*) FROM locked) > 0
ORDER BY position
ON CONFLICT (workspace, idempotency_key) DO NOTHING
RETURNING idempotency_key, id, seq, contact_id
"""

SELECT_BY_KEYS = """
SELECT idempotency_key, id, seq, contact_id FROM events
WHERE workspace = $1 AND idempotency_key = ANY($2::text[])
"""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append: its generated id, idempotency key and fields."""

    id: str
    key: str
    contact_id: str
    type: str
    target: str | None
    properties: dict[str, Any]
    occurred_at: datetime


async def append(
    conn: Queryable, workspace: str, events: Sequence[NewEvent]
) -> list[asyncpg.Record]:
    """Appends the events whose key is new, in order, in one statement that first takes
    the row lock of each of their contacts in id order (creating the missing ones), so two
    batches never deadlock and a contact's events and changes keep one order; returns
    idempotency_key, id, seq and contact_id of those appended. One statement, so no
    transaction around it."""
    return await conn.fetch(
        APPEND_EVENTS,
        workspace,
        sorted({e.contact_id for e in events}),
        [e.id for e in events],
        [e.key for e in events],
        [e.contact_id for e in events],
        [e.type for e in events],
        [e.target for e in events],
        [e.properties for e in events],
        [e.occurred_at for e in events],
    )


async def by_keys(conn: Queryable, workspace: str, keys: list[str]) -> list[asyncpg.Record]:
    """idempotency_key, id, seq and contact_id of the events stored under `keys`."""
    return await conn.fetch(SELECT_BY_KEYS, workspace, keys)


TRIGGER_EVENT = """
SELECT seq, id, idempotency_key, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND seq = $2 AND contact_id = $3
"""


async def trigger_event(
    conn: Queryable, workspace: str, seq: int, contact_id: str
) -> tuple[ContactEvent, str] | None:
    """The event that may start an entry, with its idempotency key (the entry's key)."""
    e = await conn.fetchrow(TRIGGER_EVENT, workspace, seq, contact_id)
    if e is None:
        return None
    event = ContactEvent(
        id=e["id"],
        seq=e["seq"],
        type=e["type"],
        target=e["target"],
        properties=e["properties"],
        occurred_at=e["occurred_at"],
    )
    return event, e["idempotency_key"]
