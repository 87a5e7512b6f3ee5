"""Journey life cycle over HTTP on the real dev server: states, the edit
refusal, versions and pinning, limits, deactivate/delete with and without unenroll,
activation progress and preview."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, send
from tests.helpers.lifecycle import SEED_MEMBERS, activation_done, create, seed, statuses, waiting
from tests.helpers.stack import eventually, running_stack


async def test_draft_active_inactive_active_delete_and_active_journeys_refuse_edits(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        body = waiting()
        journey_id = await create(http, body)
        never = await http.post(f"/v1/journeys/{journey_id}/deactivate")
        assert never.status_code == 409 and never.json()["reason"] == "journey_not_active"
        unchanged = await http.put(f"/v1/journeys/{journey_id}", json=body)
        assert unchanged.status_code == 200 and unchanged.json()["version"] == 1

        activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert activated.status_code == 200 and activated.json()["status"] == "active"
        twice = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert twice.json()["status"] == "active"
        assert (
            twice.json()["activation"]["activation"] == activated.json()["activation"]["activation"]
        )
        refused = await http.put(f"/v1/journeys/{journey_id}", json=waiting("PT2H"))
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "journey_active"

        deactivated = await http.post(f"/v1/journeys/{journey_id}/deactivate")
        assert deactivated.status_code == 200 and deactivated.json()["status"] == "inactive"
        edited = await http.put(
            f"/v1/journeys/{journey_id}",
            json=waiting("PT2H"),
            headers={"X-Actor": "ann@acme.test"},
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["version"] == 2

        again = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert again.status_code == 200 and again.json()["status"] == "active"
        assert again.json()["version"] == 2

        versions = (await http.get(f"/v1/journeys/{journey_id}/versions")).json()
        assert [(v["version"], v["changed_by"], v["current"]) for v in versions] == [
            (1, "marketing@acme.test", False),
            (2, "ann@acme.test", True),
        ]
        assert versions[0]["changes"] == [
            {"path": "", "change": "created", "before": None, "after": None}
        ]
        assert versions[1]["changes"] == [
            {
                "path": "stages[onboarding].actions[0].duration",
                "change": "changed",
                "before": "PT1H",
                "after": "PT2H",
            }
        ]
        assert versions[0]["changed_at"] <= versions[1]["changed_at"]
        first = await http.get(f"/v1/journeys/{journey_id}/versions/1")
        assert first.json()["definition"]["stages"][0]["actions"][0]["duration"] == "PT1H"

        await http.post(f"/v1/journeys/{journey_id}/deactivate")
        deleted = await http.delete(f"/v1/journeys/{journey_id}")
        assert deleted.status_code == 204, deleted.text
        gone = await http.get(f"/v1/journeys/{journey_id}")
        assert gone.status_code == 404 and gone.json()["reason"] == "journey_not_found"


def gated(after: str) -> dict[str, Any]:
    """Enrollments wait for a `go` event of their contact, then send `after`."""
    stage = {
        "key": "onboarding",
        "value": "onboarding",
        "actions": [
            {"type": "wait_for_event", "event": {"type": "go"}, "timeout": "P1D"},
            send(after),
        ],
    }
    return definition([stage], eligible_lists=["trial"])


async def test_an_enrollment_started_on_v1_finishes_v1_after_v2_is_activated(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        await seed(pool, ["ada"])
        journey_id = await create(http, gated("v1_follow_up"))
        await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert (await activation_done(http, journey_id))["started"] == 1

        await http.post(f"/v1/journeys/{journey_id}/deactivate")
        edited = await http.put(f"/v1/journeys/{journey_id}", json=gated("v2_follow_up"))
        assert edited.json()["version"] == 2
        await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        second = await activation_done(http, journey_id)
        assert (second["journey_version"], second["started"]) == (2, 0)
        assert second["refused"] == {"already_enrolled": 1}
        # a contact who joins now enrolls on v2
        assert (await http.put("/v1/lists/trial/members/bob")).status_code == 204

        async def bob_enrolled() -> None:
            assert await pool.fetchval("SELECT count(*) FROM enrollments") == 2

        await eventually(bob_enrolled)
        for contact in ("ada", "bob"):
            event = {"contact_id": contact, "type": "go", "idempotency_key": f"go-{contact}"}
            assert (await http.post("/v1/events", json=event)).status_code == 202

        async def sent() -> None:
            rows = await pool.fetch(
                "SELECT contact_id, payload->>'template' AS t FROM outbox ORDER BY contact_id"
            )
            assert [(r["contact_id"], r["t"]) for r in rows] == [
                ("ada", "v1_follow_up"),
                ("bob", "v2_follow_up"),
            ]

        await eventually(sent)
        rows = await pool.fetch(
            "SELECT contact_id, journey_version FROM enrollments ORDER BY contact_id"
        )
        assert [tuple(r) for r in rows] == [("ada", 1), ("bob", 2)]
        versions = (await http.get(f"/v1/journeys/{journey_id}/versions")).json()
        assert [(v["enrolled"], v["open"]) for v in versions] == [(1, 1), (1, 1)]


async def test_limits_owner_count_and_one_active_journey_per_audience(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        owned = [await create(http, waiting(name=f"J{i}")) for i in range(10)]
        eleventh = await http.post("/v1/journeys", json=waiting(name="J10"))
        assert eleventh.status_code == 409, eleventh.text
        assert eleventh.json()["reason"] == "journey_limit_reached"
        other_owner = await http.post("/v1/journeys", json=waiting(owner="sales@acme.test"))
        assert other_owner.status_code == 201

        six = await http.post(
            "/v1/journeys", json=waiting(eligible_lists=[f"l{i}" for i in range(6)])
        )
        assert six.status_code == 422
        assert [p["reason"] for p in six.json()["problems"]] == ["too_many_eligible_lists"]

        await http.delete(f"/v1/journeys/{owned[-1]}")
        both = ["trial", "beta"]
        first = await create(http, waiting(eligible_lists=both))
        same = await http.put(
            f"/v1/journeys/{owned[0]}", json=waiting(eligible_lists=["beta", "trial"])
        )
        assert same.status_code == 200
        other_property = await http.put(
            f"/v1/journeys/{owned[1]}",
            json=waiting(eligible_lists=both, stage_property="plan_stage"),
        )
        assert other_property.status_code == 200

        assert (
            await http.post(f"/v1/journeys/{first}/activate", params={"force": "true"})
        ).status_code == 200
        conflict = await http.post(f"/v1/journeys/{owned[0]}/activate", params={"force": "true"})
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["reason"] == "journey_conflict"
        assert conflict.json()["conflicting_journey_id"] == first
        assert (await http.get(f"/v1/journeys/{owned[0]}")).json()["status"] == "draft"
        assert (
            await http.post(f"/v1/journeys/{owned[1]}/activate", params={"force": "true"})
        ).status_code == 200

        await http.post(f"/v1/journeys/{first}/deactivate")
        assert (
            await http.post(f"/v1/journeys/{owned[0]}/activate", params={"force": "true"})
        ).status_code == 200


async def test_deactivate_keeps_enrollments_unless_unenroll_and_delete_refuses_while_they_run(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        await seed(pool, ["a", "b", "c"])
        journey_id = await create(http, waiting("P1D"))
        await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert (await activation_done(http, journey_id))["started"] == 3

        stopped = await http.post(f"/v1/journeys/{journey_id}/deactivate")
        assert stopped.status_code == 200 and stopped.json()["unenroll"] is None
        refused = await http.delete(f"/v1/journeys/{journey_id}")
        assert refused.status_code == 409 and refused.json()["reason"] == "enrollments_running"
        assert await statuses(pool, journey_id) == {"running": 3}
        late = await http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "a"})
        assert late.status_code in (409, 422), late.text

        ending = await http.post(f"/v1/journeys/{journey_id}/deactivate?unenroll=true")
        assert ending.status_code == 200, ending.text
        assert ending.json()["unenroll"]["running"] == 3

        async def ended() -> None:
            assert await statuses(pool, journey_id) == {"journey_deactivated": 3}
            metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
            assert metrics["ended"]["journey_deactivated"]["count"] == 3
            log = (await http.get(f"/v1/journeys/{journey_id}/enrollments/a")).json()
            assert log["outcome"] == "journey_deactivated"

        await eventually(ended)
        progress = (await http.get(f"/v1/journeys/{journey_id}/unenroll")).json()
        assert (progress["status"], progress["signalled"]) == ("completed", 3)

        async def deletable() -> None:
            assert (await http.delete(f"/v1/journeys/{journey_id}")).status_code == 204

        await eventually(deletable)


async def test_delete_with_unenroll_ends_running_enrollments(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        await seed(pool, ["a", "b"])
        journey_id = await create(http, waiting("P1D"))
        await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        await activation_done(http, journey_id)

        deleted = await http.delete(f"/v1/journeys/{journey_id}?unenroll=true")
        assert deleted.status_code == 202, deleted.text
        assert deleted.json()["unenroll"]["running"] == 2
        assert (await http.get(f"/v1/journeys/{journey_id}")).status_code == 404

        async def ended() -> None:
            assert await statuses(pool, journey_id) == {"journey_deactivated": 2}

        await eventually(ended)


async def test_deactivating_mid_activation_stops_it_and_nothing_starts_after(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    contacts = [f"c{i:04d}" for i in range(400)]
    async with running_stack(
        pool, dev_env.client, task_queue, activation_rate=40, activation_page_size=100
    ) as http:
        await seed(pool, contacts)
        journey_id = await create(http, waiting("P1D"))
        activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert activated.json()["activation"]["status"] == "running"

        async def some_started() -> None:
            progress = (await http.get(f"/v1/journeys/{journey_id}/activation")).json()
            assert progress["eligible"] == 400 and progress["started"] > 0

        await eventually(some_started)
        await http.post(f"/v1/journeys/{journey_id}/deactivate")
        progress = await activation_done(http, journey_id)
        assert progress["status"] == "stopped"
        assert progress["stop_reason"] == "journey_deactivated"
        assert 0 < progress["started"] < 400
        enrolled = await pool.fetchval("SELECT count(*) FROM enrollments")
        assert enrolled == progress["started"]
        workflow_id = progress["workflow_id"]
        await dev_env.client.get_workflow_handle(workflow_id).result()
        assert await pool.fetchval("SELECT count(*) FROM enrollments") == enrolled


async def test_preview_counts_eligible_and_refusals_without_enrolling(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        await seed(pool, ["ok1", "ok2", "rival", "staged"])
        await seed(pool, ["outsider"], "newsletter")
        await pool.execute(SEED_MEMBERS, "competitors", ["rival"])
        await http.put("/v1/contacts/staged", json={"properties": {"journey_stage": "other"}})
        journey_id = await create(http, waiting(suppression_lists=["competitors"]))

        preview = await http.post(f"/v1/journeys/{journey_id}/preview")
        assert preview.status_code == 200, preview.text
        body = preview.json()
        assert (body["eligible"], body["would_enroll"], body["refused"]) == (
            3,
            2,
            {"suppressed": 1},
        )
        assert await pool.fetchval("SELECT count(*) FROM enrollments") == 0
        assert await pool.fetchval("SELECT count(*) FROM refusals") == 0

        await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        progress = await activation_done(http, journey_id)
        assert (progress["eligible"], progress["started"], progress["refused"]) == (
            3,
            2,
            {"suppressed": 1},
        )
