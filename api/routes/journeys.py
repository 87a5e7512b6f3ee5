"""Journeys and their life cycle (DESIGN §3.8): create, read, edit, versions, activate,
deactivate, delete.

States: `draft → active ⇄ inactive`, and delete from any of them. Only a draft or an
inactive journey can be edited; each edit that changes the definition is a new version,
and running enrollments keep the version they started on (it travels in their workflow
input). Activating starts an activation batch that enrolls every contact already
eligible; deactivating stops it (and, with `unenroll=true`, ends the running enrollments
through their workflows).

Every state change locks the journey row first; activation and creation also take a
per-workspace advisory lock, so the limits (journeys per owner, one active journey per
audience) hold under concurrent requests.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import Client

from api.deps import ClientDep, PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from api.routes import activation
from api.routes.activation import (
    ActivationOut,
    UnenrollOut,
    activation_out,
    latest_batch,
    start_batch,
    stop_activations,
    unenroll_out,
)
from services.audience import bulk_enrolls
from shared.activation import BatchKind
from shared.journey import Journey
from shared.settings import Settings
from shared.validation import JourneyValidation, Problem, validate_journey
from store import enrollments as enrollments_store
from store import journeys as journeys_store
from store.db import Queryable

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])

JOURNEY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Journey"}}},
    }
}

ActorHeader = Annotated[
    str | None,
    Header(
        alias="X-Actor",
        max_length=256,
        description="Who makes the change (your user), for the version history. "
        "Default: the journey's owner.",
    ),
]


MAX_CHANGES = 100
"""Changes listed per version; more are summed up in one last entry."""


class JourneyOut(BaseModel):
    id: str
    name: str
    owner: str
    status: str
    version: int
    ever_active: bool
    goal_epoch: int
    definition: dict[str, Any]
    warnings: list[Problem] = []
    created_at: datetime
    updated_at: datetime
    activation: ActivationOut | None = None
    """Activate: the activation batch enrolling the eligible contacts."""
    unenroll: UnenrollOut | None = None
    """Deactivate with `unenroll=true`: the batch ending the running enrollments."""


class ValidationOut(BaseModel):
    valid: bool
    problems: list[Problem]
    warnings: list[Problem]


class Change(BaseModel):
    path: str
    change: str
    """`created`, `added`, `removed` or `changed`."""
    before: Any = None
    after: Any = None


class VersionOut(BaseModel):
    version: int
    changed_by: str
    changed_at: datetime
    changes: list[Change]
    enrolled: int
    """Enrollments started on this version."""
    open: int
    """Of those, how many still run (or wait in their attribution window)."""
    current: bool


class VersionDetail(BaseModel):
    version: int
    changed_by: str
    changed_at: datetime
    changes: list[Change]
    definition: dict[str, Any]


class DeleteOut(BaseModel):
    id: str
    deleted: bool
    unenroll: UnenrollOut | None


def journey_out(
    row: asyncpg.Record, warnings: list[Problem] | None = None, **extra: Any
) -> JourneyOut:
    return JourneyOut(**dict(row), warnings=warnings or [], **extra)


async def fetch_journey(
    conn: Queryable, workspace: str, id: str, lock: Literal["", "update"] = ""
) -> Any:
    row = await journeys_store.journey(conn, workspace, id, lock)
    if row is None:
        raise ApiError(404, "journey_not_found", f"No journey with id {id!r}.")
    return row


def _valid_or_422(payload: Any, settings: Settings) -> tuple[Journey, JourneyValidation]:
    result = validate_journey(payload)
    problems = list(result.problems)
    journey = result.journey
    if (
        journey is not None
        and len(journey.eligible_lists) > settings.max_eligible_lists
        and not any(p.reason == "too_many_eligible_lists" for p in problems)
    ):
        problems.append(
            Problem(
                path="eligible_lists",
                reason="too_many_eligible_lists",
                message=f"A journey has at most {settings.max_eligible_lists} eligible lists; "
                f"this one has {len(journey.eligible_lists)}.",
            )
        )
    if journey is None or problems:
        raise ApiError(
            422,
            "invalid_journey",
            f"The journey has {len(problems)} problem(s); see problems.",
            problems=[p.model_dump() for p in problems],
            warnings=[w.model_dump() for w in result.warnings],
        )
    return journey, result


async def _check_owner_limit(
    conn: Queryable, settings: Settings, workspace: str, owner: str, journey_id: str
) -> None:
    """At most `max_journeys_per_owner` journeys per owner, whatever their state."""
    await journeys_store.lock_workspace(conn, workspace)
    count = await journeys_store.count_by_owner(conn, workspace, owner, journey_id)
    if count >= settings.max_journeys_per_owner:
        raise ApiError(
            409,
            "journey_limit_reached",
            f"{owner!r} already owns {count} journeys, the most one owner may have "
            f"({settings.max_journeys_per_owner}); delete one first.",
            owner=owner,
            limit=settings.max_journeys_per_owner,
        )


async def _check_audience_conflict(
    conn: Queryable, workspace: str, journey_id: str, journey: Journey
) -> None:
    """No two active journeys share the same eligible lists (as a set) and stage property:
    their contacts would be moved through the same stages by both."""
    await journeys_store.lock_workspace(conn, workspace)
    lists = set(journey.eligible_lists)
    for other in await journeys_store.active_audiences(conn, workspace, journey_id):
        if other["property"] == journey.stage_property and set(other["lists"] or []) == lists:
            raise ApiError(
                409,
                "journey_conflict",
                f"Active journey {other['id']!r} already has the same eligible lists and stage "
                f"property {journey.stage_property!r}; deactivate it first.",
                conflicting_journey_id=other["id"],
            )


def changes_between(before: Any, after: Any) -> list[dict[str, Any]]:
    """What an edit changed, by path (`stages[onboarding].actions[1].duration`): stages
    are matched by key, other lists by position; scalar changes carry before and after."""
    found: list[dict[str, Any]] = []
    _diff(before, after, "", found)
    if len(found) > MAX_CHANGES:
        more = len(found) - MAX_CHANGES + 1
        found = [*found[: MAX_CHANGES - 1], {"path": "", "change": f"{more} more changes"}]
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def _diff(before: Any, after: Any, path: str, found: list[dict[str, Any]]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            if key not in after:
                found.append({"path": _join(path, key), "change": "removed"})
            elif key not in before:
                found.append({"path": _join(path, key), "change": "added"})
            else:
                _diff(before[key], after[key], _join(path, key), found)
        return
    if isinstance(before, list) and isinstance(after, list) and not _plain(before + after):
        keyed = all(isinstance(v, dict) and "key" in v for v in before + after)
        if keyed:
            old = {v["key"]: v for v in before}
            new = {v["key"]: v for v in after}
            for key in [*old, *(k for k in new if k not in old)]:
                where = f"{path}[{key}]"
                if key not in new:
                    found.append({"path": where, "change": "removed"})
                elif key not in old:
                    found.append({"path": where, "change": "added"})
                else:
                    _diff(old[key], new[key], where, found)
            return
        for i in range(max(len(before), len(after))):
            where = f"{path}[{i}]"
            if i >= len(after):
                found.append({"path": where, "change": "removed"})
            elif i >= len(before):
                found.append({"path": where, "change": "added"})
            else:
                _diff(before[i], after[i], where, found)
        return
    change: dict[str, Any] = {"path": path, "change": "changed"}
    if _plain(before) and _plain(after):
        change.update(before=before, after=after)
    found.append(change)


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
    pool: PoolDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    actor: ActorHeader = None,
    payload: Any = Body(None),
) -> JourneyOut:
    """Saves a draft journey, version 1 (422 with every problem, by JSON path and reason;
    409 `journey_limit_reached` when its owner has the most journeys allowed)."""
    journey, result = _valid_or_422(payload, settings)
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    definition = journey.model_dump(mode="json")
    created = [{"path": "", "change": "created"}]
    async with pool.acquire() as conn, conn.transaction():
        await _check_owner_limit(conn, settings, workspace, journey.owner, journey_id)
        await journeys_store.insert_journey(
            conn, workspace, journey_id, journey.name, journey.owner, definition
        )
        await journeys_store.insert_version(
            conn, workspace, journey_id, 1, definition, actor or journey.owner, created
        )
        row = await fetch_journey(conn, workspace, journey_id)
    return journey_out(row, result.warnings)


@router.get("", operation_id="list_journeys")
async def list_journeys(pool: PoolDep, workspace: WorkspaceDep) -> list[JourneyOut]:
    return [journey_out(r) for r in await journeys_store.journeys(pool, workspace)]


@router.get("/{journey_id}", operation_id="get_journey")
async def get_journey(journey_id: str, pool: PoolDep, workspace: WorkspaceDep) -> JourneyOut:
    return journey_out(await fetch_journey(pool, workspace, journey_id))


@router.put("/{journey_id}", operation_id="edit_journey", openapi_extra=JOURNEY_BODY)
async def edit_journey(
    journey_id: str,
    pool: PoolDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    actor: ActorHeader = None,
    payload: Any = Body(None),
) -> JourneyOut:
    """Edits a draft or inactive journey (409 `journey_active` otherwise). A change makes
    a new version; enrollments keep running on the version they started on. Removing the
    goal starts a new goal epoch (the conversion count restarts, DESIGN §3.7). An edit
    that changes nothing makes no version."""
    journey, result = _valid_or_422(payload, settings)
    definition = journey.model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        row = await fetch_journey(conn, workspace, journey_id, "update")
        if row["status"] == "active":
            raise ApiError(
                409, "journey_active", "An active journey cannot be edited; deactivate it first."
            )
        if row["definition"] == definition:
            return journey_out(row, result.warnings)
        if journey.owner != row["owner"]:
            await _check_owner_limit(conn, settings, workspace, journey.owner, journey_id)
        version = row["version"] + 1
        goal_epoch = row["goal_epoch"]
        if row["definition"].get("goal") is not None and journey.goal is None:
            goal_epoch += 1
        await journeys_store.update_definition(
            conn,
            workspace,
            journey_id,
            journey.name,
            journey.owner,
            definition,
            version,
            goal_epoch,
        )
        await journeys_store.insert_version(
            conn,
            workspace,
            journey_id,
            version,
            definition,
            actor or journey.owner,
            changes_between(row["definition"], definition),
        )
        row = await fetch_journey(conn, workspace, journey_id)
    return journey_out(row, result.warnings)


@router.get("/{journey_id}/versions", operation_id="list_journey_versions")
async def list_versions(
    journey_id: str, pool: PoolDep, workspace: WorkspaceDep
) -> list[VersionOut]:
    """Every version: who saved it, when, what it changed against the one before, and how
    many enrollments started on it (and still run)."""
    row = await fetch_journey(pool, workspace, journey_id)
    return [
        VersionOut(**dict(v), current=v["version"] == row["version"])
        for v in await journeys_store.version_history(pool, workspace, journey_id)
    ]


@router.get("/{journey_id}/versions/{version}", operation_id="get_journey_version")
async def get_version(
    journey_id: str, version: int, pool: PoolDep, workspace: WorkspaceDep
) -> VersionDetail:
    """One version with its definition (what its enrollments run)."""
    await fetch_journey(pool, workspace, journey_id)
    row = await journeys_store.version(pool, workspace, journey_id, version)
    if row is None:
        raise ApiError(
            404, "version_not_found", f"Journey {journey_id!r} has no version {version}."
        )
    return VersionDetail(**dict(row))


@router.post("/{journey_id}/activate", operation_id="activate_journey")
async def activate_journey(
    journey_id: str,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
    actor: ActorHeader = None,
) -> JourneyOut:
    """Makes the journey accept enrollments and starts its activation: a durable batch
    that enrolls every contact already eligible (progress: `GET .../activation`).
    Activating an active journey changes nothing. 409 `journey_conflict` (with
    `conflicting_journey_id`) when another active journey has the same eligible lists and
    stage property."""
    async with pool.acquire() as conn, conn.transaction():
        row = await fetch_journey(conn, workspace, journey_id, "update")
        if row["status"] == "active":
            latest = await latest_batch(conn, workspace, journey_id, BatchKind.ACTIVATE)
            return journey_out(row, activation=activation_out(latest) if latest else None)
        journey = Journey.model_validate(row["definition"])
        await _check_audience_conflict(conn, workspace, journey_id, journey)
        await journeys_store.set_status(conn, workspace, journey_id, "active")
        row = await fetch_journey(conn, workspace, journey_id)
        batch = None
        if bulk_enrolls(journey):
            batch = await start_batch(
                conn, temporal, settings, BatchKind.ACTIVATE, workspace, row, actor
            )
    return journey_out(row, activation=activation_out(batch) if batch else None)


async def _open_enrollments(conn: Queryable, workspace: str, journey_id: str) -> tuple[int, int]:
    """(running, in their attribution window) enrollments of the journey."""
    row = await enrollments_store.count_open(conn, workspace, journey_id)
    return (row["running"], row["in_window"]) if row else (0, 0)


async def _unenroll_batch(
    conn: Queryable,
    temporal: Client,
    settings: Settings,
    workspace: str,
    row: asyncpg.Record,
    actor: str | None,
    count: int,
    include_attribution_window: bool,
) -> UnenrollOut | None:
    if count == 0:
        return None
    batch = await start_batch(
        conn,
        temporal,
        settings,
        BatchKind.UNENROLL,
        workspace,
        row,
        actor,
        total=count,
        include_attribution_window=include_attribution_window,
    )
    return unenroll_out(batch)


@router.post("/{journey_id}/deactivate", operation_id="deactivate_journey")
async def deactivate_journey(
    journey_id: str,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
    actor: ActorHeader = None,
    unenroll: bool = Query(
        False,
        description="Also end the running enrollments (outcome `journey_deactivated`), "
        "through their workflows. Without it they finish on their version.",
    ),
) -> JourneyOut:
    """Stops new enrollments and a running activation (it stops before its next chunk;
    this answers after the chunk in flight has committed). A draft was never active: 409
    `journey_not_active`. Deactivating an inactive journey again changes nothing, except
    that `unenroll=true` still ends the enrollments that run."""
    async with pool.acquire() as conn, conn.transaction():
        row = await fetch_journey(conn, workspace, journey_id, "update")
        if row["status"] == "draft":
            raise ApiError(
                409, "journey_not_active", "A draft journey was never active; nothing to stop."
            )
        if row["status"] == "active":
            await journeys_store.set_status(conn, workspace, journey_id, "inactive")
            await stop_activations(conn, workspace, journey_id, "journey_deactivated")
            row = await fetch_journey(conn, workspace, journey_id)
        batch = None
        if unenroll:
            running, _ = await _open_enrollments(conn, workspace, journey_id)
            batch = await _unenroll_batch(
                conn, temporal, settings, workspace, row, actor, running, False
            )
    return journey_out(row, unenroll=batch)


@router.delete(
    "/{journey_id}",
    operation_id="delete_journey",
    status_code=204,
    responses={202: {"model": DeleteOut, "description": "Deleted; enrollments are ending."}},
)
async def delete_journey(
    journey_id: str,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
    actor: ActorHeader = None,
    unenroll: bool = Query(
        False,
        description="Delete even while enrollments run: they end with outcome "
        "`journey_deactivated` (attribution windows close too).",
    ),
) -> Response:
    """Deletes the journey and its versions (the enrollment logs stay). 409
    `enrollments_running` while enrollments run or wait in their attribution window,
    unless `unenroll=true`: then 202, and a batch ends them through their workflows."""
    async with pool.acquire() as conn, conn.transaction():
        row = await fetch_journey(conn, workspace, journey_id, "update")
        running, in_window = await _open_enrollments(conn, workspace, journey_id)
        count = running + in_window
        if count and not unenroll:
            raise ApiError(
                409,
                "enrollments_running",
                f"{count} enrollment(s) of this journey have not ended; "
                "deactivate with unenroll=true, or delete with unenroll=true.",
                running=running,
                in_attribution_window=in_window,
            )
        await stop_activations(conn, workspace, journey_id, "journey_deleted")
        batch = await _unenroll_batch(conn, temporal, settings, workspace, row, actor, count, True)
        await journeys_store.delete(conn, workspace, journey_id)
    if batch is None:
        return Response(status_code=204)
    body = DeleteOut(id=journey_id, deleted=True, unenroll=batch)
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


router.include_router(activation.router)
