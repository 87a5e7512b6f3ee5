from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ClientDep, PoolDep

router = APIRouter(tags=["health"])


async def _check(coro: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


@router.get("/healthz", operation_id="healthz")
async def healthz(pool: PoolDep, temporal: ClientDep) -> JSONResponse:
    """Reports whether Temporal and Postgres are reachable (503 if either is not)."""
    postgres = await _check(pool.fetchval("SELECT 1"))
    temporal_ok = await _check(temporal.service_client.check_health())
    ok = postgres["ok"] and temporal_ok["ok"]
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "postgres": postgres, "temporal": temporal_ok},
        200 if ok else 503,
    )
