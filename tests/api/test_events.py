"""POST /v1/events over HTTP, delivered by the relay to real workflows on the dev server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from services.relay import Relay
from shared.enrollment import EnrollmentView
from shared.settings import Settings
from tests.helpers.journeys import definition
from tests.helpers.relay import activate, enrollment, relay_running, signals
from tests.helpers.stack import eventually, running_stack


async def _enroll(http: Any, journey_id: str, contact_id: str) -> str:
    put = await http.put(f"/v1/contacts/{contact_id}", json={"properties": {"first_name": "Ada"}})
    assert put.status_code == 200, put.text
    enrolled = await http.post(
        f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact_id}
    )
    assert enrolled.status_code == 201, enrolled.text
    workflow_id: str = enrolled.json()["workflow_id"]
    return workflow_id


async def _view(env: WorkflowEnvironment, workflow_id: str) -> EnrollmentView:
    handle = env.client.get_workflow_handle(workflow_id)
    view: EnrollmentView = await handle.query("state", result_type=EnrollmentView)
    return view


async def test_event_posted_during_a_wait_ends_with_goal_met_and_the_next_action_never_runs(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "form_submitted", "target": "pricing", "min_count": 1}}
    body = definition(goal=goal, enroll_empty_stage=False)
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, body)
        workflow_id = await _enroll(http, journey_id, "ada")

        async def waiting() -> None:
            assert (await _view(dev_env, workflow_id)).waiting_until is not None

        await eventually(waiting)
        posted = await http.post(
            "/v1/events",
            json={
                "contact_id": "ada",
                "type": "form_submitted",
                "target": "pricing",
                "idempotency_key": "ada-pricing-1",
            },
        )
        assert posted.status_code == 202, posted.text
        assert posted.json()["duplicate"] is False

        async def goal_met() -> None:
            state = await enrollment(http, journey_id, "ada")
            assert (state["outcome"], state["status"]) == ("goal_met", "completed"), state

        await eventually(goal_met)
        handle = dev_env.client.get_workflow_handle(workflow_id, result_type=EnrollmentView)
        view = await handle.result()
        assert view.outcome == "goal_met"
        templates = [
            r["payload"]["template"]
            for r in await pool.fetch(
                "SELECT payload FROM outbox WHERE workflow_id = $1", workflow_id
            )
        ]
        assert templates == ["welcome"]  # the follow-up after the wait never ran
        steps = await enrollment(http, journey_id, "ada")
        actions = [s["action"] for s in steps["steps"]]
        assert actions[-1] == "exit" and "follow_up" not in json.dumps(steps["steps"])
        assert await signals(dev_env.client, workflow_id) == ["contact_event"]


async def test_same_event_posted_three_times_is_stored_and_counted_once(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "purchase", "min_count": 2}}
    body = definition(goal=goal, enroll_empty_stage=False)
    event = {
        "contact_id": "bob",
        "type": "purchase",
        "properties": {"amount": 42},
        "occurred_at": "2026-01-02T03:04:05Z",
        "idempotency_key": "order-1001",
    }
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        journey_id = await activate(http, body)
        workflow_id = await _enroll(http, journey_id, "bob")
        answers = [await http.post("/v1/events", json=event) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        bodies = [a.json() for a in answers]
        assert [b["duplicate"] for b in bodies] == [False, True, True]
        assert len({(b["id"], b["seq"]) for b in bodies}) == 1
        first = bodies[0]
        rows = await pool.fetch("SELECT id FROM events WHERE idempotency_key = 'order-1001'")
        assert [r["id"] for r in rows] == [first["id"]]

        async def applied() -> None:
            assert (await _view(dev_env, workflow_id)).contact_seq >= first["seq"]

        await eventually(applied)
        view = await _view(dev_env, workflow_id)
        assert view.phase == "running" and view.outcome is None  # one purchase, not three
        assert await signals(dev_env.client, workflow_id) == ["contact_event"]

        second = await http.post("/v1/events", json={**event, "idempotency_key": "order-1002"})
        assert second.status_code == 202

        async def goal_met() -> None:
            assert (await enrollment(http, journey_id, "bob"))["outcome"] == "goal_met"

        await eventually(goal_met)
        assert await signals(dev_env.client, workflow_id) == ["contact_event", "contact_event"]


async def test_events_go_only_to_enrollments_whose_journey_reads_their_type(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    reads_purchases = definition(
        name="Reads purchases",
        goal={"criteria": {"event": "purchase", "min_count": 5}},
        enroll_empty_stage=False,
    )
    # another stage property: two active journeys may not share lists and stage property
    reads_nothing = definition(
        name="Reads nothing", enroll_empty_stage=False, stage_property="other_stage"
    )
    async with (
        running_stack(pool, dev_env.client, task_queue) as http,
        relay_running(pool, dev_env.client, task_queue),
    ):
        interested = await activate(http, reads_purchases)
        other = await activate(http, reads_nothing)
        wf_interested = await _enroll(http, interested, "cy")
        wf_other = (
            await http.post(f"/v1/journeys/{other}/enrollments", json={"contact_id": "cy"})
        ).json()["workflow_id"]
        batch = {
            "events": [
                {"contact_id": "cy", "type": "page_viewed", "target": "/pricing"},
                {"contact_id": "cy", "type": "purchase"},
            ]
        }
        posted = await http.post("/v1/events", json=batch)
        assert posted.status_code == 202, posted.text
        assert (posted.json()["accepted"], posted.json()["duplicates"]) == (2, 0)

        async def delivered() -> None:
            assert await signals(dev_env.client, wf_interested) == ["contact_event"]

        await eventually(delivered)
        await eventually(lambda: _no_pending(pool))
        assert await signals(dev_env.client, wf_other) == []


async def _no_pending(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM change_queue") == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


# --- the batch form and what a caller may send ------------------------------------------------


async def test_batch_answers_each_event_in_order_and_repeats_return_the_first_result(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        batch = {
            "events": [
                {"contact_id": "a", "type": "page_viewed", "idempotency_key": "k1"},
                {"contact_id": "b", "type": "page_viewed", "idempotency_key": "k2"},
                {"contact_id": "a", "type": "page_viewed", "idempotency_key": "k1"},
                {"contact_id": "c", "type": "email_opened"},
            ]
        }
        first = await http.post("/v1/events", json=batch)
        assert first.status_code == 202, first.text
        body = first.json()
        assert (body["accepted"], body["duplicates"]) == (3, 1)
        events = body["events"]
        assert [e["duplicate"] for e in events] == [False, False, True, False]
        assert events[0]["id"] == events[2]["id"]
        assert events[0]["seq"] < events[1]["seq"] < events[3]["seq"]

        again = (await http.post("/v1/events", json=batch)).json()
        assert (again["accepted"], again["duplicates"]) == (1, 3)  # c had no key: new again
        assert [e["id"] for e in again["events"][:3]] == [e["id"] for e in events[:3]]
        assert await pool.fetchval("SELECT count(*) FROM events") == 4
        # events create the contacts they name
        contact = await http.get("/v1/contacts/b")
        assert contact.status_code == 200 and contact.json()["properties"] == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "page_viewed"}, "invalid_request"),
        ({"contact_id": "a", "type": ""}, "invalid_request"),
        ({"contact_id": "a", "type": "x", "colour": "red"}, "invalid_request"),
        ({"contact_id": "a\u0000b", "type": "x"}, "invalid_request"),
        ({"contact_id": "a", "type": "x", "properties": {"s": "nul\u0000"}}, "invalid_request"),
        ({"contact_id": "a", "type": "x", "properties": []}, "invalid_request"),
        ({"contact_id": "a", "type": "x", "occurred_at": "2026-01-01T00:00:00"}, "invalid_request"),
        ({"contact_id": "a", "type": "x", "occurred_at": "yesterday"}, "invalid_request"),
        ({"events": "many"}, "invalid_request"),
        ({"events": [{"contact_id": "a", "type": "x"}, {"contact_id": "a"}]}, "invalid_request"),
        ([], "invalid_request"),
        ("event", "invalid_request"),
        (None, "invalid_request"),
        ({"events": [{"contact_id": "a", "type": "x"}] * 1001}, "batch_too_large"),
    ],
)
async def test_bad_events_get_a_reason_and_change_nothing(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, body: Any, reason: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        response = await http.post("/v1/events", json=body)
        assert response.status_code == (413 if reason == "batch_too_large" else 422), response.text
        assert response.json()["reason"] == reason
        assert response.json()["message"]
        assert await pool.fetchval("SELECT count(*) FROM events") == 0


async def test_non_finite_numbers_and_raw_garbage_are_422_not_500(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        for raw in (
            b'{"contact_id": "a", "type": "x", "properties": {"n": NaN}}',
            b'{"contact_id": "a", "type": "x", "properties": {"n": Infinity}}',
            b'{"contact_id": "a", "type": "x", "properties": {"n": 1e999}}',
            b'{"contact_id": "a", "type": "x", "properties": ' + b"[" * 40 + b"]" * 40 + b"}",
            b"{not json",
        ):
            response = await http.post(
                "/v1/events", content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (raw, response.text)
            assert response.json()["reason"]
        assert await pool.fetchval("SELECT count(*) FROM events") == 0


# --- routing a batch of 1,000 with a bounded number of queries --------------------------------


@pytest.fixture
async def counted_pool(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A real pool whose connections log every statement they send."""
    statements: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        for kind in ("json", "jsonb"):
            await conn.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        conn.add_query_logger(lambda record: statements.append(record.query))

    counted = await asyncpg.create_pool(database_url, min_size=1, max_size=10, init=init)
    assert counted is not None
    yield counted, statements
    await counted.close()


