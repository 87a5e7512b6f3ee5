"""Enrolling a contact into a journey: the refusal checks of DESIGN §3.2, in order, then
the unique enrollment row, then the workflow start. Used by the API, triggers and
activation. Does I/O: never imported by workflow code."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from shared import search_attributes as sa
from shared.contact import ContactEvent, ContactState
from shared.criteria import apply_event
from shared.enrollment import EnrollmentInput, workflow_id
from shared.entry import Enrolled, JourneyRecord, Refused, refusal_for
from shared.journey import Journey
from shared.settings import Settings
from store.db import Queryable

SELECT_CONTACT = "SELECT properties, seq FROM contacts WHERE workspace = $1 AND id = $2"
SELECT_LISTS = "SELECT list FROM list_members WHERE workspace = $1 AND contact_id = $2"
SELECT_EVENTS = """
SELECT seq, id, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND contact_id = $2 AND type = ANY($3::text[]) ORDER BY seq
"""
SELECT_MAX_EVENT_SEQ = """
SELECT coalesce(max(seq), 0) FROM events WHERE workspace = $1 AND contact_id = $2
"""
# What load_contact_state's watermark would be now: equal means nothing changed since.
SELECT_WATERMARK = """
SELECT greatest(
    (SELECT seq FROM contacts WHERE workspace = $1 AND id = $2),
    (SELECT coalesce(max(seq), 0) FROM events WHERE workspace = $1 AND contact_id = $2)
)
"""
INSERT_ENROLLMENT = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                         goal_epoch, stage)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
"""
DELETE_ENROLLMENT = "DELETE FROM enrollments WHERE workflow_id = $1"
INSERT_REFUSAL = """
INSERT INTO refusals (workspace, journey_id, contact_id, reason, explanation, once)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace, journey_id, contact_id, reason) WHERE once DO NOTHING
"""


async def load_contact_state(
    conn: Queryable, workspace: str, contact_id: str, journey: Journey
) -> ContactState | None:
    """The contact as the journey sees it, with the watermark of what it already reflects.
    For a watermark to be exact, run it in one snapshot (`snapshot_contact_state`)."""
    contact = await conn.fetchrow(SELECT_CONTACT, workspace, contact_id)
    if contact is None:
        return None
    lists = sorted(r["list"] for r in await conn.fetch(SELECT_LISTS, workspace, contact_id))
    state = ContactState(properties=contact["properties"], lists=lists, event_seq=contact["seq"])
    for row in await conn.fetch(
        SELECT_EVENTS, workspace, contact_id, sorted(journey.event_types())
    ):
        state = apply_event(state, ContactEvent(**dict(row)), journey)
    last_event = await conn.fetchval(SELECT_MAX_EVENT_SEQ, workspace, contact_id)
    return state.model_copy(update={"event_seq": max(contact["seq"], last_event)})


