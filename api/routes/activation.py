"""A journey's batches (activation, bulk unenroll) and its audience preview.

The batches are durable workflows (`workers.activation`); their progress lives in
`journey_batches`, which their activity updates after every chunk, so these routes read
Postgres only. `start_batch` is what activate, deactivate and delete call, inside their
own transaction: the batch row and the workflow start commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.deps import PoolDep, WorkspaceDep
from api.errors import ApiError
from services.audience import bulk_enrolls, preview
from shared import search_attributes as sa
from shared.activation import (
    ACTIVATION_WORKFLOW,
    UNENROLL_WORKFLOW,
    BatchInput,
    BatchKind,
    BatchStatus,
    batch_task_queue,
    batch_workflow_id,
    describe,
)
from shared.journey import Journey
from shared.settings import Settings
from store import batches as batches_store
from store import journeys as journeys_store
from store.db import Queryable

router = APIRouter()


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


async def start_batch(
    conn: Queryable,
    temporal: Client,
    settings: Settings,
    kind: BatchKind,
    workspace: str,
    journey: asyncpg.Record,
    requested_by: str | None,
    *,
    total: int | None = None,
    include_attribution_window: bool = False,
) -> asyncpg.Record:
    """Records a batch and starts its workflow; call inside the transaction that holds the
    journey row's lock (which also makes the batch number safe). Raises ApiError 503 when
    Temporal does not take the start: the caller's transaction then rolls back."""
    definition = Journey.model_validate(journey["definition"])
    number = await batches_store.next_number(conn, workspace, journey["id"])
    workflow_id = batch_workflow_id(kind, workspace, journey["id"], number)
    await batches_store.insert_batch(
        conn,
        workspace,
        journey["id"],
        number,
        kind.value,
        workflow_id,
        journey["version"],
        total,
        settings.activation_rate,
        requested_by,
    )
    payload = BatchInput(
        kind=kind,
        workspace=workspace,
        journey_id=journey["id"],
        journey_name=definition.name,
        journey_version=journey["version"],
        batch=number,
        task_queue=settings.task_queue,
        max_stage_entries=settings.max_stage_entries,
        rate=settings.activation_rate,
        page_size=settings.activation_page_size,
        concurrency=settings.activation_concurrency,
        heartbeat_seconds=settings.activation_heartbeat_seconds,
        include_attribution_window=include_attribution_window,
    )
    payload.progress.total = total
    verb = "Activation" if kind is BatchKind.ACTIVATE else "Unenroll"
    try:
        await temporal.start_workflow(
            ACTIVATION_WORKFLOW if kind is BatchKind.ACTIVATE else UNENROLL_WORKFLOW,
            payload,
            id=workflow_id,
            task_queue=batch_task_queue(settings.task_queue),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.WORKSPACE, workspace),
                    SearchAttributePair(sa.JOURNEY_ID, journey["id"]),
                    SearchAttributePair(sa.JOURNEY_VERSION, journey["version"]),
                ]
            ),
            static_summary=f"{verb} #{number} of {definition.name!r} (v{journey['version']})",
            static_details=describe(payload, payload.progress),
        )
    except RPCError as exc:
        raise ApiError(
            503,
            "temporal_unavailable",
            f"Temporal did not accept the {verb.lower()}: {exc.message}",
        ) from exc
    row = await batches_store.batch(conn, workspace, journey["id"], number)
    assert row is not None
    return row


async def stop_activations(conn: Queryable, workspace: str, journey_id: str, reason: str) -> None:
    """Marks running activations stopped; each stops before its next chunk (the caller
    holds the journey row's lock, so the chunk in flight has already committed)."""
    await batches_store.stop_activations(conn, workspace, journey_id, reason)


async def latest_batch(
    conn: Queryable, workspace: str, journey_id: str, kind: BatchKind
) -> asyncpg.Record | None:
    return await batches_store.latest(conn, workspace, journey_id, kind.value)


async def _journey(conn: Queryable, workspace: str, journey_id: str) -> asyncpg.Record:
    row = await journeys_store.journey(conn, workspace, journey_id)
    if row is None:
        raise ApiError(404, "journey_not_found", f"No journey with id {journey_id!r}.")
    return row


@router.get("/{journey_id}/activation", operation_id="get_activation")
async def get_activation(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> ActivationOut:
    """The latest activation's progress: eligible, processed, started, refused by reason."""
    await _journey(pool, workspace, journey_id)
    row = await latest_batch(pool, workspace, journey_id, BatchKind.ACTIVATE)
    if row is None:
        raise ApiError(404, "no_activation", "This journey has never been activated.")
    return activation_out(row)


@router.get("/{journey_id}/unenroll", operation_id="get_unenroll")
async def get_unenroll(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> UnenrollOut:
    """The latest bulk unenroll's progress (deactivate with `unenroll=true`)."""
    await _journey(pool, workspace, journey_id)
    row = await latest_batch(pool, workspace, journey_id, BatchKind.UNENROLL)
    if row is None:
        raise ApiError(404, "no_unenroll", "No bulk unenroll has run for this journey.")
    return unenroll_out(row)


@router.post("/{journey_id}/preview", operation_id="preview_journey")
async def preview_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> PreviewOut:
    """How many contacts are eligible now, and how many activation would enroll or see
    refused (by reason), without enrolling anyone."""
    row = await _journey(pool, workspace, journey_id)
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
