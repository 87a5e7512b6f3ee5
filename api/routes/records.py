"""What `create_task` and `send_notification` produced: the records the journeys handed
(or will hand) to the workspace's webhook, with their delivery state, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.paging import decode_moment_cursor, encode_moment_cursor
from store import outbox as outbox_store

router = APIRouter(prefix="/v1", tags=["tasks and notifications"])


class RecordOut(BaseModel):
    id: str
    """The idempotency key the webhook received (`{workflow_id}:{step}`)."""
    journey_id: str
    contact_id: str
    workflow_id: str
    content: dict[str, Any]
    """The task (`title`, `assign_to`, `notes`) or notification (`to`, `message`), rendered."""
    status: str
    """`queued`, `sending`, `delivered`, `failed`, `kept` (no webhook), `withdrawn`."""
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: str | None


async def _page(
    pool: Any,
    workspace: str,
    kind: str,
    journey_id: str | None,
    contact_id: str | None,
    cursor: str,
    limit: int,
) -> RecordPage:
    start = decode_moment_cursor(cursor)
    rows = await outbox_store.of_kind(pool, workspace, kind, journey_id, contact_id, start, limit)
    items = [
        RecordOut(
            id=r["idempotency_key"],
            journey_id=r["journey_id"],
            contact_id=r["contact_id"],
            workflow_id=r["workflow_id"],
            content={k: v for k, v in r["payload"].items() if k not in ("stage", "step_seq")},
            status=r["status"],
            attempts=r["attempts"],
            last_error=r["last_error"],
            created_at=r["created_at"],
            delivered_at=r["delivered_at"],
            failed_at=r["failed_at"],
        )
        for r in rows
    ]
    last = items[-1] if len(items) == limit else None
    next_cursor = encode_moment_cursor(last.created_at, last.id) if last else None
    return RecordPage(items=items, next_cursor=next_cursor)


Filter = Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")]


@router.get("/tasks", operation_id="list_tasks", summary="Tasks the journeys created")
async def list_tasks(
    pool: PoolDep,
    workspace: WorkspaceDep,
    journey_id: Filter = None,
    contact_id: Filter = None,
    cursor: str = Query("", max_length=512),
    limit: int = Query(100, ge=1, le=1000),
) -> RecordPage:
    """Tasks `create_task` produced, newest first, filtered by journey and/or contact."""
    return await _page(pool, workspace, "task", journey_id, contact_id, cursor, limit)


@router.get(
    "/notifications", operation_id="list_notifications", summary="Notifications the journeys sent"
)
async def list_notifications(
    pool: PoolDep,
    workspace: WorkspaceDep,
    journey_id: Filter = None,
    contact_id: Filter = None,
    cursor: str = Query("", max_length=512),
    limit: int = Query(100, ge=1, le=1000),
) -> RecordPage:
    """Notifications `send_notification` produced, newest first, filtered by journey and/or
    contact."""
    return await _page(pool, workspace, "notification", journey_id, contact_id, cursor, limit)
