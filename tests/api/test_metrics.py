"""Goals, attribution and metrics over the API, on the time-skipping server.

One scenario drives contacts through a journey with branches, a loop, goal exits, a
suppression exit, refusals, conversions inside and outside the attribution window, a
goal met without any marketing message, the two-journey credit rule and a goal epoch
reset; every number of /metrics is worked out by hand in the comments and compared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import EnrollmentView
from tests.helpers.stack import eventually, running_stack

PURCHASE = {"event": "purchase", "min_count": 1}


def _send(template: str, marketing: bool) -> dict[str, Any]:
    return {
        "type": "send_message",
        "channels": ["email"],
        "template": template,
        "marketing": marketing,
    }


def _wait_for(event: str, on_event: str, on_timeout: str) -> dict[str, Any]:
    return {
        "type": "wait_for_event",
        "event": {"type": event},
        "timeout": "P1D",
        "on_event": {"go_to": on_event},
        "on_timeout": {"go_to": on_timeout},
    }


# intro (no marketing) --demo--> engaged (marketing) --1 day--> success
#       \--1 day--> nudge (marketing) --reply--> intro (the loop)
#                         \--1 day--> failure:churned
TRIAL = {
    "name": "Trial",
    "owner": "marketing@acme.test",
    "stage_property": "journey_stage",
    "eligible_lists": ["trial"],
    "start_stage": "intro",
    "enroll_empty_stage": False,
    "stages": [
        {
            "key": "intro",
            "value": "intro",
            "actions": [_send("intro", False), _wait_for("demo_requested", "engaged", "nudge")],
        },
        {
            "key": "nudge",
            "value": "nudge",
            "actions": [_send("nudge", True), _wait_for("reply", "intro", "failure:churned")],
        },
        {
            "key": "engaged",
            "value": "engaged",
            "actions": [
                _send("case_study", True),
                {"type": "wait", "duration": "P1D"},
                {"type": "go_to", "target": "success"},
            ],
        },
    ],
    "ends": {"success": {"value": "customer"}, "failure": [{"value": "churned"}]},
    "goal": {"criteria": PURCHASE, "target": {"percent": 30}, "attribution_window": "P3D"},
    "suppression_lists": ["blocked"],
}

# The same goal, another audience and stage property: a long-running marketing journey.
VIP = {
    "name": "VIP",
    "owner": "marketing@acme.test",
    "stage_property": "vip_stage",
    "eligible_lists": ["vip"],
    "start_stage": "vip",
    "enroll_empty_stage": False,
    "stages": [
        {
            "key": "vip",
            "value": "vip",
            "actions": [
                _send("vip", True),
                {"type": "wait", "duration": "P10D"},
                {"type": "go_to", "target": "success"},
            ],
        }
    ],
    "ends": {"success": {"value": "vip_done"}, "failure": []},
    "goal": {"criteria": PURCHASE, "attribution_window": "P3D"},
}

ENROLLED = ["c_goal", "c_nomkt", "c_in", "c_out", "c_churn", "c_loop", "c_supp", "x_both"]


class Scenario:
    def __init__(self, http: httpx.AsyncClient, pool: asyncpg.Pool, env: WorkflowEnvironment):
        self.http, self.pool, self.env = http, pool, env

    async def create(self, definition: dict[str, Any]) -> str:
        created = await self.http.post("/v1/journeys", json=definition)
        assert created.status_code == 201, created.text
        journey_id: str = created.json()["id"]
        await self.activate(journey_id)
        return journey_id

    async def activate(self, journey_id: str) -> None:
        activated = await self.http.post(
            f"/v1/journeys/{journey_id}/activate", params={"force": "true"}
        )
        assert activated.status_code == 200, activated.text

    async def enroll(self, journey_id: str, contact_id: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact_id}
        )

    async def event(self, contact_id: str, type: str) -> None:
        sent = await self.http.post("/v1/events", json={"contact_id": contact_id, "type": type})
        assert sent.status_code == 202, sent.text

    async def join(self, list_name: str, *contact_ids: str) -> None:
        added = await self.http.post(
            f"/v1/lists/{list_name}/members", json={"add": list(contact_ids)}
        )
        assert added.status_code == 200, added.text

    async def metrics(self, journey_id: str, **window: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/journeys/{journey_id}/metrics", params=window)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def where(self, journey_id: str, contact_id: str) -> tuple[str, str | None, str | None]:
        row = await self.pool.fetchrow(
            "SELECT status, stage, outcome FROM enrollments WHERE journey_id = $1"
            " AND contact_id = $2",
            journey_id,
            contact_id,
        )
        assert row is not None
        return row["status"], row["stage"], row["outcome"]

    async def until(self, journey_id: str, expected: dict[str, tuple[Any, ...]]) -> None:
        """Waits until each contact is where `expected` says: (status, stage, outcome), and
        each running one waits (the enrollment row names the stage as soon as it is
        entered, before its actions ran; an event sent then would not meet its wait)."""

        async def check() -> None:
            seen = {c: await self.where(journey_id, c) for c in expected}
            assert seen == expected
            for contact_id, (status, *_) in expected.items():
                if status == "running":
                    wf_id = await self.pool.fetchval(
                        "SELECT workflow_id FROM enrollments WHERE journey_id = $1"
                        " AND contact_id = $2",
                        journey_id,
                        contact_id,
                    )
                    handle = self.env.client.get_workflow_handle(wf_id)
                    view = await handle.query("state", result_type=EnrollmentView)
                    assert view.waiting_until is not None, (contact_id, view.details)

        await eventually(check, timeout=60)

    async def steps(self, journey_id: str, contact_id: str) -> list[tuple[str, str]]:
        log = await self.http.get(f"/v1/journeys/{journey_id}/enrollments/{contact_id}")
        assert log.status_code == 200, log.text
        return [(s["action"], s["result"]) for s in log.json()["steps"]]

    async def quiet(self) -> None:
        """Every change routed and every signal delivered."""

        async def check() -> None:
            assert await self.pool.fetchval("SELECT count(*) FROM change_queue") == 0
            assert await self.pool.fetchval("SELECT count(*) FROM deliveries") == 0

        await eventually(check)


def _paths(stage: dict[str, Any]) -> dict[str, tuple[int, float]]:
    return {p["to"]: (p["count"], p["percent"]) for p in stage["paths"]}


def _stages(metrics: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {s["key"]: (s["entered"], s["active"], s["left"]) for s in metrics["stages"]}


async def test_metrics_of_a_journey_match_the_hand_count(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, ts_env.client, task_queue) as http:
        s = Scenario(http, pool, ts_env)
        started = datetime.now(UTC) - timedelta(seconds=1)
        trial = await s.create(TRIAL)
        vip = await s.create(VIP)
        await s.join("trial", *ENROLLED, "r_supp", "r_goal")
        await s.join("blocked", "r_supp")
        await s.join("vip", "x_both")
        await s.http.put("/v1/contacts/r_noelig", json={"properties": {}})
        await s.event("r_goal", "purchase")
        await s.quiet()

        # --- day 0: eight enrollments, four refusals -------------------------------------
        for contact in ENROLLED:
            assert (await s.enroll(trial, contact)).status_code == 201
        assert (await s.enroll(vip, "x_both")).status_code == 201
        refusals = {"r_noelig": "not_eligible", "r_supp": "suppressed"}
        refusals |= {"r_goal": "goal_already_met", "c_goal": "already_enrolled"}
        for contact, reason in refusals.items():
            refused = await s.enroll(trial, contact)
            assert (refused.status_code, refused.json()["reason"]) == (409, reason)
        await s.until(trial, {c: ("running", "intro", None) for c in ENROLLED})
        await s.until(vip, {"x_both": ("running", "vip", None)})

        # c_nomkt meets the goal having had only the non-marketing intro: exits, not counted
        await s.event("c_nomkt", "purchase")
        for contact in ("c_in", "c_out", "x_both"):
            await s.event(contact, "demo_requested")
        engaged = ("running", "engaged", None)
        await s.until(
            trial,
            {"c_nomkt": ("completed", "intro", "goal_met")}
            | {c: engaged for c in ("c_in", "c_out", "x_both")},
        )
        now = await s.metrics(trial)
        assert (now["enrolled"], now["active"], now["in_attribution_window"]) == (8, 7, 0)
        assert _stages(now) == {"intro": (8, 4, 4), "nudge": (0, 0, 0), "engaged": (3, 3, 0)}
        assert now["goal"]["conversions"] == 0

        # --- day 1: intro timeouts go to nudge; engaged contacts reach success --------------
        await ts_env.sleep(timedelta(days=1, minutes=1))
        in_window = ("in_attribution_window", "engaged", "success")
        await s.until(
            trial,
            {c: ("running", "nudge", None) for c in ("c_goal", "c_churn", "c_loop", "c_supp")}
            | {c: in_window for c in ("c_in", "c_out", "x_both")},
        )
        await s.event("c_goal", "purchase")  # goal exit after a marketing nudge: counts
        await s.event("c_loop", "reply")  # back to intro: the loop
        await s.join("blocked", "c_supp")  # suppression exit ...
        await s.until(
            trial,
            {
                "c_goal": ("completed", "nudge", "goal_met"),
                "c_loop": ("running", "intro", None),
                "c_supp": ("completed", "nudge", "suppressed"),
            },
        )
        await s.event("c_supp", "purchase")  # ... so its goal never counts
        await s.event("c_loop", "demo_requested")
        await s.until(trial, {"c_loop": engaged})

        # --- day 2: c_churn churns, c_loop succeeds; two goals met after the end ---------
        await ts_env.sleep(timedelta(days=1, minutes=1))
        await s.until(
            trial,
            {
                "c_churn": ("in_attribution_window", "nudge", "failure"),
                "c_loop": ("in_attribution_window", "engaged", "success"),
            },
        )
        await s.event("c_in", "purchase")  # inside the 3-day window: counts
        await s.event("x_both", "purchase")  # the VIP journey still runs: only it counts
        await s.until(vip, {"x_both": ("completed", "vip", "goal_met")})
        await s.until(trial, {c: ("completed", "engaged", "success") for c in ("c_in", "x_both")})
        assert ("goal_met", "after_end") in await s.steps(trial, "c_in")
        assert ("goal_met", "after_end") in await s.steps(trial, "x_both")

        # --- day 5: every window has closed; a goal met now is too late --------------------
        await ts_env.sleep(timedelta(days=3, minutes=1))
        await s.until(trial, {c: ("completed", *(await s.where(trial, c))[1:]) for c in ENROLLED})
        await s.event("c_out", "purchase")
        await s.quiet()

        m = await s.metrics(trial)
        # eligible is the entry rule now: trial members whose stage property holds a stage's
        # value, c_nomkt (intro), c_goal and c_supp (nudge). The ended hold an end's value;
        # r_supp and r_goal hold none, and this journey does not enroll an empty stage.
        assert m["eligible"] == 3
        assert (m["enrolled"], m["active"], m["in_attribution_window"]) == (8, 0, 0)
        assert m["refused"] == {
            "already_enrolled": 1,
            "goal_already_met": 1,
            "not_eligible": 1,
            "suppressed": 1,
        }
        assert m["refused_total"] == 4
        assert m["ended"] == {
            "failure": {"count": 1, "percent": 12.5},  # c_churn
            "goal_met": {"count": 2, "percent": 25.0},  # c_goal, c_nomkt
            "success": {"count": 4, "percent": 50.0},  # c_in, c_out, c_loop, x_both
            "suppressed": {"count": 1, "percent": 12.5},  # c_supp
        }
        # conversions: c_goal (exit after a marketing nudge) and c_in (inside the window);
        # not c_nomkt (no marketing), c_supp (suppressed), x_both (VIP took it), c_out (late)
        assert m["goal"] == {
            "epoch": 1,
            "enrolled": 8,
            "conversions": 2,
            "conversion_rate": 25.0,
            "target": {"percent": 30},
            "target_met": False,
            "progress": 83.33,  # 25 % of a 30 % target
            "conversions_needed": 1,  # 3 of 8 reach 30 %
        }
        stages = {st["key"]: st for st in m["stages"]}
        assert _stages(m) == {"intro": (9, 0, 9), "nudge": (4, 0, 4), "engaged": (4, 0, 4)}
        assert _paths(stages["intro"]) == {
            "engaged": (4, 44.44),  # c_in, c_out, x_both, c_loop (second time)
            "nudge": (4, 44.44),  # c_goal, c_churn, c_loop, c_supp
            "exit:goal_met": (1, 11.11),  # c_nomkt
        }
        assert _paths(stages["nudge"]) == {
            "exit:goal_met": (1, 25.0),
            "exit:suppressed": (1, 25.0),
            "end:failure:churned": (1, 25.0),
            "intro": (1, 25.0),
        }
        assert _paths(stages["engaged"]) == {"end:success": (4, 100.0)}

        v = await s.metrics(vip)
        assert (v["enrolled"], v["ended"]) == (1, {"goal_met": {"count": 1, "percent": 100.0}})
        assert (v["goal"]["conversions"], v["goal"]["target"]) == (1, None)

        # the same numbers for the cohort enrolled in a window that holds all of them
        mid = datetime.now(UTC)
        window = {"since": started.isoformat(), "until": mid.isoformat()}
        cohort = await s.metrics(trial, **window)
        assert cohort["window"] is not None
        for key in ("enrolled", "active", "refused", "ended", "goal", "stages"):
            assert cohort[key] == m[key], key
        empty = await s.metrics(trial, since=mid.isoformat())
        assert (empty["enrolled"], empty["refused"], empty["goal"]["conversions"]) == (0, {}, 0)

        await _enrollment_log(s, trial)
        await _goal_epochs(s, trial, mid)


async def _enrollment_log(s: Scenario, trial: str) -> None:
    """The log explains every number, refusals included."""
    supp = await s.http.get(f"/v1/journeys/{trial}/enrollments/c_supp")
    exit_step = next(st for st in supp.json()["steps"] if st["action"] == "exit")
    assert exit_step["result"] == "suppressed"
    assert exit_step["reason"] == "joined suppression list 'blocked'"
    assert exit_step["explanation"]["result"] is True
    assert supp.json()["steps"][0]["action"] == "enter_stage"

    refused = (await s.http.get(f"/v1/journeys/{trial}/enrollments/r_goal")).json()
    assert refused["status"] == "refused" and refused["workflow_id"] is None
    [step] = refused["steps"]
    assert (step["action"], step["result"]) == ("refused", "goal_already_met")
    assert step["explanation"]["result"] is True and step["reason"]
    not_eligible = (await s.http.get(f"/v1/journeys/{trial}/enrollments/r_noelig")).json()
    assert not_eligible["steps"][0]["explanation"]["result"] is False
    assert ("refused", "already_enrolled") in await s.steps(trial, "c_goal")
    assert (await s.http.get(f"/v1/journeys/{trial}/enrollments/nobody")).status_code == 404

    # filtered and paged: the four successes, two by two
    seen, cursor = [], ""
    while True:
        page = await s.http.get(
            f"/v1/journeys/{trial}/enrollments",
            params={"status": "completed", "outcome": "success", "limit": 2, "cursor": cursor},
        )
        assert page.status_code == 200, page.text
        seen += [e["contact_id"] for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ["c_in", "c_loop", "c_out", "x_both"]
    bad = await s.http.get(f"/v1/journeys/{trial}/enrollments", params={"cursor": "c_in"})
    assert (bad.status_code, bad.json()["reason"]) == (400, "invalid_cursor")
    bad = await s.http.get(f"/v1/journeys/{trial}/enrollments", params={"status": "done"})
    assert (bad.status_code, bad.json()["reason"]) == (422, "invalid_filter")
    for window in ({"since": "yesterday"}, {"until": "2026-01-01T00:00:00"}):
        bad = await s.http.get(f"/v1/journeys/{trial}/metrics", params=window)
        assert (bad.status_code, bad.json()["reason"]) == (422, "invalid_window")
    backwards = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    bad = await s.http.get(f"/v1/journeys/{trial}/metrics", params=backwards)
    assert (bad.status_code, bad.json()["reason"]) == (422, "invalid_window")


async def _goal_epochs(s: Scenario, trial: str, mid: datetime) -> None:
    """docs/design.md, "Goal conversions": editing the criteria keeps the count; clearing the
    goal restarts it."""

    async def edit(goal: dict[str, Any] | None) -> dict[str, Any]:
        assert (await s.http.post(f"/v1/journeys/{trial}/deactivate")).status_code == 200
        definition = {k: v for k, v in TRIAL.items() if k != "goal"}
        edited = await s.http.put(
            f"/v1/journeys/{trial}", json=definition | ({"goal": goal} if goal else {})
        )
        assert edited.status_code == 200, edited.text
        body: dict[str, Any] = edited.json()
        return body

    either = {"any": [PURCHASE, {"event": "upgrade", "min_count": 1}]}
    assert (await edit({"criteria": either, "target": {"count": 1}}))["goal_epoch"] == 1
    goal = (await s.metrics(trial))["goal"]
    assert (goal["epoch"], goal["conversions"], goal["target_met"]) == (1, 2, True)

    assert (await edit(None))["goal_epoch"] == 2
    assert (await s.metrics(trial))["goal"] is None
    assert (await edit({"criteria": PURCHASE, "target": {"count": 2}}))["goal_epoch"] == 2
    goal = (await s.metrics(trial))["goal"]
    assert (goal["epoch"], goal["enrolled"], goal["conversions"]) == (2, 0, 0)

    await s.activate(trial)
    await s.join("trial", "e_new")
    assert (await s.enroll(trial, "e_new")).status_code == 201
    await s.until(trial, {"e_new": ("running", "intro", None)})
    await s.event("e_new", "demo_requested")
    await s.until(trial, {"e_new": ("running", "engaged", None)})

    async def marketing_sent() -> None:
        sent = await s.pool.fetchval(
            "SELECT marketing_sent FROM enrollments WHERE contact_id = 'e_new'"
        )
        assert sent is True

    await eventually(marketing_sent)
    await s.event("e_new", "purchase")
    await s.until(trial, {"e_new": ("completed", "engaged", "goal_met")})
    m = await s.metrics(trial)
    assert m["enrolled"] == 9 and m["ended"]["goal_met"]["count"] == 3
    assert m["goal"] == {
        "epoch": 2,
        "enrolled": 1,
        "conversions": 1,
        "conversion_rate": 100.0,
        "target": {"count": 2},
        "target_met": False,
        "progress": 50.0,
        "conversions_needed": 1,
    }
    late = (await s.metrics(trial, since=mid.isoformat()))["goal"]
    assert (late["enrolled"], late["conversions"]) == (1, 1)
    early = (await s.metrics(trial, until=mid.isoformat()))["goal"]
    assert (early["enrolled"], early["conversions"]) == (0, 0)  # epoch 1's cohort
