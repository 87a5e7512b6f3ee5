"""Reading runs back from Temporal the same way for nurture and for the baseline: counts
and close times from visibility, and histories."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus


def since(workflow_type: str, started_after: datetime, status: str | None = None) -> str:
    query = f"WorkflowType = '{workflow_type}' AND StartTime >= '{started_after.isoformat()}'"
    if status:
        query += f" AND ExecutionStatus = '{status}'"
    return query


async def wait_for_count(client: Client, query: str, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        found = (await client.count_workflows(query)).count
        if found >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} of {count} workflows matched {query!r} in {seconds}s")
        await asyncio.sleep(0.1)


async def last_close(client: Client, query: str) -> datetime:
    latest: datetime | None = None
    async for execution in client.list_workflows(query, page_size=1000):
        if execution.status != WorkflowExecutionStatus.COMPLETED or execution.close_time is None:
            raise RuntimeError(f"{execution.id} did not complete: {execution.status}")
        if latest is None or execution.close_time > latest:
            latest = execution.close_time
    if latest is None:
        raise RuntimeError(f"no workflow matched {query!r}")
    return latest


async def history_length(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def wait_settled(client: Client, workflow_ids: list[str], seconds: float) -> None:
    """Until none of the workflows has a workflow task pending: every signal it was sent
    has been processed by the worker."""
    gate = asyncio.Semaphore(32)

    async def pending(workflow_id: str) -> bool:
        async with gate:
            described = await client.get_workflow_handle(workflow_id).describe()
        return described.raw_description.HasField("pending_workflow_task")

    deadline = time.monotonic() + seconds
    waiting = list(workflow_ids)
    while waiting:
        busy = await asyncio.gather(*(pending(w) for w in waiting))
        waiting = [w for w, b in zip(waiting, busy, strict=True) if b]
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} workflows still had work after {seconds:.0f}s")
        if waiting:
            await asyncio.sleep(0.5)  # describing is work for the server too
