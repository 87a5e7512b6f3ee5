"""Events (`events`): appended once per idempotency key, read back by sequence number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.contact import ContactEvent
from store.changes import open_enrollments
from store.db import Queryable

# The contacts' upsert runs to completion first: the events' insert reads its count (an
# InitPlan, evaluated before the first event row), so every event's seq is drawn while its
# contact's row lock is held, as two statements in one transaction did.
_LOCK_AND_INSERT = """
WITH locked AS (
    INSERT INTO contacts AS c (workspace, id)
    SELECT $1, id FROM unnest($2::text[]) AS id ORDER BY id
    ON CONFLICT (workspace, id) DO UPDATE SET updated_at = c.updated_at
    RETURNING 1
), appended AS (
    INSERT INTO events (workspace, id, idempotency_key, contact_id, type, target, properties,
                        occurred_at, handed_off)
    SELECT $1, id, key, contact_id, type, target, properties, occurred_at, {handed_off}
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
                $9::timestamptz[]) WITH ORDINALITY
         AS t(id, key, contact_id, type, target, properties, occurred_at, position)
    WHERE (SELECT count(*) FROM locked) > 0
    ORDER BY position
    ON CONFLICT (workspace, idempotency_key) DO NOTHING
    RETURNING workspace, idempotency_key, id, seq, contact_id, type, target, properties,
              occurred_at
)"""

APPEND_EVENTS = (
    _LOCK_AND_INSERT.format(handed_off="NULL::boolean")
    + "\nSELECT idempotency_key, id, seq, contact_id FROM appended\n"
)

# The same, handed to the caller's relay: the events' changes are queued here, leased to
# it for $10 seconds (the trigger leaves `handed_off` events alone, and notifies no one),
# each with what a claim brings (`changes.CLAIM_CHANGES`, whose columns these are): the
# contact's open enrollments and the workspace's event-started journeys.
HAND_OFF_EVENTS = (
    _LOCK_AND_INSERT.format(handed_off="true")
    + f""", queued AS (
    INSERT INTO change_queue (workspace, contact_id, kind, seq, name, leased_until)
    SELECT workspace, contact_id, 'event', seq, type, now() + $10 * interval '1 second'
    FROM appended ORDER BY seq
    RETURNING id, workspace, contact_id, kind, seq, name, changed, created
), triggering AS (
    SELECT coalesce(jsonb_agg(jsonb_build_array(j.id, j.version, j.goal_epoch)), '[]'::jsonb)
           AS keys
    FROM journeys j
    WHERE j.workspace = $1 AND j.status = 'active' AND (j.definition -> 'trigger') ? 'event'
)
SELECT queued.*, a.idempotency_key, a.id AS event_id, a.type AS event_type,
       a.target AS event_target, a.properties AS event_properties,
       a.occurred_at AS event_occurred_at, {open_enrollments("a")},
       triggering.keys AS event_journeys
FROM appended a JOIN queued ON queued.seq = a.seq CROSS JOIN triggering
"""
)

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
    return await conn.fetch(APPEND_EVENTS, *_append_args(workspace, events))


def _append_args(workspace: str, events: Sequence[NewEvent]) -> list[Any]:
    return [
        workspace,
        sorted({e.contact_id for e in events}),
        [e.id for e in events],
        [e.key for e in events],
        [e.contact_id for e in events],
        [e.type for e in events],
        [e.target for e in events],
        [e.properties for e in events],
        [e.occurred_at for e in events],
    ]


async def hand_off(
    conn: Queryable, workspace: str, events: Sequence[NewEvent], lease: float
) -> list[asyncpg.Record]:
    """`append`, the events' changes leased for `lease` seconds to the caller, who routes
    them: a row per event appended, with `idempotency_key`, `event_id`, `seq` and
    `contact_id`, and the columns of a claimed change (`changes.claim_of` reads them)."""
    return await conn.fetch(HAND_OFF_EVENTS, *_append_args(workspace, events), lease)


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
