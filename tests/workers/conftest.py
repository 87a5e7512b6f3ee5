"""Starting enrollments directly (as the API does) against real Temporal and Postgres."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from shared import search_attributes as sa
from shared.contact import ContactEvent, ContactState
from shared.enrollment import EnrollmentInput, EnrollmentView, workflow_id
from shared.journey import Journey

WORKSPACE = "default"

RECORD_HISTORIES = "NURTURE_RECORD_HISTORIES"
"""When set (to a directory), every passing worker test writes the histories of the
enrollments it started there: `scripts/record_histories.py` regenerates tests/histories/."""

_started: list[Enrollment] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[_passed] = report.passed
    return report


_passed = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
async def record_histories(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    _started.clear()
    yield
    await _record(request)


@pytest.fixture
async def ts_env(
    ts_env: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping server of tests/conftest.py, whose histories are recorded before
    it stops (it lives for one test; the dev server lives for the session)."""
    yield ts_env
    await _record(request)


async def _record(request: pytest.FixtureRequest) -> None:
    directory = os.environ.get(RECORD_HISTORIES)
    if not directory or not request.node.stash.get(_passed, False):
        return
    name = re.sub(r"[^a-z0-9_]+", "_", request.node.name.removeprefix("test_").lower())
    files = 0
    recorded: dict[str, str] = {}
    for enrollment in _started:
        # every run of the chain: continue-as-new starts a new history
        run_id = enrollment.handle.result_run_id
        while run_id:
            handle = enrollment.client.get_workflow_handle(enrollment.workflow_id, run_id=run_id)
            history = await handle.fetch_history()
            files += 1
            recorded[f"{name}-{files}.json"] = history.to_json()
            last = history.events[-1]
            continued = last.workflow_execution_continued_as_new_event_attributes
            run_id = (
                continued.new_execution_run_id
                if last.HasField("workflow_execution_continued_as_new_event_attributes")
                else None
            )
    _write_histories(Path(directory), recorded)
    _started.clear()


def _write_histories(directory: Path, recorded: dict[str, str]) -> None:
    for name, text in recorded.items():
        (directory / name).write_text(text)


def journey(stages: list[dict[str, Any]], **overrides: Any) -> Journey:
    """A valid journey around the given stages (the first is the start stage)."""
    definition: dict[str, Any] = {
        "name": "Test journey",
        "owner": "marketing@acme.test",
        "stage_property": "journey_stage",
        "eligible_lists": [],
        "start_stage": stages[0]["key"],
        "enroll_empty_stage": True,
        "stages": stages,
        "ends": {"success": {"value": "customer"}, "failure": [{"value": "churned"}]},
    }
    definition.update(overrides)
    return Journey.model_validate(definition)


def stage(key: str, *actions: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": key, "actions": list(actions)}


def send(template: str = "welcome", *channels: str, marketing: bool = True) -> dict[str, Any]:
    return {
        "type": "send_message",
        "channels": list(channels or ["email"]),
        "template": template,
        "marketing": marketing,
    }


def wait(duration: str) -> dict[str, Any]:
    return {"type": "wait", "duration": duration}


def go_to(target: str) -> dict[str, Any]:
    return {"type": "go_to", "target": target}


@dataclass
class Enrollment:
    """One enrollment started like the API starts it: the enrollments row first (status
    running), then the workflow with its search attributes."""

    client: Client
    pool: asyncpg.Pool
    task_queue: str
    journey: Journey
    journey_id: str
    contact_id: str
    handle: WorkflowHandle[Any, Any]
    watermark: int
    """The contact's sequence at enrollment: signals must carry a higher one to count."""

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    async def result(self) -> EnrollmentView:
        # the handle start_workflow returned: on the time-skipping server, awaiting its
        # result is what lets the server skip time
        view: EnrollmentView = await self.handle.result()
        return view

    async def state(self) -> EnrollmentView:
        return await self.handle.query("state", result_type=EnrollmentView)

    async def signal(self, name: str, payload: Any) -> None:
        await self.client.get_workflow_handle(self.workflow_id).signal(name, payload)

    async def next_seq(self) -> int:
        """A sequence number as the API gives a contact change: newer than anything the
        journey itself wrote so far."""
        seq: int = await self.pool.fetchval("SELECT nextval('change_seq')")
        return seq

    async def row(self) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM enrollments WHERE workflow_id = $1", self.workflow_id
        )
        assert row is not None
        return row

    async def steps(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM enrollment_steps WHERE workflow_id = $1 ORDER BY step_seq",
            self.workflow_id,
        )

    async def actions(self) -> list[tuple[str, str]]:
        return [(r["action"], r["result"]) for r in await self.steps()]

    async def outbox(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM outbox WHERE workflow_id = $1 ORDER BY idempotency_key",
            self.workflow_id,
        )

    async def stage_stats(self) -> dict[str, tuple[int, int]]:
        rows = await self.pool.fetch(
            "SELECT stage, entered, active FROM stage_stats WHERE journey_id = $1",
            self.journey_id,
        )
        return {r["stage"]: (r["entered"], r["active"]) for r in rows}

    async def stage_paths(self) -> dict[tuple[str, str], int]:
        rows = await self.pool.fetch(
            "SELECT from_stage, to_node, count FROM stage_paths WHERE journey_id = $1",
            self.journey_id,
        )
        return {(r["from_stage"], r["to_node"]): r["count"] for r in rows}

    async def contact_properties(self) -> dict[str, Any]:
        props = await self.pool.fetchval(
            "SELECT properties FROM contacts WHERE workspace = $1 AND id = $2",
            WORKSPACE,
            self.contact_id,
        )
        return dict(props or {})


