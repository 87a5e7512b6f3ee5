"""Journeys: create, read, edit, versions, activate, deactivate, delete. The life cycle
and its limits live in `services.journeys`; these routes parse and shape the answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.deps import ClientDep, PoolDep, SettingsDep, WorkspaceDep
from api.ingest import JourneyIdPath, VersionPath
from api.openapi import JOURNEY_BODY
from api.paging import decode_moment_cursor, encode_moment_cursor
from api.routes.activation import ActivationOut, UnenrollOut, activation_out, unenroll_out
from services import journeys
from shared.assets import Asset, not_ready
from shared.errors import Invalid, NotFound
from shared.journey import Duration, Journey
from shared.limits import checked
from shared.settings import Settings
from shared.validation import JourneyValidation, Problem, validate_journey
from store import experiments as experiments_store
from store import journeys as journeys_store

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])

ActorHeader = Annotated[
    str | None,
    Header(
        alias="X-Actor",
        max_length=256,
        description="Who makes the change (your user), for the version history. "
        "Default: the journey's owner.",
    ),
]


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
    backfilled: int | None = None
    """Activate with `backfill`: how many past trigger events were queued as entries."""


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


class WinnerOut(BaseModel):
    split: str
    variant: str
    declared_at: datetime
    figures: dict[str, Any]
    """Each variant's entered and converted at that moment."""


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
    winners: list[WinnerOut] = []
    """Split winners declared while this version was the journey's current one."""


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


async def _checked(settings: Settings, payload: Any) -> tuple[Journey, JourneyValidation]:
    """The journey, or 422 `invalid_journey` with every problem (a text that costs too
    much to render among them)."""
    journey, result = checked(payload, settings.max_eligible_lists)
    if costly := await journeys.costly_texts(settings, journey):
        raise Invalid(
            "invalid_journey",
            f"The journey has {len(costly)} problem(s); see problems.",
            problems=[p.model_dump() for p in costly],
        )
    return journey, result


@router.get("/schema", operation_id="journey_schema", summary="The JSON Schema of a journey")
async def journey_schema() -> dict[str, Any]:
    """The JSON Schema of a journey definition."""
    return Journey.model_json_schema()


@router.post(
    "/validate",
    operation_id="validate_journey",
    summary="Validate a journey without saving it",
    openapi_extra=JOURNEY_BODY,
)
async def validate(
    pool: PoolDep, workspace: WorkspaceDep, settings: SettingsDep, payload: Any = Body(None)
) -> ValidationOut:
    """Validates a journey without saving it; every problem at once."""
    result = validate_journey(payload)
    ready, costly = [], []
    if result.journey is not None:
        ready = await journeys.readiness(pool, settings, workspace, result.journey)
        costly = await journeys.costly_texts(settings, result.journey)
    return ValidationOut(
        valid=result.journey is not None and not result.problems and not costly,
        problems=[*result.problems, *costly],
        warnings=[*result.warnings, *ready],
    )


@router.post(
    "",
    status_code=201,
    operation_id="create_journey",
    summary="Create a draft journey",
    openapi_extra=JOURNEY_BODY,
)
async def create_journey(
    pool: PoolDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    actor: ActorHeader = None,
    payload: Any = Body(None),
) -> JourneyOut:
    """Saves a draft journey, version 1 (422 with every problem, by JSON path and reason;
    409 `journey_limit_reached` when its owner has the most journeys allowed)."""
    journey, result = await _checked(settings, payload)
    row = await journeys.create(pool, settings, workspace, journey, actor)
    ready = await journeys.readiness(pool, settings, workspace, journey)
    return journey_out(row, [*result.warnings, *ready])


class JourneyPage(BaseModel):
    items: list[JourneyOut]
    next_cursor: str | None


@router.get("", operation_id="list_journeys", summary="List the workspace's journeys")
async def list_journeys(
    pool: PoolDep,
    workspace: WorkspaceDep,
    cursor: str = Query("", max_length=512),
    limit: int = Query(100, ge=1, le=1000),
) -> JourneyPage:
    """The workspace's journeys, oldest first, a page at a time (`next_cursor` gets the
    next page; 400 `invalid_cursor` for a cursor this API did not return)."""
    start = decode_moment_cursor(cursor)
    rows = await journeys_store.journeys(pool, workspace, start, limit)
    items = [journey_out(r) for r in rows]
    last = items[-1] if len(items) == limit else None
    next_cursor = encode_moment_cursor(last.created_at, last.id) if last else None
    return JourneyPage(items=items, next_cursor=next_cursor)


