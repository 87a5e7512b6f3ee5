"""The relay: nothing is lost while Temporal is down, nothing counted twice after, and
routing sends each enrollment only what its journey reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from cli.stack import free_port, start_temporal, stop_process
from shared.enrollment import EnrollmentView
from shared.journey import Journey
from shared.routing import Change, InterestCache, OpenEnrollment, by_contact, route
from shared.settings import Settings
from store.api_keys import create_key
from tests.helpers.journeys import definition
from tests.helpers.relay import activate, enrollment, relay_running, relayed, signals
from tests.helpers.stack import eventually, running_stack


@pytest.mark.fault
@pytest.mark.timeout(300)
async def test_with_temporal_stopped_100_events_are_accepted_then_delivered_and_counted_once(
    pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()
    db_file, log = tmp_path / "temporal.db", tmp_path / "temporal.log"
    server = start_temporal(db_file, port, None, log)
    try:
        temporal = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        # 101 page views meet the goal: after the 100 below, the contact must be one short
        goal = {"criteria": {"event": "page_viewed", "min_count": 101}}
        async with (
            running_stack(pool, temporal, task_queue) as http,
            relay_running(pool, temporal, task_queue, max_backoff=1.0),
        ):
            journey_id = await activate(http, definition(goal=goal, enroll_empty_stage=False))
            workflow_id = await _ada_enrolled(http, journey_id)
            handle = temporal.get_workflow_handle(workflow_id)

            async def view() -> EnrollmentView:
                state: EnrollmentView = await handle.query("state", result_type=EnrollmentView)
                return state

            async def waiting() -> None:
                assert (await view()).waiting_until is not None

            await eventually(waiting)

            stop_process(server)
            events = [
                {"contact_id": "ada", "type": "page_viewed", "idempotency_key": f"view-{i}"}
                for i in range(100)
            ]
            answers = [await http.post("/v1/events", json=e) for e in events[:50]]
            answers.append(await http.post("/v1/events", json={"events": events[50:]}))
            # a client retrying during the outage: the same keys again
            answers.append(await http.post("/v1/events", json={"events": events[:10]}))
            assert [a.status_code for a in answers] == [202] * 52
            assert answers[-1].json()["duplicates"] == 10
            last_seq = answers[-2].json()["events"][-1]["seq"]

            async def tried_and_failed() -> None:
                queued = await pool.fetchval("SELECT count(*) FROM deliveries")
                failed = await pool.fetchval("SELECT count(last_error) FROM deliveries")
                assert (queued, failed > 0) == (100, True), (queued, failed)

            await eventually(tried_and_failed)
            # an outage is not held against a delivery: it is retried for as long as it lasts
            assert await pool.fetchval("SELECT max(attempts) FROM deliveries") == 0

            assert (await http.get("/v1/contacts/ada")).status_code == 200

            server = start_temporal(db_file, port, None, log)

            async def all_delivered() -> None:
                assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
                assert (await view()).contact_seq >= last_seq

            await eventually(all_delivered, timeout=120)
            state = await view()
            assert (state.phase, state.outcome) == ("running", None)  # 100 counted, not more
            assert await signals(temporal, workflow_id) == ["contact_event"] * 100

            one_more = {"contact_id": "ada", "type": "page_viewed", "idempotency_key": "view-100"}
            assert (await http.post("/v1/events", json=one_more)).status_code == 202

            async def goal_met() -> None:
                assert (await enrollment(http, journey_id, "ada"))["outcome"] == "goal_met"

            await eventually(goal_met)
    finally:
        stop_process(server)


async def test_a_signal_to_an_enrollment_not_started_yet_waits_and_a_finished_one_is_dropped(
    pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    """NOT_FOUND is decided by the enrollment row: running → retried; completed → moot."""
    port = free_port()
    server = start_temporal(None, port, None, tmp_path / "temporal.log")
    try:
        temporal = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        goal = {"criteria": {"event": "purchase", "min_count": 1}}
        async with running_stack(pool, temporal, task_queue) as http:
            journey_id = await activate(http, definition(goal=goal, enroll_empty_stage=False))
            await pool.execute(
                """
                INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,
                                         journey_version, status)
                VALUES ('default', $1, 'early', 'wf-early', 1, 'running'),
                       ('default', $1, 'late', 'wf-late', 1, 'in_attribution_window')
                """,
                journey_id,
            )
            for contact in ("early", "late"):
                await http.post("/v1/events", json={"contact_id": contact, "type": "purchase"})
            async with relay_running(pool, temporal, task_queue, min_backoff=0.1):

                async def attempted() -> None:
                    rows = await pool.fetch("SELECT workflow_id, attempts FROM deliveries")
                    assert [(r["workflow_id"], r["attempts"] > 0) for r in rows] == [
                        ("wf-early", True)
                    ]

                # the finished one: its workflow is gone and its row says completed
                await pool.execute(
                    "UPDATE enrollments SET status = 'completed' WHERE workflow_id = 'wf-late'"
                )
                await eventually(attempted)
                await pool.execute(
                    "UPDATE enrollments SET status = 'completed' WHERE workflow_id = 'wf-early'"
                )
                await eventually(lambda: _empty(pool))
    finally:
        stop_process(server)


async def test_events_for_enrollments_are_signalled_without_a_delivery_row_and_leave_the_queue(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """The usual batch (event signals only) writes no delivery: its changes leave the queue
    with the relay's next claim; each event still reaches its enrollment once, in order."""
    temporal = dev_env.client
    goal = {"criteria": {"event": "purchase", "min_count": 1}}
    async with (
        running_stack(pool, temporal, task_queue) as http,
        relay_running(pool, temporal, task_queue),
    ):
        journey_id = await activate(http, definition(goal=goal, enroll_empty_stage=False))
        workflow_id = await _ada_enrolled(http, journey_id)
        # page views: no enrollment reads them (routed nowhere); the purchase: one signal
        views = [
            {"contact_id": "ada", "type": "page_viewed", "idempotency_key": f"v{i}"}
            for i in range(3)
        ]
        assert (await http.post("/v1/events", json={"events": views})).status_code == 202
        purchase = {"contact_id": "ada", "type": "purchase"}
        assert (await http.post("/v1/events", json=purchase)).status_code == 202

        async def goal_met() -> None:
            assert (await enrollment(http, journey_id, "ada"))["outcome"] == "goal_met"

        await eventually(goal_met)
        await relayed(pool)
    assert await pool.fetchval("SELECT pg_sequence_last_value('deliveries_id_seq')") is None
    assert await signals(temporal, workflow_id) == ["contact_event"]


