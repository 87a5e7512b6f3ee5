"""Enrollment triggers (DESIGN §3.9): which contacts a change enrolls, and enrolling them.

Two rules:

- **list/stage**: a contact enters an active journey without a `trigger` when it is in one
  of the journey's eligible lists (or the journey has none) and its stage property equals
  the start stage's value (or is empty and `enroll_empty_stage` is set). It is checked when
  a change touches what the rule reads: the contact is new, its stage property changed, or
  it joined or left one of the eligible lists.
- **goal achieved**: a contact that met the goal of journey X enters every active journey
  whose `trigger` is `{"goal_achieved_in": X}`.

The relay finds candidates in its routing pass (`candidates()`, pure, over rows fetched
once for the whole batch), keeps each as a delivery, and `enter()` enrolls it when it is
delivered, through `services.enrolling.enroll`: the refusals of DESIGN §3.2 apply and are
recorded like any other. A contact already in the journey (running or inside its
attribution window) is not a candidate: the journey's own stage writes must not read as
attempts to enter again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import asyncpg
from pydantic import ValidationError
from temporalio.client import Client

from services.enrolling import enroll, load_contact_state
from shared.entry import ContactView, Enrolled, JourneyRecord, Refused, enters
from shared.routing import Delivery, contact_keys
from shared.settings import Settings
from store.db import Queryable

log = logging.getLogger("nurture.relay")

SELECT_ACTIVE_JOURNEYS = """
SELECT workspace, id, version, status, goal_epoch, definition FROM journeys
WHERE workspace = ANY($1::text[]) AND status = 'active'
"""
SELECT_CONTACTS = """
SELECT c.workspace, c.id, c.properties,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists
FROM contacts c
WHERE (c.workspace, c.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
SELECT_JOURNEY = """
SELECT id, version, status, goal_epoch, definition FROM journeys WHERE workspace = $1 AND id = $2
"""
SELECT_ENROLLMENT_STATUS = """
SELECT status FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
"""


class ActiveJourneys:
    """The active journeys of the workspaces in a batch; parsed definitions are kept by
    (workspace, id, version, goal epoch), which an edit or a new goal epoch changes."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._parsed: dict[tuple[str, str, int, int], JourneyRecord] = {}

    async def load(
        self, conn: Queryable, workspaces: Iterable[str]
    ) -> dict[str, list[JourneyRecord]]:
        names = sorted(set(workspaces))
        if not names:
            return {}
        active: dict[str, list[JourneyRecord]] = {}
        for row in await conn.fetch(SELECT_ACTIVE_JOURNEYS, names):
            key = (row["workspace"], row["id"], row["version"], row["goal_epoch"])
            record = self._parsed.get(key)
            if record is None:
                if len(self._parsed) >= self._limit:
                    self._parsed.clear()
                try:
                    record = JourneyRecord.from_row(row["workspace"], row)
                except ValidationError:
                    log.error("journey %s does not validate; it triggers nothing", key)
                    continue
                self._parsed[key] = record
            active.setdefault(row["workspace"], []).append(record)
        return active


async def contact_views(
    conn: Queryable, contacts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ContactView]:
    workspaces, ids = contact_keys(contacts)
    if not ids:
        return {}
    rows = await conn.fetch(SELECT_CONTACTS, workspaces, ids)
    return {
        (r["workspace"], r["id"]): ContactView(r["properties"], frozenset(r["lists"])) for r in rows
    }


async def enter(
    pool: asyncpg.Pool, temporal: Client, settings: Settings, delivery: Delivery
) -> Enrolled | Refused | None:
    """Enrolls a trigger's candidate, if the trigger still holds: the journey is still
    active, the contact not already in it and, for the list/stage rule, the rule still true
    of the contact as it is now. None: nothing to do. Raises `RPCError` when Temporal did
    not take the start (the relay retries)."""
    ws, contact_id = delivery.workspace, delivery.contact_id
    row = await pool.fetchrow(SELECT_JOURNEY, ws, delivery.journey_id)
    if row is None or row["status"] != "active":
        return None
    record = JourneyRecord.from_row(ws, row)
    journey = record.journey
    status = await pool.fetchval(SELECT_ENROLLMENT_STATUS, ws, record.id, contact_id)
    if status is not None and status != "completed":
        return None
    if delivery.kind == "enter":
        if journey.trigger is not None:
            return None
        state = await load_contact_state(pool, ws, contact_id, journey)
        if state is None or not enters(
            journey, ContactView(state.properties, frozenset(state.lists))
        ):
            return None
    elif journey.trigger is None:
        return None
    return await enroll(pool, temporal, settings, record, contact_id, refuse_once=True)
