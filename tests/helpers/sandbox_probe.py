"""Workflows that probe the worker's sandbox (tests/workers/test_sandbox.py). Kept apart,
with few imports, because the sandbox re-imports this module for every run."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity, workflow

RUNS: list[str] = []
"""Appended to by every run: a module executed afresh for each run holds one entry."""


@activity.defn(name="probe_echo")
async def echo(value: str) -> str:
    return value


@workflow.defn(name="ContextProbe")
class ContextProbe:
    """An activity, a local activity and a timer: payloads in every kind of command."""

    @workflow.run
    async def run(self, value: str) -> str:
        RUNS.append(value)
        echoed = await workflow.execute_activity(
            echo, value, start_to_close_timeout=timedelta(seconds=30)
        )
        await workflow.sleep(timedelta(milliseconds=10))
        again = await workflow.execute_local_activity(
            echo, echoed, start_to_close_timeout=timedelta(seconds=30)
        )
        return f"{again}:{len(RUNS)}"


@workflow.defn(name="ClockProbe")
class ClockProbe:
    """Reads the wall clock, which workflow code must not."""

    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()
