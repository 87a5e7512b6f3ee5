"""Fair sharing: how long one workspace's event takes while another floods the relay.

Workspace `default` has `size` enrollments waiting a month and posts 10 page views to each
at once (batches of 100, four at a time, as the ingest benchmark does); workspace `quiet`
has two enrollments of its own waiting for a purchase. The quiet workspace's purchase is
posted once with nothing else queued (unloaded) and once right after the flood's first
batch is accepted (under the flood), one after another while the flood lasts (8 each). The
figure is the time from its POST to its enrollment closed `goal_met` (median and worst),
split at the signal's arrival in the history (API + relay before it, the workflow task
queue and the worker after it); the flood's own delivery time is reported beside it.

`python -m bench.fairness [size]` prints the figures as JSON (default 200 enrollments,
2,000 events); `run(size)` is the entry `python -m bench` collects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType

from bench import journeys
from bench.api_client import Api
from bench.stack import Stack, running_stack
from bench.visibility import wait_settled
from store.api_keys import create_key

SAMPLES = 8
EVENTS_PER_ENROLLMENT = 10
BATCH = 100
POSTS_AT_ONCE = 4
PENDING = """
SELECT (SELECT count(*) FROM change_queue)
     + (SELECT count(*) FROM deliveries WHERE failed_at IS NULL)
"""
STATUS = "SELECT status, outcome FROM enrollments WHERE workflow_id = $1"


async def _enrolled(
    http: httpx.AsyncClient, api: Api, stack: Stack, count: int, prefix: str
) -> list[str]:
    journey_id = await journeys.create_active(http, journeys.waiting(first_send=False))
    contacts = stack.new_contacts(count, prefix)
    await journeys.create_contacts(http, contacts)
    ids = await journeys.enroll_all(api, journey_id, contacts)
    await wait_settled(stack.temporal, ids, 60 + count)
    return ids


async def _purchase(stack: Stack, http: httpx.AsyncClient, workflow_id: str) -> dict[str, float]:
    """POSTs the contact's purchase; seconds until its enrollment closed `goal_met`, split
    at the signal's arrival in the history (API + relay before, worker + server after)."""
    contact = workflow_id.rsplit("/", 1)[1]
    t0 = time.monotonic()
    posted_at = datetime.now(UTC)
    posted = await http.post("/v1/events", json={"contact_id": contact, "type": "purchase"})
    posted.raise_for_status()
    while True:
        row = await stack.pool.fetchrow(STATUS, workflow_id)
        if row is not None and row["status"] != "running":
            if row["outcome"] != "goal_met":
                raise RuntimeError(f"{workflow_id} ended {row['outcome']}, not goal_met")
            total = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 600:
            raise TimeoutError(f"{workflow_id} did not meet its goal")
        await asyncio.sleep(0.01)
    history = await stack.temporal.get_workflow_handle(workflow_id).fetch_history()
    signalled = next(
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    to_signal = (signalled - posted_at).total_seconds()
    return {"total": total, "to_signal": to_signal, "after_signal": total - to_signal}


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    return {
        f"{part}_{stat}": round(fn([s[part] for s in samples]), 3)
        for part in ("total", "to_signal", "after_signal")
        for stat, fn in (("p50", statistics.median), ("max", max))
    }


async def measure(stack: Stack, size: int) -> dict[str, Any]:
    quiet_key = await create_key(stack.pool, "quiet")
    async with (
        httpx.AsyncClient(
            base_url=stack.api_url, timeout=120, headers={"Authorization": f"Bearer {quiet_key}"}
        ) as quiet,
        Api.open(stack.api_url, quiet_key) as quiet_api,
    ):
        flood_ids = await _enrolled(stack.http, stack.api, stack, size, "flood")
        quiet_ids = await _enrolled(quiet, quiet_api, stack, 2 * SAMPLES, "quiet")
        unloaded = [await _purchase(stack, quiet, w) for w in quiet_ids[:SAMPLES]]

        contacts = [w.rsplit("/", 1)[1] for w in flood_ids]
        events = [
            {"contact_id": contacts[i % len(contacts)], "type": "page_viewed", "target": f"/{i}"}
            for i in range(size * EVENTS_PER_ENROLLMENT)
        ]
        batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        gate = asyncio.Semaphore(POSTS_AT_ONCE)
        first_accepted = asyncio.Event()

        async def post(batch: list[dict[str, Any]]) -> None:
            async with gate:
                response = await stack.http.post("/v1/events", json={"events": batch})
            response.raise_for_status()
            first_accepted.set()

        t0 = time.monotonic()
        flood = asyncio.gather(*(post(b) for b in batches))
        await first_accepted.wait()
        under_flood = []
        for workflow_id in quiet_ids[SAMPLES:]:  # one after another while the flood lasts
            under_flood.append(await _purchase(stack, quiet, workflow_id))
            if await stack.pool.fetchval(PENDING) == 0:
                break
        await flood
        deadline = time.monotonic() + 600
        while await stack.pool.fetchval(PENDING):
            if time.monotonic() > deadline:
                raise TimeoutError("the relay did not deliver the flood")
            await asyncio.sleep(0.05)
        flood_delivered = time.monotonic() - t0
    loaded = _summary(under_flood)
    return {
        "name": "fairness",
        "flood_events": len(events),
        "flood_enrollments": size,
        "flood_delivered_s": round(flood_delivered, 2),
        "quiet_unloaded": _summary(unloaded),
        "quiet_under_flood": loaded,
        "quiet_samples_under_flood": len(under_flood),
        "quiet_p50_share_of_flood": round(loaded["total_p50"] / flood_delivered, 3),
    }


async def run(size: int) -> dict[str, Any]:
    async with running_stack() as stack:
        return await measure(stack, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", type=int, default=200)
    print(json.dumps(asyncio.run(run(parser.parse_args().size)), indent=2))


if __name__ == "__main__":
    main()