async def test_an_event_posted_to_an_api_is_handed_to_its_own_relay_without_a_claim(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """The API's relay takes the events the API stores (no other relay runs here): the
    event reaches its enrollment once, its change was queued leased to that relay (marked
    `handed_off`, so no trigger announced it to the others) and leaves the queue after."""
    temporal = dev_env.client
    goal = {"criteria": {"event": "purchase", "min_count": 1}}
    async with running_stack(pool, temporal, task_queue) as http:
        journey_id = await activate(http, definition(goal=goal, enroll_empty_stage=False))
        workflow_id = await _ada_enrolled(http, journey_id)
        purchase = {"contact_id": "ada", "type": "purchase", "idempotency_key": "p1"}
        assert (await http.post("/v1/events", json=purchase)).status_code == 202

        async def goal_met() -> None:
            assert (await enrollment(http, journey_id, "ada"))["outcome"] == "goal_met"

        await eventually(goal_met)

        async def left_the_queue() -> None:
            assert (
                await pool.fetchval("SELECT count(*) FROM change_queue WHERE kind = 'event'") == 0
            )

        await eventually(left_the_queue)
    assert await pool.fetchval("SELECT handed_off FROM events WHERE idempotency_key = 'p1'")
    assert await signals(temporal, workflow_id) == ["contact_event"]


async def _ada_enrolled(http: httpx.AsyncClient, journey_id: str) -> str:
    """Contact `ada`, enrolled in the journey: her enrollment's workflow id."""
    await http.put("/v1/contacts/ada", json={"properties": {"first_name": "Ada"}})
    enrolled = await http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "ada"})
    assert enrolled.status_code == 201, enrolled.text
    workflow_id: str = enrolled.json()["workflow_id"]
    return workflow_id


