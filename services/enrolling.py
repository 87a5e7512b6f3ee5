"""Enrolling contacts (docs/design.md, "Entry and refusals"): the refusal checks in order
(`shared.entry`), then the unique enrollment row, then the workflow start, once per
contact and journey ever. Run by the API process (explicit enrollments, and the relay's
triggers) and by the worker (activation batches)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from services import entries
from services.experiments import auto_splits, winners_of
from shared import search_attributes as sa
from shared.contact import ContactState
from shared.eligibility import Eligibility, eligibility
from shared.enrollment import BEHAVIOUR, EnrollmentInput, Unenroll, workflow_id
from shared.entry import Enrolled, JourneyRecord, Refused, entry_stage, refusal_for
from shared.errors import Conflict, Invalid, NotFound, Unavailable
from shared.reentry import repeats
from shared.settings import Settings
from shared.trigger_context import TriggerContext, bind_journey_id
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store import experiments as experiments_store
from store import journeys as journeys_store


async def enroll(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_id: str,
    *,
    refuse_once: bool = False,
    entered_by: str | None = None,
    trigger: TriggerContext | None = None,
) -> Enrolled | Refused | None:
    """Enrolls once, ever; every refusal is recorded with its reason (with `refuse_once`,
    the first refusal of this contact for each reason only: triggers). `entered_by`: what
    enrolled the contact, in words, for its log (default: "enrolled"). A journey that may
    repeat, or an entry started by an event (`trigger`), goes by `entries.enter`; None:
    that event started an entry before (nothing to do)."""
    if trigger is not None or repeats(record.journey):
        return await entries.enter(
            pool, temporal, settings, record, contact_id, trigger, entered_by, _start
        )
    journey = record.journey
    wf_id = workflow_id(record.workspace, record.id, contact_id)
    async with pool.acquire() as conn:
        state = await contacts_store.snapshot_state(conn, record.workspace, contact_id, journey)
        if state is None:
            return Refused("contact_not_found", f"No contact with id {contact_id!r}.")
        refusal = refusal_for(journey, state)
        if refusal is not None and await enrollments_store.never_started(conn, [wf_id]):
            # admitted when its row was inserted, by a process that died before starting
            # it: start it below, as the contact is (the workflow then sees what changed)
            refusal = None
        elif refusal is None:
            inserted = await enrollments_store.insert_enrollment(
                conn,
                record.workspace,
                record.id,
                contact_id,
                wf_id,
                record.version,
                record.goal_epoch,
                entry_stage(journey, state.properties),
            )
            if inserted.endswith(" 0") and not await enrollments_store.never_started(conn, [wf_id]):
                refusal = Refused(
                    "already_enrolled", "The contact was enrolled in this journey before."
                )
            elif await contacts_store.watermark(conn, record.workspace, contact_id) != (
                state.event_seq
            ):
                # From the row on, the relay routes this contact's changes to the enrollment;
                # a change committed between the snapshot and the row would reach neither,
                # so start from a snapshot taken after the row (nothing is lost).
                state = (
                    await contacts_store.snapshot_state(conn, record.workspace, contact_id, journey)
                    or state
                )
        if refusal is not None:
            await enrollments_store.insert_refusal(
                conn,
                record.workspace,
                record.id,
                contact_id,
                refusal.reason,
                refusal.explanation,
                refuse_once,
            )
            return refusal
    return await _start(
        pool, temporal, settings, record, contact_id, state, entered_by, refuse_once
    )


async def _start(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    record: JourneyRecord,
    contact_id: str,
    state: ContactState,
    entered_by: str | None = None,
    refuse_once: bool = False,
    number: int = 1,
    trigger: TriggerContext | None = None,
    begin: str | None = None,
) -> Enrolled | Refused:
    """Starts the enrollment's workflow (its row is committed): once, by its id. A start
    Temporal rejects as a duplicate (a retry of a start that did happen) is refused
    `already_enrolled` and recorded so. `number`: which entry of the contact (journeys
    that may repeat); `trigger`: the event that started it (`record.journey` is bound)."""
    journey = bind_journey_id(record.journey, record.id)
    wf_id = workflow_id(record.workspace, record.id, contact_id, number)
    entry = begin or entry_stage(journey, state.properties)
    winners: dict[str, str] = {}
    if auto_splits(journey):  # new contacts take a declared winner's path
        winners = winners_of(await experiments_store.winners(pool, record.workspace, record.id))
    payload = EnrollmentInput(
        workspace=record.workspace,
        journey_id=record.id,
        journey_version=record.version,
        journey=journey,
        contact_id=contact_id,
        contact=state,
        goal_epoch=record.goal_epoch,
        max_stage_entries=settings.max_stage_entries,
        entry_stage=entry,
        entered_by=entered_by,
        behaviour=BEHAVIOUR,
        winners=winners,
        entry=number,
        trigger=trigger,
    )
    try:
        handle = await temporal.start_workflow(
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
                    SearchAttributePair(sa.JOURNEY_STAGE, entry),
                ]
            ),
            static_summary=f"{contact_id} in journey {journey.name!r} (v{record.version})"
            + (f", entry {number}" if number > 1 else ""),
            # a cluster with task queue fairness (`matching.enableFairness`) gives each
            # workspace its turn at the workers (docs/operating.md)
            priority=Priority(fairness_key=record.workspace),
        )
    except WorkflowAlreadyStartedError:
        refusal = Refused("already_enrolled", "The contact was enrolled in this journey before.")
        await enrollments_store.insert_refusal(
            pool, record.workspace, record.id, contact_id, refusal.reason, None, refuse_once
        )
        return refusal
    except RPCError as exc:
        # Temporal refused or is down: give the row back so a retry can enroll.
        await enrollments_store.delete_enrollment(pool, wf_id)
        if exc.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        # refused for good (a payload over Temporal's size limit): retrying cannot help
        refusal = temporal_refusal(exc.message)
        await enrollments_store.insert_refusal(
            pool, record.workspace, record.id, contact_id, refusal.reason, None, False
        )
        return refusal
    return Enrolled(wf_id, handle.first_execution_run_id)


def temporal_refusal(message: str) -> Refused:
    """The refusal for a start Temporal turned down as invalid."""
    if "size" in message.lower() or "too large" in message.lower():
        why = f"Temporal refused the enrollment as too large ({message}): shrink the contact."
        return Refused("enrollment_too_large", why)
    return Refused("temporal_refused", f"Temporal refused the enrollment: {message}")


# --- many at once (activation) --------------------------------------------------------


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
        states = await contacts_store.snapshot_states(conn, record.workspace, contact_ids, journey)
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
        # admitted by an earlier attempt whose process died before starting them: start
        # them now, whatever the checks say of the contact today (as `enroll` does)
        admitted = {workflow_id(record.workspace, record.id, c): c for c in refusals}
        for key in await enrollments_store.never_started(conn, list(admitted)):
            del refusals[admitted[key]]
            candidates.append(admitted[key])
        inserted: set[str] = set()
        if candidates:
            ids = [workflow_id(record.workspace, record.id, c) for c in candidates]
            rows = await enrollments_store.insert_enrollments(
                conn,
                record.workspace,
                record.id,
                record.version,
                record.goal_epoch,
                [entry_stage(journey, states[c].properties) for c in candidates],
                candidates,
                ids,
            )
            inserted = {r["contact_id"] for r in rows}
            # a row whose workflow never started (the process that inserted it died before
            # starting it, and this is the retry): start it now
            others = {workflow_id(record.workspace, record.id, c): c for c in candidates}
            for key in await enrollments_store.never_started(
                conn, [w for w, c in others.items() if c not in inserted]
            ):
                inserted.add(others[key])
            for contact_id in candidates:
                if contact_id not in inserted:
                    refusals[contact_id] = Refused(
                        "already_enrolled", "The contact was enrolled in this journey before."
                    )
            # as in `enroll`: a change committed between the snapshot and the row reached
            # neither, so those contacts start from a snapshot taken after their row
            watermarks = await contacts_store.watermarks(conn, record.workspace, sorted(inserted))
            moved = [c for c, seq in watermarks.items() if seq != states[c].event_seq]
            if moved:
                states.update(
                    await contacts_store.snapshot_states(conn, record.workspace, moved, journey)
                )
        if refusals:
            refused = sorted(refusals)
            await enrollments_store.insert_refusals(
                conn,
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


# --- one contact, asked for by the API ------------------------------------------------


async def enroll_contact(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    workspace: str,
    journey_id: str,
    contact_id: str,
) -> Enrolled:
    """`POST …/enrollments`: enrolls the contact into an active journey, or raises the
    refusal (`NotFound` for an unknown journey or contact, `Conflict` with the reason
    and its explanation, `Unavailable` when Temporal does not take the start)."""
    row = await journeys_store.journey(pool, workspace, journey_id)
    if row is None:
        raise NotFound("journey_not_found", f"No journey with id {journey_id!r}.")
    if row["status"] != "active":
        raise Conflict("journey_not_active", "Only an active journey accepts enrollments.")
    try:
        result = await enroll(
            pool, temporal, settings, JourneyRecord.from_row(workspace, row), contact_id
        )
    except RPCError as exc:
        raise Unavailable(
            "temporal_unavailable", f"Temporal did not accept the enrollment: {exc.message}"
        ) from exc
    if isinstance(result, Enrolled):
        return result
    assert result is not None  # only an entry started by an event can be a duplicate
    refused = {"contact_not_found": NotFound, "enrollment_too_large": Invalid}
    error = refused.get(result.reason, Conflict)
    raise error(result.reason, result.message, explanation=result.explanation)


async def unenroll_contact(
    pool: asyncpg.Pool, temporal: Client, workspace: str, journey_id: str, contact_id: str
) -> None:
    """`DELETE …/enrollments/{contact}`: asks the running enrollment's workflow to end
    (outcome `unenrolled`)."""
    row = await enrollments_store.enrollment(pool, workspace, journey_id, contact_id)
    if row is None:
        raise NotFound("enrollment_not_found", f"{contact_id!r} is not enrolled here.")
    if row["status"] != "running":
        raise Conflict("enrollment_ended", "The enrollment has already ended.")
    try:
        await temporal.get_workflow_handle(row["workflow_id"]).signal("unenroll", Unenroll())
    except RPCError as exc:
        raise Unavailable(
            "temporal_unavailable", f"Temporal is unavailable: {exc.message}"
        ) from exc


async def eligibility_of(
    pool: asyncpg.Pool, workspace: str, journey_id: str, contact_id: str
) -> Eligibility:
    """`GET …/eligibility/{contact}`: every entry rule checked for the contact as it is
    now (`shared.eligibility`); enrolls nobody, records nothing."""
    row = await journeys_store.journey(pool, workspace, journey_id)
    if row is None:
        raise NotFound("journey_not_found", f"No journey with id {journey_id!r}.")
    journey = JourneyRecord.from_row(workspace, row).journey
    async with pool.acquire() as conn:
        state = await contacts_store.snapshot_state(conn, workspace, contact_id, journey)
    if state is None:
        raise NotFound("contact_not_found", f"No contact with id {contact_id!r}.")
    status = await enrollments_store.status_of(pool, workspace, journey_id, contact_id)
    return eligibility(journey_id, journey, row["status"], contact_id, state, status)
