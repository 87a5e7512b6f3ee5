"""Reading what happened from workflow histories: how often work was redone or failed."""

from __future__ import annotations

import asyncio
from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

COUNTED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow_task_timeouts",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow_task_failures",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_timeouts",
}


async def _count(client: Client, workflow_id: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        name = COUNTED.get(event.event_type)
        if name:
            counts[name] += 1
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            counts["activity_retries"] += event.activity_task_started_event_attributes.attempt - 1
    return counts


async def interrupted(client: Client, workflow_ids: list[str]) -> dict[str, int]:
    """Totals over the workflows (the latest run of each): workflow tasks that timed out or
    failed, activities that timed out, and activity attempts beyond the first."""
    total: Counter[str] = Counter({name: 0 for name in [*COUNTED.values(), "activity_retries"]})
    for start in range(0, len(workflow_ids), 50):
        for counts in await asyncio.gather(
            *(_count(client, w) for w in workflow_ids[start : start + 50])
        ):
            total.update(counts)
    return dict(total)
