"""Enrollments: enroll a contact, read the enrollment log, unenroll."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict

from api.deps import ClientDep, PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from api.ingest import ContactIdPath, JourneyIdPath
from api.paging import decode_cursor, encode_cursor
from services import enrolling, journeys
from shared.enrollment import Outcome, Phase
from store import enrollments as enrollments_store

router = APIRouter(prefix="/v1/journeys/{journey_id}/enrollments", tags=["enrollments"])


REFUSAL_MESSAGES = {
    "not_eligible": "The contact was in none of the journey's eligible lists.",
    "suppressed": "The contact was in a suppression list of the journey.",
    "goal_already_met": "The contact already met the journey's goal.",
    "already_enrolled": "The contact had been enrolled in this journey before.",
    "already_active": "An entry of the contact was still in the journey.",
    "max_entries": "The contact had entered the journey as often as it allows.",
    "cooldown": "The contact's previous entry ended within the journey's cooldown.",
}


class EnrollRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"contact_id": "ada"}]}
    )
    contact_id: str


class EnrollResponse(BaseModel):
    workflow_id: str
    run_id: str | None = None
    """The Temporal run the enrollment started (with `workflow_id`, its address in the
    Temporal UI and for awaiting its result)."""


class EnrollmentOut(BaseModel):
    contact_id: str
    entry: int = 1
    """Which entry of the contact (journeys that may repeat list each)."""
    workflow_id: str
    journey_version: int
    status: str
    stage: str | None
    outcome: str | None
    end_value: str | None
    enrolled_at: datetime
    ended_at: datetime | None
    completed_at: datetime | None
    converted: bool = False
    """Counted as a conversion of the journey's goal (its current epoch)."""


class StepOut(BaseModel):
    """One line of the enrollment log. Exits, ends and refusals carry the `reason` in
    words and, where criteria decided it, their `explanation` leaf by leaf."""

    step_seq: int | None
    """None for a refusal (it happened outside any enrollment)."""
    at: datetime
    stage: str | None
    action: str
    result: str
    reason: str | None = None
    explanation: dict[str, Any] | None = None
    detail: dict[str, Any]


class EntryOut(BaseModel):
    """One entry of the contact into the journey (a journey that may repeat has several)."""

    entry: int
    workflow_id: str
    journey_version: int
    status: str
    outcome: str | None
    enrolled_at: datetime
    ended_at: datetime | None


class EnrollmentDetail(BaseModel):
    """A contact in a journey: its latest entry (if it ever entered) with its whole log,
    refusals included, in time order, and every entry. `status` is `refused` when it never
    entered."""

    contact_id: str
    status: str
    entry: int | None = None
    """Which entry this is (1 for the first); `…/entries/{n}` shows another."""
    entries: list[EntryOut] = []
    workflow_id: str | None = None
    journey_version: int | None = None
    stage: str | None = None
    outcome: str | None = None
    end_value: str | None = None
    enrolled_at: datetime | None = None
    ended_at: datetime | None = None
    completed_at: datetime | None = None
    steps: list[StepOut]


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


def _choice(name: str, value: str | None, allowed: list[str]) -> str | None:
    if value is not None and value not in allowed:
        raise ApiError(
            422, "invalid_filter", f"{name} must be one of {', '.join(allowed)}; got {value!r}."
        )
    return value


def _step(row: asyncpg.Record) -> StepOut:
    detail = row["detail"] or {}
    leaving = row["action"] in ("exit", "end", "goal_met", "complete")
    return StepOut(
        **dict(row),
        reason=detail.get("reason") if leaving else None,
        explanation=detail.get("explanation") if leaving else None,
    )


def _refusal(row: asyncpg.Record) -> StepOut:
    return StepOut(
        step_seq=None,
        at=row["refused_at"],
        stage=None,
        action="refused",
        result=row["reason"],
        reason=REFUSAL_MESSAGES.get(row["reason"], row["reason"]),
        explanation=row["explanation"],
        detail={},
    )


@router.post("", status_code=201, operation_id="enroll_contact", summary="Enroll a contact")
async def enroll_contact(
    journey_id: JourneyIdPath,
    body: EnrollRequest,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
) -> EnrollResponse:
    """Enrolls a contact (409 with the refusal reason when it may not enter)."""
    enrolled = await enrolling.enroll_contact(
        pool, temporal, settings, workspace, journey_id, body.contact_id
    )
    return EnrollResponse(workflow_id=enrolled.workflow_id, run_id=enrolled.run_id)


