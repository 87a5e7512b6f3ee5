"""GET /v1/messages: what the dev SMTP sink received (`nurture dev` only), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from store import mailbox as mailbox_store

router = APIRouter(prefix="/v1/messages", tags=["messages"])


class MessageOut(BaseModel):
    id: int
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    subject: str | None
    message_id: str | None
    idempotency_key: str | None
    text: str | None
    html: str | None
    headers: dict[str, str]


@router.get(
    "",
    response_model=list[MessageOut],
    operation_id="list_messages",
    summary="The dev mailbox: emails the local SMTP sink received",
)
async def list_messages(
    pool: PoolDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
    to: str | None = Query(
        default=None,
        max_length=320,
        pattern=r"^[^\x00]*$",
        description="Only messages to this address.",
    ),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    if not settings.dev_mailbox:
        raise ApiError(
            404,
            "dev_only",
            "The mailbox exists only under `nurture dev`, which runs a local SMTP sink.",
        )
    return [dict(r) for r in await mailbox_store.messages(pool, workspace, to, limit)]
