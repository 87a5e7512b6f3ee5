"""3. Event → exit latency: enrollments wait a month for a purchase (the goal); purchases
are POSTed at a steady 50 events/s, one per enrollment. Latency is from POST /v1/events
returning to the workflow closed with `goal_met` and its enrollment row (what the metrics
read) saying so. The baseline is a bare workflow waiting on a timer that a signal ends,
signalled at the same rate.

Each nurture run's history says when the signal arrived, which splits the latency into
the API + relay part (POST returned → signal in the history) and the worker + server part
(signal → workflow closed)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench import journeys
from bench.baseline import BARE_WAITER
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack
from bench.visibility import wait_settled

RATE = 50.0
MONTH = 30 * 86400.0
ROW = "SELECT status, outcome FROM enrollments WHERE workflow_id = $1"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


async def paced(count: int, one: Any, rate: float = RATE) -> list[Any]:
    """Starts `one(i)` at a steady `rate` per second, whatever each takes."""
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    return list(await asyncio.gather(*tasks))


async def _row_says_goal_met(stack: Stack, workflow_id: str) -> None:
    while True:
        row = await stack.pool.fetchrow(ROW, workflow_id)
        if row is not None and row["status"] == "completed":
            if row["outcome"] != "goal_met":
                raise RuntimeError(f"{workflow_id} ended {row['outcome']}, not goal_met")
            return
        await asyncio.sleep(0.005)


async def prepare(stack: Stack, count: int) -> tuple[list[Figure], dict[str, Any]]:
    """`count` enrollments waiting for a purchase: (contact, workflow id) pairs in
    `enrollments`."""
    journey_id = await journeys.create_active(stack.http, journeys.waiting())
    contacts = stack.new_contacts(count, "lat")
    await journeys.create_contacts(stack.http, contacts)
    ids = await journeys.enroll_all(stack.api, journey_id, contacts)
    deadline = time.monotonic() + 60 + count
    query = "SELECT count(*) FROM enrollments WHERE journey_id = $1 AND marketing_sent"
    while await stack.pool.fetchval(query, journey_id) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("enrollments did not reach their wait")
        await asyncio.sleep(0.25)
    await wait_settled(stack.temporal, ids, 60 + count)
    return [], {"enrollments": list(zip(contacts, ids, strict=True))}


async def _nurture(stack: Stack, enrollments: list[tuple[str, str]]) -> dict[str, list[float]]:
    posted_at: dict[str, datetime] = {}

    async def one(i: int) -> float:
        contact, workflow_id = enrollments[i]
        response = await stack.api.post("/v1/events", {"contact_id": contact, "type": "purchase"})
        response.raise_for_status()
        t0 = time.monotonic()
        posted_at[workflow_id] = datetime.now(UTC)
        await stack.temporal.get_workflow_handle(workflow_id).result()
        await _row_says_goal_met(stack, workflow_id)
        return (time.monotonic() - t0) * 1000

    total = await paced(len(enrollments), one)
    parts: dict[str, list[float]] = {"total": total}
    for _, workflow_id in enrollments[:: max(1, len(enrollments) // 100)]:
        history = await stack.temporal.get_workflow_handle(workflow_id).fetch_history()
        for part, ms in _parts(history.events, posted_at[workflow_id]).items():
            parts.setdefault(part, []).append(ms)
    return parts


def _parts(events: Any, posted: datetime) -> dict[str, float]:
    """Splits one exit into: POST returned → signal in the history (API + relay); signal →
    its workflow task started (waiting for the worker); task started → completed (the
    worker's work, with the local activity that writes the read models); completed →
    closed (the server)."""
    # the last signal is the purchase (the ingest run's page views came before it)
    signal = max(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    after = events[signal:]

    def first(kind: int) -> datetime:
        return next(e.event_time.ToDatetime(UTC) for e in after if e.event_type == kind)

    marks = [
        posted,
        first(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        first(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        first(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        events[-1].event_time.ToDatetime(UTC),
    ]
    names = ("post_to_signal", "signal_to_task_started", "task_started_to_completed", "to_closed")
    return {
        name: (b - a).total_seconds() * 1000
        for name, a, b in zip(names, marks, marks[1:], strict=False)
    }


async def _bare(stack: Stack, count: int) -> list[float]:
    tag = uuid.uuid4().hex[:8]
    handles = await asyncio.gather(
        *(
            stack.temporal.start_workflow(
                BARE_WAITER, MONTH, id=f"latency-{tag}-{i}", task_queue=BASELINE_QUEUE
            )
            for i in range(count)
        )
    )
    await wait_settled(stack.temporal, [h.id for h in handles], 60 + count)

    async def one(i: int) -> float:
        await handles[i].signal("stop")
        t0 = time.monotonic()
        await handles[i].result()
        return (time.monotonic() - t0) * 1000

    return await paced(count, one)


async def run(
    stack: Stack, enrollments: list[tuple[str, str]]
) -> tuple[list[Figure], dict[str, Any]]:
    nurture = await _nurture(stack, enrollments)
    bare = await _bare(stack, len(enrollments))
    figures = [
        Figure(
            "3. event → exit",
            f"p{p} at {RATE:g} events/s",
            percentile(nurture["total"], p),
            "ms",
            baseline=percentile(bare, p),
            baseline_name="bare signal → close",
            target=target,
            on="value",
            at_least=False,
        )
        for p, target in ((50, 100.0), (99, 250.0))
    ]
    details = {
        "events": len(enrollments),
        "rate": RATE,
        "nurture_ms": {
            part: {
                "p50": percentile(values, 50),
                "p99": percentile(values, 99),
                "mean": statistics.fmean(values),
            }
            for part, values in nurture.items()
        },
        "bare_ms": {"p50": percentile(bare, 50), "p99": percentile(bare, 99)},
    }
    return figures, details
