"""Simulating a journey before it runs (docs/testing.md): the real workflow on Temporal's
time-skipping server, for one contact and a timeline, with nothing sent and nothing
written (`services.simulation`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from api.deps import PoolDep, SettingsDep, WorkspaceDep
from api.ingest import JourneyIdPath
from services import journeys
from services.simulation import Simulator
from shared.errors import NotFound
from shared.journey import Journey
from shared.limits import checked
from shared.simulation import SimulationRequest, SimulationResult, SimulationRun
from store import journeys as journeys_store

router = APIRouter(prefix="/v1/journeys", tags=["simulation"])


def simulator(request: Request) -> Simulator:
    state = request.app.state
    if getattr(state, "simulator", None) is None:
        state.simulator = Simulator(state.pool, state.settings)
    found: Simulator = state.simulator
    return found


@router.post(
    "/simulate", operation_id="simulate_definition", summary="Simulate a journey not yet saved"
)
async def simulate_definition(
    request: Request,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    body: Annotated[SimulationRun, Body()],
) -> SimulationResult:
    """Runs the definition in `journey` for `contact` and its `timeline` (events and
    property or list changes at offsets such as `PT2H`, `P3D`) and returns every step with
    its simulated time, the messages rendered with the workspace's templates (not sent),
    branch and split decisions (`force` picks a split's variant), the outcome and whether
    the goal would count. Nothing is sent or stored."""
    journey, _ = checked(body.journey, settings.max_eligible_lists)
    asked = SimulationRequest(**body.model_dump(exclude={"journey"}))
    return await simulator(request).simulate(workspace, "simulated", 1, journey, asked)


@router.post(
    "/{journey_id}/simulate", operation_id="simulate_journey", summary="Simulate a journey"
)
async def simulate_journey(
    journey_id: JourneyIdPath,
    request: Request,
    pool: PoolDep,
    workspace: WorkspaceDep,
    body: Annotated[SimulationRequest, Body()],
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> SimulationResult:
    """As `POST /v1/journeys/simulate`, for a saved journey (its current version, or
    `version`)."""
    row = await journeys.get(pool, workspace, journey_id)
    number = version or row["version"]
    found: Any = await journeys_store.version(pool, workspace, journey_id, number)
    if found is None:
        raise NotFound("version_not_found", f"Journey {journey_id!r} has no version {number}.")
    journey = Journey.model_validate(found["definition"])
    return await simulator(request).simulate(workspace, journey_id, number, journey, body)