async def _empty(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


# --- routing, pure ---------------------------------------------------------------------------


def _journey(**overrides: Any) -> Journey:
    return Journey.model_validate(definition(**overrides))


def _cache(**journeys: Journey) -> InterestCache:
    cache = InterestCache()
    for journey_id, parsed in journeys.items():
        cache.add(("w", journey_id, 1), parsed.model_dump(mode="json"))
    return cache


def _open(journey_id: str, contact: str = "c", **fields: Any) -> OpenEnrollment:
    values: dict[str, Any] = {
        "workspace": "w",
        "contact_id": contact,
        "journey_id": journey_id,
        "journey_version": 1,
        "workflow_id": f"enrollment/w/{journey_id}/{contact}",
        "status": "running",
        "stage": "onboarding",
        "end_value": None,
    }
    return OpenEnrollment(**{**values, **fields})


def _change(kind: Any, seq: int | None = None, **fields: Any) -> Change:
    return Change(id=seq or 0, workspace="w", contact_id="c", kind=kind, seq=seq, **fields)


def test_routing_follows_each_journeys_interest_set() -> None:
    views = _journey(
        goal={"criteria": {"all": [{"event": "page_viewed", "min_count": 3}, {"list": "news"}]}},
        suppression_lists=["competitors"],
    )
    waits = _journey(
        stages=[
            {
                "key": "onboarding",
                "value": "onboarding",
                "actions": [
                    {
                        "type": "wait_for_event",
                        "event": {"type": "form_submitted", "target": "demo"},
                        "timeout": "P1D",
                    }
                ],
            }
        ],
        goal={"criteria": {"property": "plan", "op": "eq", "value": "paid"}},
    )
    cache = _cache(views=views, waits=waits)
    enrollments = by_contact([_open("views"), _open("waits")])
    changes = [
        _change("event", 10, name="page_viewed"),
        _change("event", 11, name="form_submitted"),
        _change("event", 12, name="email_opened"),
        _change("list", name="news"),
        _change("list", name="competitors"),
        _change("contact", 13, changed={"plan": "paid"}),
        _change("contact", 14, changed={"first_name": "Ada"}),
        _change("event", 15, name="page_viewed"),
    ]
    routed = {(d.journey_id, d.kind, d.seq) for d in route(changes, enrollments, cache)}
    assert routed == {
        ("views", "event", 10),
        ("views", "event", 15),
        ("views", "contact", 0),  # one snapshot for both list changes
        ("waits", "event", 11),
        ("waits", "contact", 0),
    }


def test_an_enrollments_own_stage_write_is_not_sent_back_to_it() -> None:
    cache = _cache(j=_journey())
    onboarding = by_contact([_open("j", stage="onboarding")])
    own = _change("contact", 5, changed={"journey_stage": "onboarding"})
    assert route([own], onboarding, cache) == []
    moved = _change("contact", 6, changed={"journey_stage": "customer"})
    assert [d.kind for d in route([moved], onboarding, cache)] == ["contact"]
    ended = by_contact([_open("j", stage="onboarding", end_value="customer")])
    assert route([moved], ended, cache) == []
    both = _change("contact", 7, changed={"journey_stage": "onboarding", "plan": "x"})
    assert [d.kind for d in route([both], onboarding, cache)] == ["contact"]


def test_an_enrollment_in_its_attribution_window_hears_only_the_goal() -> None:
    j = _journey(
        goal={"criteria": {"event": "purchase", "min_count": 1}},
        eligible_lists=["trial"],
    )
    cache = _cache(j=j)
    window = by_contact([_open("j", status="in_attribution_window")])
    changes = [
        _change("event", 1, name="purchase"),
        _change("list", name="trial"),
        _change("contact", 2, changed={"journey_stage": "nudge"}),
    ]
    assert [(d.kind, d.seq) for d in route(changes, window, cache)] == [("event", 1)]
    running = by_contact([_open("j")])
    assert len(route(changes, running, cache)) == 2  # the event and one snapshot


def test_unknown_or_unreadable_journey_versions_route_nothing() -> None:
    cache = InterestCache()
    cache.add(("w", "broken", 1), {"name": "not a journey"})
    enrollments = by_contact([_open("gone"), _open("broken")])
    assert route([_change("event", 1, name="x")], enrollments, cache) == []


async def test_relay_stops_promptly(pool: asyncpg.Pool, task_queue: str, tmp_path: Path) -> None:
    temporal = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter
    )
    async with asyncio.timeout(5), relay_running(pool, temporal, task_queue):
        await asyncio.sleep(0.2)


async def test_the_api_runs_the_relay_in_its_lifespan(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    app = create_app(Settings(task_queue=task_queue), pool=pool, temporal=dev_env.client)
    key = await create_key(pool, "default")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as http:
            posted = await http.post("/v1/events", json={"contact_id": "z", "type": "x"})
            assert posted.status_code == 202

            async def routed() -> None:
                assert await pool.fetchval("SELECT count(*) FROM change_queue") == 0

            await eventually(routed)
    finally:
        server.should_exit = True
        await serving