@router.get("/{journey_id}", operation_id="get_journey", summary="Get a journey")
async def get_journey(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> JourneyOut:
    return journey_out(await journeys.get(pool, workspace, journey_id))


@router.put(
    "/{journey_id}",
    operation_id="edit_journey",
    summary="Edit a draft or inactive journey (a new version)",
    openapi_extra=JOURNEY_BODY,
)
async def edit_journey(
    journey_id: JourneyIdPath,
    pool: PoolDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    actor: ActorHeader = None,
    payload: Any = Body(None),
) -> JourneyOut:
    """Edits a draft or inactive journey (409 `journey_active` otherwise). A change makes
    a new version; enrollments keep running on the version they started on. Removing the
    goal starts a new goal epoch (the conversion count restarts, docs/design.md, "Goal
    conversions"). An edit
    that changes nothing makes no version."""
    journey, result = await _checked(settings, payload)
    row = await journeys.edit(pool, settings, workspace, journey_id, journey, actor)
    ready = await journeys.readiness(pool, settings, workspace, journey)
    return journey_out(row, [*result.warnings, *ready])


@router.get(
    "/{journey_id}/versions",
    operation_id="list_journey_versions",
    summary="List a journey's versions",
)
async def list_versions(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> list[VersionOut]:
    """Every version: who saved it, when, what it changed against the one before, and how
    many enrollments started on it (and still run)."""
    row = await journeys.get(pool, workspace, journey_id)
    declared: dict[int, list[WinnerOut]] = {}
    for w in await experiments_store.winners(pool, workspace, journey_id):
        declared.setdefault(w["version"], []).append(
            WinnerOut(**{k: w[k] for k in ("split", "variant", "declared_at", "figures")})
        )
    return [
        VersionOut(
            **dict(v),
            current=v["version"] == row["version"],
            winners=declared.get(v["version"], []),
        )
        for v in await journeys_store.version_history(pool, workspace, journey_id)
    ]


@router.get(
    "/{journey_id}/versions/{version}",
    operation_id="get_journey_version",
    summary="Get one version of a journey",
)
async def get_version(
    journey_id: JourneyIdPath, version: VersionPath, pool: PoolDep, workspace: WorkspaceDep
) -> VersionDetail:
    """One version with its definition (what its enrollments run)."""
    await journeys.get(pool, workspace, journey_id)
    row = await journeys_store.version(pool, workspace, journey_id, version)
    if row is None:
        raise NotFound("version_not_found", f"Journey {journey_id!r} has no version {version}.")
    return VersionDetail(**dict(row))


@router.post(
    "/{journey_id}/activate",
    operation_id="activate_journey",
    summary="Activate a journey (enrolls who is eligible)",
)
async def activate_journey(
    journey_id: JourneyIdPath,
    pool: PoolDep,
    temporal: ClientDep,
    settings: SettingsDep,
    workspace: WorkspaceDep,
    actor: ActorHeader = None,
    force: bool = Query(
        False,
        description="Activate even when a template is missing or a channel has no provider "
        "(its sends then fail, or wait in the outbox).",
    ),
    backfill: str | None = Query(
        None,
        max_length=40,
        description="An event-triggered journey: also enter contacts for the matching events "
        "of this last while (ISO-8601, at most P30D), each event at most once.",
    ),
) -> JourneyOut:
    """Makes the journey accept enrollments and starts its activation: a durable batch
    that enrolls every contact already eligible (progress: `GET .../activation`).
    Activating an active journey changes nothing. 409 `journey_conflict` (with
    `conflicting_journey_id`) when another active journey has the same eligible lists and
    stage property; 409 `journey_not_ready` (with `problems`) when a template is missing
    or a channel has no provider, unless `force=true`."""
    since = _duration("backfill", backfill) if backfill else None
    done = await journeys.activate(
        pool, temporal, settings, workspace, journey_id, actor, force=force, backfill=since
    )
    batch = activation_out(done.batch) if done.batch is not None else None
    return journey_out(done.journey, activation=batch, backfilled=done.backfilled)


_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


def _duration(name: str, text: str) -> timedelta:
    try:
        return _DURATION.validate_python(text)
    except ValidationError:
        raise Invalid(
            "invalid_backfill", f"{name} must be an ISO-8601 duration such as P1D, got {text!r}."
        ) from None


@router.post(
    "/{journey_id}/deactivate", operation_id="deactivate_journey", summary="Deactivate a journey"
)
async def deactivate_journey(
    journey_id: JourneyIdPath,
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
    done = await journeys.deactivate(
        pool, temporal, settings, workspace, journey_id, actor, unenroll
    )
    batch = unenroll_out(done.batch) if done.batch is not None else None
    return journey_out(done.journey, unenroll=batch)


@router.delete(
    "/{journey_id}",
    operation_id="delete_journey",
    summary="Delete a journey",
    status_code=204,
    responses={202: {"model": DeleteOut, "description": "Deleted; enrollments are ending."}},
)
async def delete_journey(
    journey_id: JourneyIdPath,
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
    batch = await journeys.delete(pool, temporal, settings, workspace, journey_id, actor, unenroll)
    if batch is None:
        return Response(status_code=204)
    body = DeleteOut(id=journey_id, deleted=True, unenroll=unenroll_out(batch))
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


class AssetsOut(BaseModel):
    journey_id: str
    version: int
    assets: list[Asset]
    warnings: list[Problem]
    """A missing template (`template_missing`), a channel with no provider
    (`channel_not_configured`)."""


@router.get(
    "/{journey_id}/assets",
    operation_id="journey_assets",
    summary="The templates, lists, properties and channels a journey uses",
)
async def journey_assets(
    journey_id: JourneyIdPath, pool: PoolDep, workspace: WorkspaceDep, settings: SettingsDep
) -> AssetsOut:
    """Every template, list (eligible, suppression, end and goal lists, lists in the goal),
    property (the stage property, `set_property`, the goal's) and channel the journey uses,
    where it uses each, and whether it exists or is configured now."""
    row = await journeys.get(pool, workspace, journey_id)
    journey = Journey.model_validate(row["definition"])
    found = await journeys.assets(pool, settings, workspace, journey)
    return AssetsOut(
        journey_id=journey_id, version=row["version"], assets=found, warnings=not_ready(found)
    )
