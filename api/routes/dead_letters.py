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
from store import changes as changes_store

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])


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


@router.get(
    "",
    response_model=list[DeadLetterOut],
    operation_id="list_dead_letters",
    summary="List deliveries Temporal refused for good",
)
async def list_dead_letters(
    pool: PoolDep,
    workspace: WorkspaceDep,
    journey_id: str | None = Query(default=None, max_length=200, pattern=r"^[^\x00]*$"),
    contact_id: str | None = Query(default=None, max_length=200, pattern=r"^[^\x00]*$"),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    rows = await changes_store.dead_letters(pool, workspace, journey_id, contact_id, limit)
    return [dict(r) for r in rows]


@router.post(
    "/{dead_letter_id}/retry",
    status_code=202,
    response_model=RetriedOut,
    operation_id="retry_dead_letter",
    summary="Send a dead letter again",
)
async def retry_dead_letter(
    pool: PoolDep,
    workspace: WorkspaceDep,
    dead_letter_id: int = Path(ge=1, le=2**63 - 1),
) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        row = await changes_store.requeue_dead_letter(conn, workspace, dead_letter_id)
        if row is None:
            raise ApiError(
                404,
                "dead_letter_not_found",
                f"No dead letter {dead_letter_id} in this workspace (delivered, retried or "
                "never there).",
            )
    return dict(row)
