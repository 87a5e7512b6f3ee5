from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ClientDep, PoolDep
from store import outbox as outbox_store
from store.db import ping

router = APIRouter(tags=["health"])


async def _check(coro: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


@router.get(
    "/healthz", operation_id="healthz", summary="Is the API up, are Temporal and Postgres reachable"
)
async def healthz(pool: PoolDep, temporal: ClientDep) -> JSONResponse:
    """Reports whether Temporal and Postgres are reachable (503 if either is not), and
    the messages due for a sender: how many, and how long the oldest has waited (a number
    that keeps growing means no sender is running or a provider keeps failing)."""
    postgres = await _check(ping(pool))
    temporal_ok = await _check(temporal.service_client.check_health())
    ok = postgres["ok"] and temporal_ok["ok"]
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "postgres": postgres,
        "temporal": temporal_ok,
    }
    if postgres["ok"]:
        try:
            due = await asyncio.wait_for(outbox_store.due_summary(pool), timeout=2)
        except Exception:  # the count is a courtesy; health is the two checks above
            due = None
        if due is not None:
            body["outbox"] = {"due": due["due"], "oldest_due_seconds": round(due["oldest"], 1)}
    return JSONResponse(body, 200 if ok else 503)