@router.get("", operation_id="list_enrollments", summary="List a journey's enrollments")
async def list_enrollments(
    journey_id: JourneyIdPath,
    pool: PoolDep,
    workspace: WorkspaceDep,
    status: str | None = None,
    outcome: str | None = None,
    converted: bool | None = Query(
        None, description="Only enrollments counted (true) or not counted (false) as conversions."
    ),
    cursor: str = "",
    limit: int = Query(100, ge=1, le=1000),
) -> EnrollmentPage:
    """Enrollments of a journey by contact id, filtered by `status` (running,
    in_attribution_window, completed), `outcome` and/or `converted`; `next_cursor` gets the
    next page (400 `invalid_cursor` for a cursor this API did not return)."""
    _choice("status", status, [p.value for p in Phase])
    _choice("outcome", outcome, [o.value for o in Outcome])
    # the cursor is [contact id, entry], or a contact id alone (a cursor from before
    # entries existed: the page starts after all of that contact's entries)
    found = decode_cursor(cursor, (str, list)) or ""
    after, entry = (found, "") if isinstance(found, str) else [*found, "", ""][:2]
    after_entry = int(entry) if entry.isdigit() and len(entry) < 10 else 2**31 - 1
    await journeys.get(pool, workspace, journey_id)
    rows = await enrollments_store.select_page(
        pool, workspace, journey_id, after, status, outcome, limit, converted, after_entry
    )
    items = [EnrollmentOut(**dict(r)) for r in rows]
    last = items[-1] if len(items) == limit else None
    next_cursor = encode_cursor([last.contact_id, str(last.entry)]) if last else None
    return EnrollmentPage(items=items, next_cursor=next_cursor)


@router.get("/{contact_id}", operation_id="get_enrollment", summary="A contact's enrollment log")
async def get_enrollment(
    journey_id: JourneyIdPath, contact_id: ContactIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> EnrollmentDetail:
    """The enrollment log of one contact's latest entry: every step with time, stage,
    action and result; exits, ends and refusals with their reason and criteria
    explanation; and the list of its entries."""
    return await _detail(pool, workspace, journey_id, contact_id, None)


@router.get(
    "/{contact_id}/entries/{entry}",
    operation_id="get_enrollment_entry",
    summary="One entry of a contact into a journey that may repeat",
)
async def get_entry(
    journey_id: JourneyIdPath,
    contact_id: ContactIdPath,
    entry: Annotated[int, Path(ge=1, le=2**31 - 1)],
    pool: PoolDep,
    workspace: WorkspaceDep,
) -> EnrollmentDetail:
    """The log of entry number `entry` (1 is the first), as `GET …/{contact_id}` shows
    the latest."""
    return await _detail(pool, workspace, journey_id, contact_id, entry)


async def _detail(
    pool: Any, workspace: str, journey_id: str, contact_id: str, entry: int | None
) -> EnrollmentDetail:
    await journeys.get(pool, workspace, journey_id)
    row = await enrollments_store.enrollment(pool, workspace, journey_id, contact_id, entry)
    refusals = [
        _refusal(r)
        for r in await enrollments_store.select_refusals(pool, workspace, journey_id, contact_id)
    ]
    if entry is not None and row is None:
        raise ApiError(404, "entry_not_found", f"{contact_id!r} has no entry {entry} here.")
    if row is None and not refusals:
        raise ApiError(
            404, "enrollment_not_found", f"{contact_id!r} never entered nor was refused here."
        )
    if row is None:
        return EnrollmentDetail(contact_id=contact_id, status="refused", steps=refusals)
    steps = [_step(s) for s in await enrollments_store.select_steps(pool, row["workflow_id"])]
    steps = sorted([*steps, *refusals], key=lambda s: s.at)
    listed = await enrollments_store.entries(pool, workspace, journey_id, contact_id)
    return EnrollmentDetail(**dict(row), steps=steps, entries=[EntryOut(**dict(e)) for e in listed])


@router.delete(
    "/{contact_id}", status_code=202, operation_id="unenroll_contact", summary="Unenroll a contact"
)
async def unenroll_contact(
    journey_id: JourneyIdPath,
    contact_id: ContactIdPath,
    pool: PoolDep,
    temporal: ClientDep,
    workspace: WorkspaceDep,
) -> Response:
    """Ends the enrollment with outcome `unenrolled` (through the workflow)."""
    await enrolling.unenroll_contact(pool, temporal, workspace, journey_id, contact_id)
    return Response(status_code=202)