# What asyncpg sends on its own: type introspection the first time a connection meets a
# type, and the reset of a connection going back to the pool.
DRIVER_STATEMENTS = ("typeinfo_tree", "'jit'", "pg_advisory_unlock_all()")


def _ours(statements: list[str]) -> int:
    """Statements the application sent (BEGIN and COMMIT included)."""
    return sum(not any(m in q for m in DRIVER_STATEMENTS) for q in statements)


SEED_CONTACTS = "INSERT INTO contacts (workspace, id) SELECT 'default', unnest($1::text[])"
SEED_ENROLLMENTS = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version)
SELECT 'default', $1, c, 'enrollment/default/' || $1 || '/' || c, 1 FROM unnest($2::text[]) AS c
"""


async def test_a_batch_of_1000_events_for_1000_contacts_is_routed_in_one_pass_of_queries(
    dev_env: WorkflowEnvironment,
    counted_pool: tuple[asyncpg.Pool, list[str]],
    task_queue: str,
) -> None:
    pool, statements = counted_pool
    contacts = [f"c{i:04d}" for i in range(1000)]
    # no background relay (nor sender): this test routes by hand and counts every statement
    async with running_stack(pool, dev_env.client, task_queue, relay=False, sender=False) as http:
        reads_views = await activate(
            http, definition(goal={"criteria": {"event": "page_viewed", "min_count": 3}})
        )
        reads_purchases = await activate(
            http,
            definition(
                name="Purchases",
                stage_property="purchase_stage",
                goal={"criteria": {"event": "purchase", "min_count": 1}},
            ),
        )
        # 1,000 contacts, each with an open enrollment in both journeys (rows only:
        # routing reads no workflow)
        await pool.execute(SEED_CONTACTS, contacts)
        await pool.execute(SEED_ENROLLMENTS, reads_views, contacts)
        await pool.execute(SEED_ENROLLMENTS, reads_purchases, contacts)
        await pool.execute("DELETE FROM change_queue")

        async def post(count: int, key: str) -> int:
            batch = {
                "events": [
                    {"contact_id": c, "type": "page_viewed", "idempotency_key": f"{key}-{c}"}
                    for c in contacts[:count]
                ]
            }
            statements.clear()
            posted = await http.post("/v1/events", json=batch)
            assert posted.status_code == 202, posted.text
            assert posted.json()["accepted"] == count
            return _ours(statements)

        async def route(count: int) -> int:
            relay = Relay(pool, dev_env.client, Settings(task_queue=task_queue))  # cold caches
            statements.clear()
            assert await relay.route_once(limit=1000) == count
            return _ours(statements)

        small_post = await post(10, "small")
        small_route = await route(10)
        await pool.execute("DELETE FROM deliveries")
        big_post = await post(1000, "big")
        big_route = await route(1000)

    # the same handful of statements whatever the batch size, never one per event
    assert big_post == small_post <= 4, statements
    # (claim, open enrollments, journey versions, active journeys: an event may start an
    # entry of an event-triggered journey, then deliveries and the transaction's own)
    assert big_route == small_route <= 7, statements
    routed = await pool.fetch(
        "SELECT journey_id, kind, count(*) AS n FROM deliveries GROUP BY 1, 2"
    )
    # every event went to the journey that reads page views, none to the other
    assert [(r["journey_id"], r["kind"], r["n"]) for r in routed] == [(reads_views, "event", 1000)]


async def test_the_ingest_fast_path_answers_what_the_route_answers(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """`api.fast_events` takes the plain `application/json` POST; a `+json` type goes to the
    FastAPI route. The same event and batch, posted both ways, get the same answers (the
    second way sees the first's as its duplicates), and refusals are the route's."""
    one = {"contact_id": "ada", "type": "page_viewed", "idempotency_key": "fast-1"}
    batch = {"events": [one, {"contact_id": "grace", "type": "purchase", "idempotency_key": "g"}]}
    route = {"content-type": "application/merge-patch+json"}
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        for body in (one, batch):
            by_route = await http.post("/v1/events", content=json.dumps(body), headers=route)
            by_fast_path = await http.post("/v1/events", json=body)
            assert by_route.status_code == by_fast_path.status_code == 202, by_route.text
            first, again = by_route.json(), by_fast_path.json()
            if body is one:
                assert again == {**first, "duplicate": True}
            else:
                assert again["events"] == [{**e, "duplicate": True} for e in first["events"]]
                assert (again["accepted"], again["duplicates"]) == (0, 2)
        assert await pool.fetchval("SELECT count(*) FROM events") == 2
        # refusals: the route's own answers, whichever way they came
        bad = {"contact_id": "", "type": "x"}
        refused = [
            await http.post("/v1/events", json=bad),
            await http.post("/v1/events", content=json.dumps(bad), headers=route),
        ]
        assert [r.status_code for r in refused] == [422, 422]
        assert refused[0].json() == refused[1].json()
        unknown = await http.post(
            "/v1/events", json=one, headers={"Authorization": "Bearer nk_unknown"}
        )
        assert unknown.status_code == 401 and unknown.json()["reason"] == "invalid_api_key"
