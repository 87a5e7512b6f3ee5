"""Enrollments started directly, as the enrolling service starts them (the rows first, then
the workflow with its search attributes), and what a test reads of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from shared import search_attributes as sa
from shared.contact import ContactState
from shared.enrollment import BEHAVIOUR, EnrollmentInput, EnrollmentView, workflow_id
from shared.journey import Journey
from tests.helpers import WORKSPACE

started_enrollments: list[Enrollment] = []
"""Every enrollment `enroll` started in the running test (tests/workers records their
histories)."""


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

    async def outbox_payloads(self) -> list[dict[str, Any]]:
        """What the enrollment queued, in the order of its steps."""
        rows = await self.pool.fetch(
            "SELECT payload FROM outbox WHERE workflow_id = $1"
            " ORDER BY created_at, idempotency_key",
            self.workflow_id,
        )
        return [dict(r["payload"]) for r in rows]

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
        **{"behaviour": BEHAVIOUR, **input_options},
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
    started_enrollments.append(started)
    return started


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
