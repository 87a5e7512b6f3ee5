"""A journey's batches (activation, bulk unenroll) and its audience preview: their
progress, read from Postgres (`services.batches` starts them)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.ingest import ContactIdPath, JourneyIdPath
from services import enrolling, journeys
from services.audience import bulk_enrolls, preview
from shared.activation import BatchKind, BatchStatus
from shared.eligibility import Eligibility
from shared.errors import NotFound
from shared.journey import Journey
from store import batches as batches_store

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])


class ActivationOut(BaseModel):
    """An activation's progress: of the contacts eligible when it began, how many it has
    handled, started an enrollment for, or seen refused (by reason)."""

    journey_id: str
    activation: int
    workflow_id: str
    journey_version: int
    status: BatchStatus
    eligible: int | None
    processed: int
    started: int
    refused: dict[str, int]
    rate: float
    requested_by: str | None
    stop_reason: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class UnenrollOut(BaseModel):
    """A bulk unenroll's progress: of the enrollments running when it began, how many it
    has handled and signalled to end (`skipped`: those that had already ended)."""

    journey_id: str
    batch: int
    workflow_id: str
    status: BatchStatus
    running: int | None
    processed: int
    signalled: int
    skipped: dict[str, int]
    rate: float
    requested_by: str | None
    stop_reason: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class PreviewOut(BaseModel):
    """What activating the journey would do now; nobody is enrolled and nothing recorded."""

    journey_id: str
    version: int
    status: str
    bulk_enrolls: bool
    """False for a journey entered by trigger (`goal_achieved_in`): activation enrolls
    nobody in bulk."""
    eligible: int
    would_enroll: int
    refused: dict[str, int]


def activation_out(row: asyncpg.Record) -> ActivationOut:
    return ActivationOut(
        journey_id=row["journey_id"],
        activation=row["batch"],
        workflow_id=row["workflow_id"],
        journey_version=row["journey_version"],
        status=BatchStatus(row["status"]),
        eligible=row["total"],
        processed=row["processed"],
        started=row["done"],
        refused=row["skipped"],
        rate=row["rate"],
        requested_by=row["requested_by"],
        stop_reason=row["stop_reason"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


def unenroll_out(row: asyncpg.Record) -> UnenrollOut:
    return UnenrollOut(
        journey_id=row["journey_id"],
        batch=row["batch"],
        workflow_id=row["workflow_id"],
        status=BatchStatus(row["status"]),
        running=row["total"],
        processed=row["processed"],
        signalled=row["done"],
        skipped=row["skipped"],
        rate=row["rate"],
        requested_by=row["requested_by"],
        stop_reason=row["stop_reason"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


@router.get(
    "/{journey_id}/activation",
    operation_id="get_activation",
    summary="The latest activation's progress",
)
async def get_activation(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> ActivationOut:
    """The latest activation's progress: eligible, processed, started, refused by reason."""
    await journeys.get(pool, workspace, journey_id)
    row = await batches_store.latest(pool, workspace, journey_id, BatchKind.ACTIVATE)
    if row is None:
        raise NotFound("no_activation", "This journey has never been activated.")
    return activation_out(row)


@router.get(
    "/{journey_id}/unenroll",
    operation_id="get_unenroll",
    summary="The latest bulk unenroll's progress",
)
async def get_unenroll(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> UnenrollOut:
    """The latest bulk unenroll's progress (deactivate with `unenroll=true`)."""
    await journeys.get(pool, workspace, journey_id)
    row = await batches_store.latest(pool, workspace, journey_id, BatchKind.UNENROLL)
    if row is None:
        raise NotFound("no_unenroll", "No bulk unenroll has run for this journey.")
    return unenroll_out(row)


@router.post(
    "/{journey_id}/preview",
    operation_id="preview_journey",
    summary="Who activating would enroll or refuse, now",
)
async def preview_journey(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> PreviewOut:
    """How many contacts are eligible now, and how many activation would enroll or see
    refused (by reason), without enrolling anyone."""
    row = await journeys.get(pool, workspace, journey_id)
    journey = Journey.model_validate(row["definition"])
    # one snapshot: the counts add up even while contacts change
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        found = await preview(conn, workspace, journey_id, journey)
    return PreviewOut(
        journey_id=journey_id,
        version=row["version"],
        status=row["status"],
        bulk_enrolls=bulk_enrolls(journey),
        eligible=found.eligible,
        would_enroll=found.would_enroll,
        refused=dict(found.refused),
    )


@router.get(
    "/{journey_id}/eligibility/{contact_id}",
    operation_id="get_eligibility",
    summary="Why a contact is (not) in the journey",
)
async def get_eligibility(
    journey_id: JourneyIdPath, contact_id: ContactIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> Eligibility:
    """Whether the contact would enroll now, into which stage, and every entry rule in the
    order enrollment checks them (eligible lists, stage value, suppression, goal already
    met with its criteria explained, enrolled before, journey active), with the reasons
    the enrollment log records."""
    return await enrolling.eligibility_of(pool, workspace, journey_id, contact_id)