async def snapshot_contact_state(
    conn: asyncpg.Connection | PoolConnectionProxy,
    workspace: str,
    contact_id: str,
    journey: Journey,
) -> ContactState | None:
    """`load_contact_state` in one repeatable-read snapshot: the contact row, its lists and
    its events as of one instant, so the watermark covers exactly what the state holds
    (every writer takes the contact's row lock before it draws a sequence number, so a
    change the snapshot misses has a higher sequence than any it holds)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await load_contact_state(conn, workspace, contact_id, journey)


async def enroll(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_id: str,
    *,
    refuse_once: bool = False,
) -> Enrolled | Refused:
    """Enrolls once, ever; every refusal is recorded with its reason (with `refuse_once`,
    the first refusal of this contact for each reason only: triggers)."""
    journey = record.journey
    wf_id = workflow_id(record.workspace, record.id, contact_id)
    async with pool.acquire() as conn:
        state = await snapshot_contact_state(conn, record.workspace, contact_id, journey)
        if state is None:
            return Refused("contact_not_found", f"No contact with id {contact_id!r}.")
        refusal = refusal_for(journey, state)
        if refusal is None:
            inserted = await conn.execute(
                INSERT_ENROLLMENT,
                record.workspace,
                record.id,
                contact_id,
                wf_id,
                record.version,
                record.goal_epoch,
                journey.start_stage,
            )
            if inserted.endswith(" 0"):
                refusal = Refused(
                    "already_enrolled", "The contact was enrolled in this journey before."
                )
            elif await conn.fetchval(SELECT_WATERMARK, record.workspace, contact_id) != (
                state.event_seq
            ):
                # From the row on, the relay routes this contact's changes to the enrollment;
                # a change committed between the snapshot and the row would reach neither,
                # so start from a snapshot taken after the row (issue 5: nothing is lost).
                state = (
                    await snapshot_contact_state(conn, record.workspace, contact_id, journey)
                    or state
                )
        if refusal is not None:
            await conn.execute(
                INSERT_REFUSAL,
                record.workspace,
                record.id,
                contact_id,
                refusal.reason,
                refusal.explanation,
                refuse_once,
            )
            return refusal
    return await _start(pool, temporal, settings, record, contact_id, state)


async def _start(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_id: str,
    state: ContactState,
) -> Enrolled | Refused:
    """Starts the enrollment's workflow (its row is committed): once, by its id."""
    journey = record.journey
    wf_id = workflow_id(record.workspace, record.id, contact_id)
    payload = EnrollmentInput(
        workspace=record.workspace,
        journey_id=record.id,
        journey_version=record.version,
        journey=journey,
        contact_id=contact_id,
        contact=state,
        goal_epoch=record.goal_epoch,
        max_stage_entries=settings.max_stage_entries,
    )
    try:
        await temporal.start_workflow(
            "EnrollmentWorkflow",
            payload,
            id=wf_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.WORKSPACE, record.workspace),
                    SearchAttributePair(sa.JOURNEY_ID, record.id),
                    SearchAttributePair(sa.CONTACT_ID, contact_id),
                    SearchAttributePair(sa.JOURNEY_VERSION, record.version),
                    SearchAttributePair(sa.JOURNEY_STAGE, journey.start_stage),
                ]
            ),
            static_summary=f"{contact_id} in journey {journey.name!r} (v{record.version})",
        )
    except WorkflowAlreadyStartedError:
        return Refused("already_enrolled", "The contact was enrolled in this journey before.")
    except RPCError:
        # Temporal refused or is down: give the row back so a retry can enroll.
        await pool.execute(DELETE_ENROLLMENT, wf_id)
        raise
    return Enrolled(wf_id)


# --- many at once (activation) --------------------------------------------------------

