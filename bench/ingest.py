"""4. Ingest: events POSTed to /v1/events in batches of 100, of a type the enrollments'
journey reads (so each is routed and signalled to its enrollment), versus raw signals sent
straight to the same number of bare workflows, as many at a time as the relay sends
(64). Two nurture rates: accepted (the POSTs answered 202) and delivered (every event
routed and signalled, the queues empty)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench.baseline import BARE_WAITER
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack
from bench.visibility import wait_settled

BATCH = 100
POSTS_AT_ONCE = 4
SIGNALS_AT_ONCE = 64
MONTH = 30 * 86400.0
PENDING = """
SELECT (SELECT count(*) FROM change_queue)
     + (SELECT count(*) FROM deliveries WHERE failed_at IS NULL)
"""


async def _nurture(
    stack: Stack, enrollments: list[tuple[str, str]], count: int
) -> tuple[float, float, float]:
    contacts = [contact for contact, _ in enrollments]
    events = [
        {"contact_id": contacts[i % len(contacts)], "type": "page_viewed", "target": f"/p/{i}"}
        for i in range(count)
    ]
    gate = asyncio.Semaphore(POSTS_AT_ONCE)

    async def post(batch: list[dict[str, Any]]) -> None:
        async with gate:
            response = await stack.http.post("/v1/events", json={"events": batch})
        response.raise_for_status()

    t0 = time.monotonic()
    await asyncio.gather(*(post(events[i : i + BATCH]) for i in range(0, count, BATCH)))
    accepted = time.monotonic() - t0
    deadline = time.monotonic() + 120 + count / 10
    while await stack.pool.fetchval(PENDING):
        if time.monotonic() > deadline:
            raise TimeoutError("the relay did not deliver every event")
        await asyncio.sleep(0.05)
    delivered = time.monotonic() - t0
    await wait_settled(stack.temporal, [w for _, w in enrollments], 120 + count / 10)
    return accepted, delivered, time.monotonic() - t0


async def _bare(stack: Stack, workflows: int, count: int) -> tuple[float, float]:
    tag = uuid.uuid4().hex[:8]
    handles = await asyncio.gather(
        *(
            stack.temporal.start_workflow(
                BARE_WAITER, MONTH, id=f"ingest-{tag}-{i}", task_queue=BASELINE_QUEUE
            )
            for i in range(workflows)
        )
    )
    gate = asyncio.Semaphore(SIGNALS_AT_ONCE)

    async def ping(i: int) -> None:
        async with gate:
            await handles[i % workflows].signal("ping", {"type": "page_viewed", "n": i})

    t0 = time.monotonic()
    await asyncio.gather(*(ping(i) for i in range(count)))
    seconds = time.monotonic() - t0
    await wait_settled(stack.temporal, [h.id for h in handles], 120 + count / 10)
    processed = time.monotonic() - t0
    await asyncio.gather(*(h.signal("stop") for h in handles))
    await asyncio.gather(*(h.result() for h in handles))  # closed before the next benchmark
    return seconds, processed


async def run(
    stack: Stack, enrollments: list[tuple[str, str]], count: int
) -> tuple[list[Figure], dict[str, Any]]:
    accepted, delivered, processed = await _nurture(stack, enrollments, count)
    bare, bare_processed = await _bare(stack, len(enrollments), count)
    figures = [
        Figure(
            "4. ingest",
            f"events accepted (batches of {BATCH})",
            count / accepted,
            "/s",
            baseline=count / bare,
            baseline_name="raw signals",
        ),
        Figure(
            "4. ingest",
            "events routed + signalled",
            count / delivered,
            "/s",
            baseline=count / bare,
            baseline_name="raw signals",
        ),
        Figure(
            "4. ingest",
            "events processed by the workflows",
            count / processed,
            "/s",
            baseline=count / bare_processed,
            baseline_name="raw signals processed",
        ),
    ]
    details = {
        "events": count,
        "workflows": len(enrollments),
        "accepted_seconds": accepted,
        "delivered_seconds": delivered,
        "processed_seconds": processed,
        "raw_signal_seconds": bare,
        "raw_signal_processed_seconds": bare_processed,
    }
    return figures, details
