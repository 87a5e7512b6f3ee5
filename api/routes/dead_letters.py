"""Dead letters: what the relay could not deliver to an enrollment because Temporal refused
it for good (an event or contact snapshot over Temporal's size limit, 30 failures that were
not an outage). Nothing is dropped: the row stays with Temporal's last answer until a
caller sends it again (after raising the limit, say); sent to an enrollment that has ended
meanwhile, it is moot and goes.

GET  /v1/dead-letters               newest first
POST /v1/dead-letters/{id}/retry    back in the relay's queue, with its attempts reset
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.errors import ApiError
from services.relay import CHANNEL

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

COLUMNS = """
d.id, d.kind, d.contact_id, d.journey_id, d.workflow_id, e.id AS event_id,
e.idempotency_key AS event_idempotency_key, e.type AS event_type,
d.attempts, d.last_error, d.queued_at, d.failed_at
"""
SELECT_DEAD = f"""
SELECT {COLUMNS}
FROM deliveries d
LEFT JOIN events e ON d.kind = 'event' AND e.workspace = d.workspace AND e.seq = d.seq
WHERE d.workspace = $1 AND d.failed_at IS NOT NULL
  AND ($2::text IS NULL OR d.journey_id = $2) AND ($3::text IS NULL OR d.contact_id = $3)
ORDER BY d.failed_at DESC, d.id DESC LIMIT $4
"""
REQUEUE = f"""
WITH requeued AS (
    UPDATE deliveries SET failed_at = NULL, attempts = 0, next_attempt_at = now()
    WHERE workspace = $1 AND id = $2 AND failed_at IS NOT NULL
    RETURNING *
)
SELECT {COLUMNS}
FROM requeued d
LEFT JOIN events e ON d.kind = 'event' AND e.workspace = d.workspace AND e.seq = d.seq
"""


class DeadLetterOut(BaseModel):
    id: int
    kind: str
    """What was not delivered: `event`, `contact` (a snapshot), `enter`, `enter_after_goal`."""
    contact_id: str
    journey_id: str
    workflow_id: str
    event_id: str | None
    event_idempotency_key: str | None
    event_type: str | None
    attempts: int
    last_error: str | None
    """Temporal's answer the last time the relay tried."""
    queued_at: datetime
    failed_at: datetime | None


class RetriedOut(DeadLetterOut):
    status: str = "queued"


@router.get("", response_model=list[DeadLetterOut], operation_id="list_dead_letters")
async def list_dead_letters(
    pool: PoolDep,
    workspace: WorkspaceDep,
    journey_id: str | None = Query(default=None, max_length=200, pattern=r"^[^\x00]*$"),
    contact_id: str | None = Query(default=None, max_length=200, pattern=r"^[^\x00]*$"),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    rows = await pool.fetch(SELECT_DEAD, workspace, journey_id, contact_id, limit)
    return [dict(r) for r in rows]


@router.post(
    "/{dead_letter_id}/retry",
    status_code=202,
    response_model=RetriedOut,
    operation_id="retry_dead_letter",
)
async def retry_dead_letter(
    pool: PoolDep,
    workspace: WorkspaceDep,
    dead_letter_id: int = Path(ge=1, le=2**63 - 1),
) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(REQUEUE, workspace, dead_letter_id)
        if row is None:
            raise ApiError(
                404,
                "dead_letter_not_found",
                f"No dead letter {dead_letter_id} in this workspace (delivered, retried or "
                "never there).",
            )
        await conn.execute(f"NOTIFY {CHANNEL}")
    return dict(row)