SNAPSHOT_CONTACTS = """
SELECT c.id, c.properties, c.seq,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists,
       (SELECT coalesce(max(e.seq), 0) FROM events e
        WHERE e.workspace = c.workspace AND e.contact_id = c.id) AS last_event
FROM contacts c WHERE c.workspace = $1 AND c.id = ANY($2::text[])
"""
SNAPSHOT_EVENTS = """
SELECT contact_id, seq, id, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND contact_id = ANY($2::text[]) AND type = ANY($3::text[])
ORDER BY contact_id, seq
"""
SELECT_WATERMARKS = """
SELECT c.id, greatest(c.seq, (SELECT coalesce(max(e.seq), 0) FROM events e
                              WHERE e.workspace = c.workspace AND e.contact_id = c.id))
       AS watermark
FROM contacts c WHERE c.workspace = $1 AND c.id = ANY($2::text[])
"""
INSERT_ENROLLMENTS = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                         goal_epoch, stage)
SELECT $1, $2, contact_id, workflow_id, $3, $4, $5
FROM unnest($6::text[], $7::text[]) AS new (contact_id, workflow_id)
ORDER BY contact_id
ON CONFLICT DO NOTHING
RETURNING contact_id
"""
INSERT_REFUSALS = """
INSERT INTO refusals (workspace, journey_id, contact_id, reason, explanation)
SELECT $1, $2, contact_id, reason, explanation
FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS r (contact_id, reason, explanation)
"""


async def snapshot_contact_states(
    conn: asyncpg.Connection | PoolConnectionProxy,
    workspace: str,
    contact_ids: Sequence[str],
    journey: Journey,
) -> dict[str, ContactState]:
    """`snapshot_contact_state` of many contacts, in one snapshot and two queries; a
    contact that does not exist is missing from the result."""
    event_types = sorted(journey.event_types())
    events: dict[str, list[asyncpg.Record]] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        contacts = await conn.fetch(SNAPSHOT_CONTACTS, workspace, list(contact_ids))
        if event_types:
            for row in await conn.fetch(SNAPSHOT_EVENTS, workspace, list(contact_ids), event_types):
                events.setdefault(row["contact_id"], []).append(row)
    states: dict[str, ContactState] = {}
    for contact in contacts:
        state = ContactState(
            properties=contact["properties"],
            lists=sorted(contact["lists"]),
            event_seq=contact["seq"],
        )
        for row in events.get(contact["id"], ()):
            fields = {k: v for k, v in dict(row).items() if k != "contact_id"}
            state = apply_event(state, ContactEvent(**fields), journey)
        states[contact["id"]] = state.model_copy(
            update={"event_seq": max(contact["seq"], contact["last_event"])}
        )
    return states


async def enroll_many(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_ids: Sequence[str],
    concurrency: int,
) -> dict[str, Enrolled | Refused]:
    """`enroll` for many contacts at once, with the same outcome for each: the refusal
    checks from one snapshot, the enrollment rows and refusals each in one statement,
    then the workflow starts, at most `concurrency` in flight. Every start is tried
    before an error is raised (a start Temporal refused gives its row back)."""
    journey = record.journey
    results: dict[str, Enrolled | Refused] = {}
    refusals: dict[str, Refused] = {}
    async with pool.acquire() as conn:
        states = await snapshot_contact_states(conn, record.workspace, contact_ids, journey)
        candidates: list[str] = []
        for contact_id in contact_ids:
            state = states.get(contact_id)
            if state is None:
                results[contact_id] = Refused(
                    "contact_not_found", f"No contact with id {contact_id!r}."
                )
            elif (refusal := refusal_for(journey, state)) is not None:
                refusals[contact_id] = refusal
            else:
                candidates.append(contact_id)
        inserted: set[str] = set()
        if candidates:
            ids = [workflow_id(record.workspace, record.id, c) for c in candidates]
            rows = await conn.fetch(
                INSERT_ENROLLMENTS,
                record.workspace,
                record.id,
                record.version,
                record.goal_epoch,
                journey.start_stage,
                candidates,
                ids,
            )
            inserted = {r["contact_id"] for r in rows}
            for contact_id in candidates:
                if contact_id not in inserted:
                    refusals[contact_id] = Refused(
                        "already_enrolled", "The contact was enrolled in this journey before."
                    )
            # as in `enroll`: a change committed between the snapshot and the row reached
            # neither, so those contacts start from a snapshot taken after their row
            watermarks = await conn.fetch(SELECT_WATERMARKS, record.workspace, sorted(inserted))
            moved = [r["id"] for r in watermarks if r["watermark"] != states[r["id"]].event_seq]
            if moved:
                states.update(await snapshot_contact_states(conn, record.workspace, moved, journey))
        if refusals:
            refused = sorted(refusals)
            await conn.execute(
                INSERT_REFUSALS,
                record.workspace,
                record.id,
                refused,
                [refusals[c].reason for c in refused],
                [refusals[c].explanation for c in refused],
            )
    results.update(refusals)
    gate = asyncio.Semaphore(concurrency)

    async def start(contact_id: str) -> None:
        async with gate:
            results[contact_id] = await _start(
                pool, temporal, settings, record, contact_id, states[contact_id]
            )

    to_start = [c for c in candidates if c in inserted]
    outcomes = await asyncio.gather(*(start(c) for c in to_start), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return {c: results[c] for c in contact_ids}
