"""5. Worker memory: RSS of the worker process as more and more enrollments wait on timers.
The Temporal worker keeps a bounded cache of workflows (1,000 by default), so past that
the RSS should stay flat. The baseline is the bare worker process with the same number of
bare workflows waiting on a timer."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psutil

from bench import journeys
from bench.baseline import BARE_WAITER
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack

CONCURRENCY = 64
MONTH = 30 * 86400.0
ENTERED = "SELECT coalesce(sum(entered), 0) FROM stage_stats WHERE journey_id = $1"


def steps(largest: int) -> list[int]:
    """The counts at which RSS is read: a quarter, half and all of `largest` (and 0)."""
    return sorted({0, largest // 10, largest // 4, largest // 2, largest})


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def _until(check: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds:.0f}s")
        await asyncio.sleep(0.25)


async def _nurture(stack: Stack, counts: list[int]) -> tuple[list[float], float]:
    journey_id = await journeys.create_active(stack.http, journeys.waiting(first_send=False))
    contacts = stack.new_contacts(counts[-1], "mem")
    await journeys.create_contacts(stack.http, contacts)
    readings, done = [], 0
    t0 = time.monotonic()
    for count in counts:
        await journeys.enroll_all(stack.api, journey_id, contacts[done:count], CONCURRENCY)
        done = count

        async def waiting(count: int = count) -> bool:
            return bool(await stack.pool.fetchval(ENTERED, journey_id) >= count)

        await _until(waiting, f"{count} enrollments were not all waiting", 120 + count / 10)
        readings.append(rss_mb(stack.worker.pid))
    return readings, counts[-1] / (time.monotonic() - t0)


async def _bare(stack: Stack, counts: list[int]) -> list[float]:
    tag = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await stack.temporal.start_workflow(
                BARE_WAITER, MONTH, id=f"waiter-{tag}-{i}", task_queue=BASELINE_QUEUE
            )

    readings, done = [], 0
    for count in counts:
        await asyncio.gather(*(one(i) for i in range(done, count)))
        done = count

        async def waiting(count: int = count) -> bool:
            query = (
                f"WorkflowType = '{BARE_WAITER}' AND WorkflowId STARTS_WITH 'waiter-{tag}-'"
                " AND ExecutionStatus = 'Running'"
            )
            described = await stack.temporal.count_workflows(query)
            return described.count >= count

        await _until(waiting, f"{count} bare waiters were not all running", 120 + count / 10)
        readings.append(rss_mb(stack.baseline_worker.pid))
    return readings


async def run(stack: Stack, largest: int) -> tuple[list[Figure], dict[str, Any]]:
    counts = steps(largest)
    nurture, rate = await _nurture(stack, counts)
    bare = await _bare(stack, counts)
    figures = [
        Figure(
            "5. memory",
            f"worker RSS, {count:,} waiting",
            mb,
            "MiB",
            baseline=base,
            baseline_name="bare worker",
        )
        for count, mb, base in zip(counts, nurture, bare, strict=True)
    ]
    half = counts.index(largest // 2)
    growth = nurture[-1] - nurture[half]
    bare_growth = bare[-1] - bare[half]
    figures.append(
        Figure(
            "5. memory",
            f"RSS growth {largest // 2:,} → {largest:,}",
            growth,
            "MiB",
            baseline=bare_growth if bare_growth > 0 else None,
            baseline_name="bare worker",
            note="flat = cache bounded",
        )
    )
    details = {
        "counts": counts,
        "nurture_rss_mib": nurture,
        "bare_rss_mib": bare,
        "enrollments_per_second_while_filling": rate,
    }
    return figures, details
