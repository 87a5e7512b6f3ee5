"""Activation and unenroll batches, as the API starts and stops them.

A batch is a durable workflow of its own (`workers.activation`: pages of contacts or
enrollments, a bounded rate, continue-as-new between pages, resumed after a crash); its
progress lives in `journey_batches`, which its activity updates after every chunk. The API
process starts a batch inside the transaction that holds the journey row's lock, so the
batch row and the workflow start commit together or not at all.
"""

from __future__ import annotations

import asyncpg
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from shared import search_attributes as sa
from shared.activation import (
    ACTIVATION_WORKFLOW,
    UNENROLL_WORKFLOW,
    BatchInput,
    BatchKind,
    batch_task_queue,
    batch_workflow_id,
    describe,
)
from shared.errors import Unavailable
from shared.journey import Journey
from shared.settings import Settings
from store import batches as batches_store
from store.db import Queryable


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
    journey row's lock (which also makes the batch number safe). Raises `Unavailable`
    (503) when Temporal does not take the start: the caller's transaction then rolls back."""
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
        raise Unavailable(
            "temporal_unavailable", f"Temporal did not accept the {verb.lower()}: {exc.message}"
        ) from exc
    row = await batches_store.batch(conn, workspace, journey["id"], number)
    assert row is not None
    return row


async def stop_activations(conn: Queryable, workspace: str, journey_id: str, reason: str) -> None:
    """Marks running activations stopped; each stops before its next chunk (the caller
    holds the journey row's lock, so the chunk in flight has already committed)."""
    await batches_store.stop_activations(conn, workspace, journey_id, reason)
