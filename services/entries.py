"""Entries: enrolling into a journey that may repeat, or that an event starts
(docs/journeys.md, "Event triggers" and "Re-entry"). The refusal checks of
`shared.entry` apply first, then the re-entry rule (`shared.reentry`) on the contact's
latest entry, then the entry's row: numbered, keyed by its trigger event (a burst of the
same event makes one entry) and one running at a time (a unique index). Its workflow is
started by `services.enrolling._start`, passed in as `start`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio.client import Client

from shared.contact import ContactState
from shared.enrollment import workflow_id
from shared.entry import Enrolled, JourneyRecord, Refused, entry_stage, refusal_for
from shared.reentry import LatestEntry, next_entry
from shared.settings import Settings
from shared.trigger_context import TriggerContext, bind
from store import contacts as contacts_store
from store import enrollments as enrollments_store

Start = Callable[..., Awaitable[Enrolled | Refused]]


async def enter(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_id: str,
    trigger: TriggerContext | None,
    entered_by: str | None,
    start: Start,
) -> Enrolled | Refused | None:
    """Starts the contact's next entry, or records why not; None when `trigger` (an event)
    started an entry before."""
    if trigger is not None:
        record = JourneyRecord(
            workspace=record.workspace,
            id=record.id,
            version=record.version,
            status=record.status,
            goal_epoch=record.goal_epoch,
            journey=bind(record.journey, trigger),
        )
        entered_by = entered_by or f"event {trigger.type} ({trigger.key})"
    ws, journey = record.workspace, record.journey
    key = trigger.key if trigger is not None else None
    async with pool.acquire() as conn:
        state = await contacts_store.snapshot_state(conn, ws, contact_id, journey)
        if state is None:
            return Refused("contact_not_found", f"No contact with id {contact_id!r}.")
        checked = _fresh(journey, state) if trigger is not None else state
        latest = await enrollments_store.latest_entry(conn, ws, record.id, contact_id)
        if latest is not None and latest["unstarted"] and latest["trigger_key"] == key:
            # admitted by a process that died before starting it: start it now
            number = int(latest["entry"])
        elif key is not None and await enrollments_store.entered_by(conn, ws, record.id, key):
            return None
        else:
            refusal = refusal_for(journey, checked) or _reentry(journey, latest)
            number = 0 if isinstance(refusal, Refused) else int(refusal)
            if number and not await _insert(conn, record, contact_id, number, key, checked):
                if key is not None and await enrollments_store.entered_by(conn, ws, record.id, key):
                    return None
                refusal = Refused(
                    "already_active", "Another entry of the contact started at the same time."
                )
            if isinstance(refusal, Refused):
                await enrollments_store.insert_refusal(
                    conn, ws, record.id, contact_id, refusal.reason, refusal.explanation, False
                )
                return refusal
            if await contacts_store.watermark(conn, ws, contact_id) != state.event_seq:
                # as in `enrolling.enroll`: a change committed between the snapshot and the
                # row reached neither, so start from a snapshot taken after the row
                state = await contacts_store.snapshot_state(conn, ws, contact_id, journey) or state
    begin = entry_stage(journey, checked.properties)
    return await start(
        pool, temporal, settings, record, contact_id, state, entered_by, False, number, trigger,
        begin,
    )  # fmt: skip


def _fresh(journey: Any, state: ContactState) -> ContactState:
    """An event starts every entry at the start stage: the stage property (an end value
    a previous entry left there, say) neither refuses it nor chooses where it begins (the
    workflow, which sees it, overwrites it on entering the start stage)."""
    props = {k: v for k, v in state.properties.items() if k != journey.stage_property}
    return state.model_copy(update={"properties": props})


def _reentry(journey: Any, latest: asyncpg.Record | None) -> int | Refused:
    found = None
    if latest is not None:
        found = LatestEntry(latest["entry"], latest["status"], latest["ended_at"])
    return next_entry(journey, found, datetime.now(UTC))


async def _insert(
    conn: Any,
    record: JourneyRecord,
    contact_id: str,
    number: int,
    key: str | None,
    state: Any,
) -> bool:
    return await enrollments_store.insert_entry(
        conn,
        record.workspace,
        record.id,
        contact_id,
        workflow_id(record.workspace, record.id, contact_id, number),
        record.version,
        record.goal_epoch,
        entry_stage(record.journey, state.properties),
        number,
        key,
    )
