"""Branches and splits on the time-skipping server: decisions of the workflow, recorded in
the log with why, counted in the stage's metrics and, for splits, in the experiment."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from typing import Any

import asyncpg
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartLocalActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from shared.enrollment import Outcome, Phase
from tests.helpers.enrollments import Enrollment, enroll, until_state, waiting
from tests.helpers.journeys import (
    branch,
    event,
    go_to,
    journey,
    path,
    send,
    split,
    stage,
    wait_for_event,
)
from workers.enrollment import EnrollmentWorkflow
from workers.worker import build_worker

ROUTE = branch(
    "by plan",
    path("enterprise", {"property": "plan", "op": "eq", "value": "enterprise"}, "sales"),
    path("vip", {"list": "vip"}, "concierge"),
    path("engaged", {"event": "page_viewed", "min_count": 2}),
)
ROUTED = journey(
    [
        stage("a", wait_for_event("ready", "P1D"), ROUTE, send("engaged"), go_to("success")),
        stage("sales", go_to("success")),
        stage("concierge", go_to("success")),
    ]
)


async def decision(enrollment: Enrollment, action: str) -> dict[str, Any]:
    [row] = [r for r in await enrollment.steps() if r["action"] == action]
    return {"result": row["result"], "stage": row["stage"], **row["detail"]}


async def test_a_branch_routes_by_property_list_and_event_count_with_the_explanation(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    contacts: dict[str, dict[str, Any]] = {
        "ent": {"properties": {"plan": "enterprise"}},
        "vip": {"lists": ["vip"]},
        "eng": {},
        "none": {},
    }
    async with build_worker(ts_env.client, pool, task_queue):
        started = {
            c: await enroll(
                ts_env.client, pool, task_queue, ROUTED, contact_id=c, journey_id=journey_id, **kw
            )
            for c, kw in contacts.items()
        }
        for c, enrollment in started.items():
            await until_state(enrollment, waiting)
            seq = enrollment.watermark
            if c == "eng":
                for n in (1, 2):
                    await enrollment.signal("contact_event", event(seq + n, "page_viewed"))
            await enrollment.signal("contact_event", event(seq + 3, "ready"))
        views = {c: await e.result() for c, e in started.items()}
    assert all(v.outcome is Outcome.SUCCESS for v in views.values())
    taken = {c: await decision(e, "branch") for c, e in started.items()}
    assert {c: d["result"] for c, d in taken.items()} == {
        "ent": "enterprise",
        "vip": "vip",
        "eng": "engaged",
        "none": "otherwise",
    }
    # the paths went where they say: a jump, or on with the stage's next action
    stages = {c: [r["stage"] for r in await e.steps()] for c, e in started.items()}
    assert "sales" in stages["ent"] and "concierge" in stages["vip"]
    assert [r["template"] for r in await started["eng"].outbox_payloads()] == ["engaged"]
    assert [r["template"] for r in await started["none"].outbox_payloads()] == ["engaged"]
    assert await started["ent"].outbox() == []
    # why: every path tried, each explained leaf by leaf
    eng = taken["eng"]
    assert [t["path"] for t in eng["tried"]] == ["enterprise", "vip", "engaged"]
    assert [t["explanation"]["result"] for t in eng["tried"]] == [False, False, True]
    leaf = eng["tried"][2]["explanation"]["leaves"][0]
    assert leaf["leaf"] == {"event": "page_viewed", "min_count": 2} and leaf["result"] is True
    assert eng["go_to"] is None and taken["ent"]["go_to"] == "sales"
    # each path is a node of the stage's metrics
    paths = await started["ent"].stage_paths()
    for name in ("enterprise", "vip", "engaged", "otherwise"):
        assert paths[("a", f"branch:by plan/{name}")] == 1


async def test_a_holdout_gets_nothing_and_its_later_goal_counts_only_in_the_experiment(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "purchase"}, "attribution_window": "P2D"}
    all_holdout = split("welcome test", ("A", 0, None), holdout=("control", 100))
    j = journey(
        [stage("a", send("welcome"), all_holdout, send("second"), go_to("success"))], goal=goal
    )
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, contact_id="held")
        view = await until_state(enrollment, lambda v: v.phase is Phase.IN_ATTRIBUTION_WINDOW)
        assert view.outcome is Outcome.HOLDOUT and view.marketing_sent is True
        await enrollment.signal("contact_event", event(enrollment.watermark + 1, "purchase"))
        view = await enrollment.result()
    # nothing after the split: only the welcome that came before it
    assert [r["template"] for r in await enrollment.outbox_payloads()] == ["welcome"]
    assert ("goal_met", "after_end") in await enrollment.actions()
    row = await pool.fetchrow(
        "SELECT * FROM experiment_assignments WHERE workflow_id = $1", enrollment.workflow_id
    )
    assert (row["variant"], row["holdout"], row["counted"]) == ("control", True, False)
    assert row["converted_at"] is not None
    headline = await pool.fetchval(
        "SELECT count(*) FROM conversions WHERE journey_id = $1", enrollment.journey_id
    )
    assert headline == 0
    paths = await enrollment.stage_paths()
    assert paths[("a", "split:welcome test/control")] == 1
    assert paths[("a", "exit:holdout")] == 1


async def test_a_variant_that_meets_the_goal_counts_in_both_figures(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    goal = {"criteria": {"event": "purchase"}, "attribution_window": "P2D"}
    all_a = split("welcome test", ("A", 100, None), holdout=("control", 0))
    j = journey([stage("a", send("welcome"), all_a, wait_for_event("x", "P1D"))], goal=goal)
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(ts_env.client, pool, task_queue, j, contact_id="tested")
        await until_state(enrollment, waiting)
        await enrollment.signal("contact_event", event(enrollment.watermark + 1, "purchase"))
        view = await enrollment.result()
    assert view.outcome is Outcome.GOAL_MET
    row = await pool.fetchrow(
        "SELECT * FROM experiment_assignments WHERE workflow_id = $1", enrollment.workflow_id
    )
    assert (row["variant"], row["counted"]) == ("A", True) and row["converted_at"] is not None
    stats = await pool.fetch(
        "SELECT variant, entered, converted, counted FROM experiment_stats WHERE journey_id = $1",
        enrollment.journey_id,
    )
    assert [tuple(r) for r in stats] == [("A", 1, 1, 1)]


class _Captured(WorkflowOutboundInterceptor):
    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        REPLAYED.extend(input.args)
        return super().start_local_activity(input)


class _Capturing(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Captured(outbound))


class _Capture(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Capturing


REPLAYED: list[Any] = []
"""What the replayed workflow handed its local activities (the log records it wrote)."""

SPLIT = journey(
    [
        stage(
            "a",
            split("welcome test", ("A", 45, "success"), ("B", 45, "failure:churned"),
                  holdout=("control", 10)),
        )
    ]
)  # fmt: skip


async def test_a_split_of_1000_enrollments_lands_on_its_percentages_and_replays_to_its_variant(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    gate = asyncio.Semaphore(50)

    async def one(n: int) -> Enrollment:
        async with gate:
            started = await enroll(
                ts_env.client, pool, task_queue, SPLIT, contact_id=f"c{n}", journey_id=journey_id
            )
            await started.result()
            return started

    # no timer to skip to: with skipping on, a thousand results awaited at once let the
    # server skip ahead past the workflows' own task timeouts
    with ts_env.auto_time_skipping_disabled():
        async with build_worker(ts_env.client, pool, task_queue):
            done = await asyncio.gather(*(one(n) for n in range(1000)))
    rows = await pool.fetch(
        "SELECT workflow_id, variant FROM experiment_assignments WHERE journey_id = $1",
        journey_id,
    )
    drawn = {r["workflow_id"]: r["variant"] for r in rows}
    counts = Counter(drawn.values())
    assert sum(counts.values()) == 1000
    # within 4.5 standard deviations of n·p (each fails less than 1 in 100,000 runs)
    for variant, share in (("A", 0.45), ("B", 0.45), ("control", 0.10)):
        sd = math.sqrt(1000 * share * (1 - share))
        assert abs(counts[variant] - 1000 * share) < 4.5 * sd, counts
    # each went where its variant says
    outcomes = Counter(
        r["outcome"]
        for r in await pool.fetch(
            "SELECT outcome FROM enrollments WHERE journey_id = $1", journey_id
        )
    )
    assert outcomes == {
        "success": counts["A"],
        "failure": counts["B"],
        "holdout": counts["control"],
    }
    # replaying a recorded history draws the same variant again, for every variant
    replayer = Replayer(
        workflows=[EnrollmentWorkflow],
        data_converter=pydantic_data_converter,
        interceptors=[_Capture()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    for variant in ("A", "B", "control"):
        enrollment = next(e for e in done if drawn[e.workflow_id] == variant)
        REPLAYED.clear()
        await replayer.replay_workflow(await enrollment.handle.fetch_history())
        records = [r for request in REPLAYED for r in request.pending if r.action == "split"]
        assert [r.result for r in records] == [variant]
