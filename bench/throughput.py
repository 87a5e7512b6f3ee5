"""1. Enrollment throughput: N enrollments of the 3-action journey (send_message, a short
wait, go_to success) POSTed to the API, from the first request to the last workflow closed,
versus N bare workflows (one activity, one timer of the same length) started on the same
server, with the same concurrency, on a worker with the same settings."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench import journeys
from bench.baseline import BARE_JOURNEY, BareInput
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack
from bench.visibility import last_close, since, wait_for_count

CONCURRENCY = 32
WAIT_SECONDS = 1


async def _nurture(stack: Stack, count: int) -> tuple[float, float, list[str]]:
    definition = journeys.three_actions(f"PT{WAIT_SECONDS}S")
    journey_id = await journeys.create_active(stack.http, definition)
    contacts = stack.new_contacts(count, "tp")
    await journeys.create_contacts(stack.http, contacts)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    ids = await journeys.enroll_all(stack.api, journey_id, contacts, CONCURRENCY)
    posted = time.monotonic() - t0
    done = since("EnrollmentWorkflow", started, "Completed")
    await wait_for_count(stack.temporal, done, count, seconds=120 + count)
    elapsed = (await last_close(stack.temporal, done) - started).total_seconds()
    completed = await stack.pool.fetchval(
        "SELECT count(*) FROM enrollments WHERE journey_id = $1 AND status = 'completed'",
        journey_id,
    )
    if completed != count:
        raise RuntimeError(f"{completed} of {count} enrollment rows completed")
    return elapsed, posted, ids


async def _bare(stack: Stack, count: int) -> float:
    started = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await stack.temporal.start_workflow(
                BARE_JOURNEY,
                BareInput(activities=1, timers=1, timer_seconds=WAIT_SECONDS),
                id=f"bare-{tag}-{i}",
                task_queue=BASELINE_QUEUE,
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    done = since(BARE_JOURNEY, started, "Completed")
    await wait_for_count(stack.temporal, done, count, seconds=120 + count)
    return (await last_close(stack.temporal, done) - started).total_seconds()


async def run(stack: Stack, count: int) -> tuple[list[Figure], dict[str, Any]]:
    bare_seconds = await _bare(stack, count)
    nurture_seconds, posting, _ = await _nurture(stack, count)
    figure = Figure(
        "1. throughput",
        f"{count} enrollments, start → complete",
        count / nurture_seconds,
        "/s",
        baseline=count / bare_seconds,
        baseline_name="bare workflows",
        target=0.8,
    )
    details = {
        "count": count,
        "nurture_seconds": nurture_seconds,
        "bare_seconds": bare_seconds,
        "nurture_posting_seconds": posting,
        "wait_seconds": WAIT_SECONDS,
        "concurrency": CONCURRENCY,
    }
    return [figure], details
