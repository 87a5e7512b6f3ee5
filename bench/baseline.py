"""The bare-Temporal baseline: the least a workflow needs to do what a journey does, with
no database, no routing and no bookkeeping. Run as its own worker process
(`python -m bench.baseline ADDRESS TASK_QUEUE`) with the Worker's default settings, like
`nurture worker`, on the same server.

- `BareJourney`: `activities` activities that do nothing, then `timers` timers, in turn
  (the 3-action journey is one activity, one timer, and the end).
- `BareWaiter`: waits on a long timer; counts `ping` signals; a `stop` signal ends it. A
  `leave` signal ends it as an enrollment's exit must end (docs/design.md, "Exits"): the outcome as
  a search attribute, then a write in a local activity (here a no-op) before it closes. It
  measures what that contract costs in Temporal and its SDK alone, before nurture's code.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.worker import Worker

BARE_JOURNEY = "BareJourney"
BARE_WAITER = "BareWaiter"
OUTCOME = SearchAttributeKey.for_keyword("EnrollmentOutcome")


@dataclass
class BareInput:
    activities: int = 1
    timers: int = 1
    timer_seconds: float = 1.0


@activity.defn(name="bare_step")
async def bare_step(step: int) -> int:
    return step


@workflow.defn(name=BARE_JOURNEY)
class BareJourney:
    @workflow.run
    async def run(self, input: BareInput) -> int:
        for step in range(max(input.activities, input.timers)):
            if step < input.activities:
                await workflow.execute_activity(
                    bare_step, step, start_to_close_timeout=timedelta(minutes=2)
                )
            if step < input.timers:
                await asyncio.sleep(input.timer_seconds)
        return input.activities + input.timers


@workflow.defn(name=BARE_WAITER)
class BareWaiter:
    def __init__(self) -> None:
        self.pings = 0
        self.stopped = False
        self.leaving = False

    @workflow.run
    async def run(self, wait_seconds: float) -> int:
        try:
            await workflow.wait_condition(lambda: self.stopped, timeout=wait_seconds)
        except TimeoutError:
            pass
        if self.leaving:
            workflow.upsert_search_attributes([OUTCOME.value_set("goal_met")])
            await workflow.execute_local_activity(
                bare_step, self.pings, start_to_close_timeout=timedelta(seconds=30)
            )
        return self.pings

    @workflow.signal
    def ping(self, payload: dict[str, Any]) -> None:
        self.pings += 1

    @workflow.signal
    def stop(self) -> None:
        self.stopped = True

    @workflow.signal
    def leave(self) -> None:
        self.stopped = self.leaving = True


def build_baseline_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareJourney, BareWaiter],
        activities=[bare_step],
    )


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    async with build_baseline_worker(client, task_queue):
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        from cli.main import run_loop  # the loop `nurture worker` runs on: same settings

        run_loop(main(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:
        pass
