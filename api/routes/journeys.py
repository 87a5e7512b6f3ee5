"""Journey definitions: create, read, edit, activate, deactivate, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Body, Response
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.errors import ApiError
from shared.db import Queryable
from shared.journey import Journey
from shared.validation import JourneyValidation, Problem, validate_journey

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])

JOURNEY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Journey"}}},
    }
}

SELECT_JOURNEY = """
SELECT id, name, owner, status, version, goal_epoch, definition, created_at, updated_at
FROM journeys WHERE workspace = $1 AND id = $2
"""
SELECT_JOURNEYS = """
SELECT id, name, owner, status, version, goal_epoch, definition, created_at, updated_at
FROM journeys WHERE workspace = $1 ORDER BY created_at, id
"""
INSERT_JOURNEY = """
INSERT INTO journeys (workspace, id, name, owner, definition) VALUES ($1, $2, $3, $4, $5)
"""
INSERT_VERSION = """
INSERT INTO journey_versions (workspace, journey_id, version, definition, changed_by)
VALUES ($1, $2, $3, $4, $5)
"""
UPDATE_DEFINITION = """
UPDATE journeys SET name = $3, owner = $4, definition = $5, version = $6, goal_epoch = $7,
                    updated_at = now()
WHERE workspace = $1 AND id = $2
"""
SET_STATUS = """
UPDATE journeys SET status = $3, ever_active = ever_active OR $3 = 'active', updated_at = now()
WHERE workspace = $1 AND id = $2
"""
DELETE_JOURNEY = "DELETE FROM journeys WHERE workspace = $1 AND id = $2"


class JourneyOut(BaseModel):
    id: str
    name: str
    owner: str
    status: str
    version: int
    goal_epoch: int
    definition: dict[str, Any]
    warnings: list[Problem] = []
    created_at: datetime
    updated_at: datetime


class ValidationOut(BaseModel):
    valid: bool
    problems: list[Problem]
    warnings: list[Problem]


def journey_out(row: asyncpg.Record, warnings: list[Problem] | None = None) -> JourneyOut:
    return JourneyOut(**dict(row), warnings=warnings or [])


async def fetch_journey(conn: Queryable, workspace: str, id: str) -> Any:
    row = await conn.fetchrow(SELECT_JOURNEY, workspace, id)
    if row is None:
        raise ApiError(404, "journey_not_found", f"No journey with id {id!r}.")
    return row


def _valid_or_422(payload: Any) -> tuple[Journey, JourneyValidation]:
    result = validate_journey(payload)
    if result.journey is None or result.problems:
        raise ApiError(
            422,
            "invalid_journey",
            f"The journey has {len(result.problems)} problem(s); see problems.",
            problems=[p.model_dump() for p in result.problems],
            warnings=[w.model_dump() for w in result.warnings],
        )
    return result.journey, result


@router.get("/schema", operation_id="journey_schema")
async def journey_schema() -> dict[str, Any]:
    """The JSON Schema of a journey definition."""
    return Journey.model_json_schema()


@router.post("/validate", operation_id="validate_journey", openapi_extra=JOURNEY_BODY)
async def validate(payload: Any = Body(None)) -> ValidationOut:
    """Validates a journey without saving it; every problem at once."""
    result = validate_journey(payload)
    return ValidationOut(
        valid=result.journey is not None and not result.problems,
        problems=result.problems,
        warnings=result.warnings,
    )


@router.post("", status_code=201, operation_id="create_journey", openapi_extra=JOURNEY_BODY)
async def create_journey(
    pool: PoolDep, workspace: WorkspaceDep, payload: Any = Body(None)
) -> JourneyOut:
    """Saves a draft journey (422 with every problem, by JSON path and reason)."""
    journey, result = _valid_or_422(payload)
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    definition = journey.model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_JOURNEY, workspace, journey_id, journey.name, journey.owner, definition
        )
        await conn.execute(INSERT_VERSION, workspace, journey_id, 1, definition, journey.owner)
        row = await fetch_journey(conn, workspace, journey_id)
    return journey_out(row, result.warnings)


@router.get("", operation_id="list_journeys")
async def list_journeys(pool: PoolDep, workspace: WorkspaceDep) -> list[JourneyOut]:
    return [journey_out(r) for r in await pool.fetch(SELECT_JOURNEYS, workspace)]


@router.get("/{journey_id}", operation_id="get_journey")
async def get_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> JourneyOut:
    return journey_out(await fetch_journey(pool, workspace, journey_id))


@router.put("/{journey_id}", operation_id="edit_journey", openapi_extra=JOURNEY_BODY)
async def edit_journey(
    journey_id: str, pool: PoolDep, workspace: WorkspaceDep, payload: Any = Body(None)
) -> JourneyOut:
    """Edits a draft or inactive journey; every edit is a new version. Removing the goal
    starts a new goal epoch (conversions restart from zero, DESIGN §3.7)."""
    journey, result = _valid_or_422(payload)
    definition = journey.model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SELECT_JOURNEY + " FOR UPDATE", workspace, journey_id)
        if row is None:
            raise ApiError(404, "journey_not_found", f"No journey with id {journey_id!r}.")
        if row["status"] == "active":
            raise ApiError(
                409, "journey_active", "An active journey cannot be edited; deactivate it first."
            )
        version = row["version"] + 1
        goal_epoch = row["goal_epoch"]
        if row["definition"].get("goal") is not None and journey.goal is None:
            goal_epoch += 1
        await conn.execute(
            UPDATE_DEFINITION,
            workspace,
            journey_id,
            journey.name,
            journey.owner,
            definition,
            version,
            goal_epoch,
        )
        await conn.execute(
            INSERT_VERSION, workspace, journey_id, version, definition, journey.owner
        )
        row = await fetch_journey(conn, workspace, journey_id)
    return journey_out(row, result.warnings)


async def _set_status(pool: asyncpg.Pool, workspace: str, journey_id: str, status: str) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        await fetch_journey(conn, workspace, journey_id)
        await conn.execute(SET_STATUS, workspace, journey_id, status)
        return await fetch_journey(conn, workspace, journey_id)


@router.post("/{journey_id}/activate", operation_id="activate_journey")
async def activate_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> JourneyOut:
    """Makes the journey accept enrollments."""
    return journey_out(await _set_status(pool, workspace, journey_id, "active"))


@router.post("/{journey_id}/deactivate", operation_id="deactivate_journey")
async def deactivate_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> JourneyOut:
    """Stops new enrollments; running ones finish."""
    return journey_out(await _set_status(pool, workspace, journey_id, "inactive"))


@router.delete("/{journey_id}", status_code=204, operation_id="delete_journey")
async def delete_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        await fetch_journey(conn, workspace, journey_id)
        running = await conn.fetchval(
            "SELECT count(*) FROM enrollments WHERE workspace = $1 AND journey_id = $2"
            " AND status = 'running'",
            workspace,
            journey_id,
        )
        if running:
            raise ApiError(
                409, "enrollments_running", f"{running} enrollment(s) still run in this journey."
            )
        await conn.execute(DELETE_JOURNEY, workspace, journey_id)
    return Response(status_code=204)
