"""Enrollment triggers (docs/design.md, "Triggers"): which contacts a change enrolls, and
enrolling them. Run by the relay, in the API process.

Two rules:

- **list/stage**: a contact enters an active journey without a `trigger` when it is in one
  of the journey's eligible lists (or the journey has none) and its stage property equals
  the start stage's value (or is empty and `enroll_empty_stage` is set). It is checked when
  a change touches what the rule reads: the contact is new, its stage property changed, or
  it joined or left one of the eligible lists.
- **goal achieved**: a contact that met the goal of journey X enters every active journey
  whose `trigger` is `{"goal_achieved_in": X}`.
- **event**: an event of the contact matching a journey's `{"event": {...}}` trigger starts
  an entry of that journey, keyed by the event, with the event as its context (every such
  event is delivered, so the ones that cannot start an entry are refused and recorded).

The relay finds candidates in its routing pass (`candidates()`, pure, over rows fetched
once for the whole batch), keeps each as a delivery, and `enter()` enrolls it when it is
delivered, through `services.enrolling.enroll`: the refusals of docs/design.md, "Entry and
refusals", apply and are
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

from services.enrolling import enroll
from shared.entry import ContactView, Enrolled, JourneyRecord, Refused, enters
from shared.routing import Delivery
from shared.settings import Settings
from shared.trigger_context import TriggerContext
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store import events as events_store
from store import journeys as journeys_store
from store import metrics as metrics_store
from store.db import Queryable

log = logging.getLogger("nurture.relay")


class ActiveJourneys:
    """The active journeys of the workspaces in a batch; parsed definitions are kept by
    (workspace, id, version, goal epoch), which an edit or a new goal epoch changes."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._parsed: dict[tuple[str, str, int, int], JourneyRecord] = {}
        self._invalid: set[tuple[str, str, int, int]] = set()

    async def load(
        self, conn: Queryable, workspaces: Iterable[str], event_triggered: bool = False
    ) -> dict[str, list[JourneyRecord]]:
        names = sorted(set(workspaces))
        if not names:
            return {}
        active: dict[str, list[JourneyRecord]] = {}
        for row in await journeys_store.active_journeys(conn, names, event_triggered):
            key = (row["workspace"], row["id"], row["version"], row["goal_epoch"])
            record = self._parsed.get(key)
            if record is None:
                if len(self._parsed) >= self._limit:
                    self._parsed.clear()
                    self._invalid.clear()
                try:
                    record = JourneyRecord.from_row(row["workspace"], row)
                except ValidationError:
                    if key not in self._invalid:
                        log.error("journey %s does not validate; it triggers nothing", key)
                        self._invalid.add(key)
                    continue
                self._parsed[key] = record
            active.setdefault(row["workspace"], []).append(record)
        return active

    async def event_triggered(
        self, conn: Queryable, keys: dict[str, list[tuple[str, int, int]]]
    ) -> dict[str, list[JourneyRecord]]:
        """The active journeys an event starts, from their keys (journey id, version, goal
        epoch) per workspace as a claim brings them: parsed definitions kept from before,
        read (`load`) only when one is new to this relay."""
        found: dict[str, list[JourneyRecord]] = {}
        for workspace, keyed in keys.items():
            for journey_id, version, epoch in keyed:
                key = (workspace, journey_id, version, epoch)
                if key in self._invalid:
                    continue
                record = self._parsed.get(key)
                if record is None:
                    return await self.load(conn, keys, event_triggered=True)
                found.setdefault(workspace, []).append(record)
        return found


async def contact_views(
    conn: Queryable, contacts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ContactView]:
    """What the list/stage rule reads of each (workspace, contact id)."""
    found = await contacts_store.views(conn, contacts)
    return {key: ContactView(props, lists) for key, (props, lists) in found.items()}


async def enter(
    pool: asyncpg.Pool, temporal: Client, settings: Settings, delivery: Delivery
) -> Enrolled | Refused | None:
    """Enrolls a trigger's candidate, if the trigger still holds: the journey is still
    active, the contact not already in it and, for the list/stage rule, the rule still true
    of the contact as it is now. None: nothing to do. Raises `RPCError` when Temporal did
    not take the start (the relay retries)."""
    ws, contact_id = delivery.workspace, delivery.contact_id
    row = await journeys_store.journey(pool, ws, delivery.journey_id)
    if row is None or row["status"] != "active":
        return None
    record = JourneyRecord.from_row(ws, row)
    journey = record.journey
    if delivery.kind == "enter_on_event":
        return await _enter_on_event(pool, temporal, settings, record, delivery)
    status = await enrollments_store.status_of(pool, ws, record.id, contact_id)
    if status is not None and status != "completed":
        return None
    if delivery.kind == "enter":
        if journey.trigger is not None:
            return None
        state = await contacts_store.journey_state(pool, ws, contact_id, journey)
        if state is None or not enters(
            journey, ContactView(state.properties, frozenset(state.lists))
        ):
            return None
        return await enroll(pool, temporal, settings, record, contact_id, refuse_once=True)
    if journey.trigger is None or journey.trigger.goal_achieved_in is None:
        return None
    source = journey.trigger.goal_achieved_in
    converted = await metrics_store.converted_at(pool, ws, source, contact_id)
    if converted is None:  # met the goal there, but it did not count: not a trigger
        return None
    because = f"converted in journey {source} at {converted.isoformat()}"
    return await enroll(
        pool, temporal, settings, record, contact_id, refuse_once=True, entered_by=because
    )


async def _enter_on_event(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    delivery: Delivery,
) -> Enrolled | Refused | None:
    """The journey's event trigger: the event (read as stored) must match its filter; its
    idempotency key keys the entry, its properties are the entry's context."""
    trigger = record.journey.trigger
    if trigger is None or trigger.event is None:
        return None
    found = await events_store.trigger_event(
        pool, delivery.workspace, delivery.seq, delivery.contact_id
    )
    if found is None or not trigger.event.matches(found[0]):
        return None
    event, key = found
    context = TriggerContext.of(event, key)
    return await enroll(pool, temporal, settings, record, delivery.contact_id, trigger=context)