async def enroll(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    journey: Journey,
    *,
    contact_id: str = "ada",
    properties: dict[str, Any] | None = None,
    lists: list[str] | None = None,
    journey_id: str | None = None,
    **input_options: Any,
) -> Enrollment:
    """Inserts the journey version, the contact, the enrollment row, then starts the
    workflow: exactly what `services.enrolling.enroll` does after its checks."""
    journey_id = journey_id or f"jrn_{uuid.uuid4().hex[:12]}"
    definition = journey.model_dump(mode="json")
    await pool.execute(
        "INSERT INTO journeys (workspace, id, name, owner, status, definition)"
        " VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT DO NOTHING",
        WORKSPACE,
        journey_id,
        journey.name,
        journey.owner,
        definition,
    )
    await pool.execute(
        "INSERT INTO journey_versions (workspace, journey_id, version, definition, changed_by)"
        " VALUES ($1, $2, 1, $3, 'test') ON CONFLICT DO NOTHING",
        WORKSPACE,
        journey_id,
        definition,
    )
    seq = await pool.fetchval(
        "INSERT INTO contacts (workspace, id, properties) VALUES ($1, $2, $3)"
        " ON CONFLICT (workspace, id) DO UPDATE SET properties = $3, seq = nextval('change_seq')"
        " RETURNING seq",
        WORKSPACE,
        contact_id,
        properties or {},
    )
    for name in lists or []:
        await pool.execute(
            "INSERT INTO list_members (workspace, list, contact_id) VALUES ($1, $2, $3)",
            WORKSPACE,
            name,
            contact_id,
        )
    wf_id = workflow_id(WORKSPACE, journey_id, contact_id)
    await pool.execute(
        "INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,"
        " journey_version, goal_epoch, stage) VALUES ($1, $2, $3, $4, 1, 1, $5)",
        WORKSPACE,
        journey_id,
        contact_id,
        wf_id,
        journey.start_stage,
    )
    contact = ContactState(properties=properties or {}, lists=lists or [], event_seq=seq)
    payload = EnrollmentInput(
        workspace=WORKSPACE,
        journey_id=journey_id,
        journey_version=1,
        journey=journey,
        contact_id=contact_id,
        contact=contact,
        **input_options,
    )
    handle = await client.start_workflow(
        "EnrollmentWorkflow",
        payload,
        id=wf_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        result_type=EnrollmentView,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.WORKSPACE, WORKSPACE),
                SearchAttributePair(sa.JOURNEY_ID, journey_id),
                SearchAttributePair(sa.CONTACT_ID, contact_id),
                SearchAttributePair(sa.JOURNEY_VERSION, 1),
                SearchAttributePair(sa.JOURNEY_STAGE, journey.start_stage),
            ]
        ),
    )
    started = Enrollment(client, pool, task_queue, journey, journey_id, contact_id, handle, seq)
    _started.append(started)
    return started


def wait_for_event(
    type_: str, timeout: str, target: str | None = None, **branches: str
) -> dict[str, Any]:
    action: dict[str, Any] = {
        "type": "wait_for_event",
        "event": {"type": type_},
        "timeout": timeout,
    }
    if target is not None:
        action["event"]["target"] = target
    for name, goto in branches.items():  # on_event="engaged", on_timeout="nudge"
        action[name] = {"go_to": goto}
    return action


def event(seq: int, type_: str, target: str | None = None, id: str | None = None) -> ContactEvent:
    return ContactEvent(
        id=id or f"evt-{seq}",
        seq=seq,
        type=type_,
        target=target,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def until_state(
    enrollment: Enrollment, check: Callable[[EnrollmentView], bool], timeout: float = 20
) -> EnrollmentView:
    """Polls the `state` query until `check` holds (no time is skipped meanwhile)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        view = await enrollment.state()
        if check(view):
            return view
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"state never matched: {view}")
        await asyncio.sleep(0.05)


def waiting(view: EnrollmentView) -> bool:
    return view.waiting_until is not None
