"""Enrollments: enroll a contact, read the enrollment log, unenroll."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict
from temporalio.service import RPCError

from api.deps import ClientDep, PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from api.routes.journeys import fetch_journey
from shared.enrolling import Enrolled, JourneyRecord, enroll
from shared.enrollment import Unenroll

router = APIRouter(prefix="/v1/journeys/{journey_id}/enrollments", tags=["enrollments"])

SELECT_ENROLLMENT = """
SELECT contact_id, workflow_id, journey_version, status, stage, outcome, end_value,
       enrolled_at, ended_at, completed_at
FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
"""
SELECT_STEPS = """
SELECT step_seq, at, stage, action, result, detail FROM enrollment_steps
WHERE workflow_id = $1 ORDER BY step_seq
"""
SELECT_PAGE = """
SELECT contact_id, workflow_id, journey_version, status, stage, outcome, end_value,
       enrolled_at, ended_at, completed_at
FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND contact_id > $3
  AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR outcome = $5)
ORDER BY contact_id LIMIT $6
"""


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_id: str


class EnrollResponse(BaseModel):
    workflow_id: str


class EnrollmentOut(BaseModel):
    contact_id: str
    workflow_id: str
    journey_version: int
    status: str
    stage: str | None
    outcome: str | None
    end_value: str | None
    enrolled_at: datetime
    ended_at: datetime | None
    completed_at: datetime | None


class StepOut(BaseModel):
    step_seq: int
    at: datetime
    stage: str | None
    action: str
    result: str
    detail: dict[str, Any]


class EnrollmentDetail(EnrollmentOut):
    steps: list[StepOut]


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


@router.post("", status_code=201, operation_id="enroll_contact")
async def enroll_contact(
    journey_id: str,
    body: EnrollRequest,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
) -> EnrollResponse:
    """Enrolls a contact (409 with the refusal reason when it may not enter)."""
    row = await fetch_journey(pool, workspace, journey_id)
    if row["status"] != "active":
        raise ApiError(409, "journey_not_active", "Only an active journey accepts enrollments.")
    try:
        result = await enroll(
            pool, temporal, settings, JourneyRecord.from_row(workspace, row), body.contact_id
        )
    except RPCError as exc:
        raise ApiError(
            503, "temporal_unavailable", f"Temporal did not accept the enrollment: {exc.message}"
        ) from exc
    if isinstance(result, Enrolled):
        return EnrollResponse(workflow_id=result.workflow_id)
    status = 404 if result.reason == "contact_not_found" else 409
    raise ApiError(status, result.reason, result.message, explanation=result.explanation)


@router.get("", operation_id="list_enrollments")
async def list_enrollments(
    journey_id: str,
    pool: PoolDep,
    workspace: WorkspaceDep,
    status: str | None = None,
    outcome: str | None = None,
    cursor: str = "",
    limit: int = Query(100, ge=1, le=1000),
) -> EnrollmentPage:
    """Enrollments of a journey, filtered by status/outcome, paged by contact id cursor."""
    await fetch_journey(pool, workspace, journey_id)
    rows = await pool.fetch(SELECT_PAGE, workspace, journey_id, cursor, status, outcome, limit)
    items = [EnrollmentOut(**dict(r)) for r in rows]
    next_cursor = items[-1].contact_id if len(items) == limit else None
    return EnrollmentPage(items=items, next_cursor=next_cursor)


@router.get("/{contact_id}", operation_id="get_enrollment")
async def get_enrollment(
    journey_id: str, contact_id: str, pool: PoolDep, workspace: WorkspaceDep
) -> EnrollmentDetail:
    """One enrollment with its log: every step with time, stage, action, result and reason."""
    row = await pool.fetchrow(SELECT_ENROLLMENT, workspace, journey_id, contact_id)
    if row is None:
        raise ApiError(404, "enrollment_not_found", f"{contact_id!r} is not enrolled here.")
    steps = [StepOut(**dict(s)) for s in await pool.fetch(SELECT_STEPS, row["workflow_id"])]
    return EnrollmentDetail(**dict(row), steps=steps)


@router.delete("/{contact_id}", status_code=202, operation_id="unenroll_contact")
async def unenroll_contact(
    journey_id: str, contact_id: str, pool: PoolDep, temporal: ClientDep, workspace: WorkspaceDep
) -> Response:
    """Ends the enrollment with outcome `unenrolled` (through the workflow)."""
    row = await pool.fetchrow(SELECT_ENROLLMENT, workspace, journey_id, contact_id)
    if row is None:
        raise ApiError(404, "enrollment_not_found", f"{contact_id!r} is not enrolled here.")
    if row["status"] != "running":
        raise ApiError(409, "enrollment_ended", "The enrollment has already ended.")
    try:
        await temporal.get_workflow_handle(row["workflow_id"]).signal("unenroll", Unenroll())
    except RPCError as exc:
        raise ApiError(
            503, "temporal_unavailable", f"Temporal is unavailable: {exc.message}"
        ) from exc
    return Response(status_code=202)
