"""Every error a caller can cause (`shared.errors`), answered as a status, a machine-readable
``reason`` and one sentence."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import CallerError


class ApiError(CallerError):
    """A refusal decided by the API itself (authentication, limits of the request)."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(reason, message, **extra)
        self.status = status


def error_body(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"reason": reason, "message": message, **extra}


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path")]
    path = ""
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    return path


SIZE_BUDGETS = {
    "contact_too_large": "A contact's properties, merged, may take at most 256 KB as JSON.",
    "event_too_large": "An event's properties may take at most 64 KB as JSON.",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CallerError)
    async def _refused(_: Request, exc: CallerError) -> JSONResponse:
        extra = {k: v for k, v in exc.extra.items() if k != "headers"}
        return JSONResponse(
            error_body(exc.reason, exc.message, **extra),
            exc.status,
            headers=exc.extra.get("headers"),
        )

    @app.exception_handler(asyncpg.exceptions.DataError)
    async def _unstorable(_: Request, exc: asyncpg.exceptions.DataError) -> JSONResponse:
        # a value the request validation let through that Postgres cannot hold (a bug of
        # ours, but the caller's request): still the caller's 4xx, never a 500
        return JSONResponse(
            error_body(
                "unstorable_value",
                f"A value in the request cannot be stored: {type(exc).__name__}.",
            ),
            422,
        )

    @app.exception_handler(asyncpg.exceptions.CheckViolationError)
    async def _over_budget(_: Request, exc: asyncpg.exceptions.CheckViolationError) -> JSONResponse:
        # store/sql/013_size_budgets.sql: what Temporal can carry in a workflow's input
        budget = SIZE_BUDGETS.get(exc.constraint_name or "")
        if budget is None:
            body = error_body("unstorable_value", "A value in the request cannot be stored.")
        else:
            body = error_body(exc.constraint_name or "", budget)
        return JSONResponse(body, 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "path": _loc_to_path(tuple(e.get("loc", ()))),
                "reason": e.get("type", "invalid"),
                "message": e.get("msg", ""),
            }
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body(
                "invalid_request", "The request does not match the schema.", problems=problems
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reasons = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        reason = reasons.get(exc.status_code, "http_error")
        return JSONResponse(error_body(reason, str(exc.detail)), exc.status_code)
