"""The worker: runs EnrollmentWorkflow and the journey activities on the task queue, and
the journey's batches (activation, bulk unenroll) on their own queue next to it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from types import TracebackType
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from services.sender import Sender, SenderOptions
from services.temporal import connect
from shared.activation import batch_task_queue
from shared.settings import Settings
from store.db import create_pool
from workers.activation import ActivationWorkflow, UnenrollWorkflow
from workers.activities import JourneyActivities
from workers.batch_activities import BatchActivities
from workers.enrollment import EnrollmentWorkflow
from workers.sandbox import JourneySandbox

log = logging.getLogger(__name__)


class JourneyWorker:
    """The Temporal workers of one `nurture worker`, run together (`async with`): the
    enrollments' on the task queue, the batches' on `batch_task_queue`. A batch's next page
    then never waits behind the hundreds of enrollment tasks its last page created."""

    def __init__(self, enrollments: Worker, batches: Worker, sender: Sender | None = None) -> None:
        self.enrollments = enrollments
        self.batches = batches
        self.sender = sender
        self._running = AsyncExitStack()

    async def __aenter__(self) -> JourneyWorker:
        async with AsyncExitStack() as starting:
            if self.sender is not None:
                # first in, last out: the activities waiting for it finish first
                await starting.enter_async_context(self.sender.running())
            await starting.enter_async_context(self.enrollments)
            await starting.enter_async_context(self.batches)
            self._running = starting.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._running.__aexit__(exc_type, exc, tb)


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    settings: Settings | None = None,
    sender: bool = False,
    **options: Any,
) -> JourneyWorker:
    """The workers for the enrollment workflow and its activities, and for the batches.
    They take the client's data converter (pydantic). `settings` configure the channels
    (SMTP; None: from the environment). `sender` also runs a sender on `pool` in this
    process (tests and single-process setups; `nurture worker` never does, so that killing
    it cannot cut a message's hand-over short). `options` pass through to both `Worker`s
    (tests use them to swap the enrollments' activities or tune concurrency)."""
    journey = JourneyActivities(pool, settings)
    batches = BatchActivities(pool)
    batch_activities: list[Callable[..., Any]] = [
        batches.activation_page,
        batches.unenroll_page,
        batches.finish_batch,
    ]
    batch_workflows = [ActivationWorkflow, UnenrollWorkflow]
    activities = options.pop(
        "activities",
        [
            journey.send_message,
            journey.create_task,
            journey.set_property,
            journey.send_notification,
            journey.record_steps,
            # batches started on the task queue itself, before the batches had their own
            *batch_activities,
        ],
    )
    workflows = options.pop("workflows", [EnrollmentWorkflow, *batch_workflows])
    options.setdefault("workflow_runner", JourneySandbox())
    return JourneyWorker(
        Worker(
            client, task_queue=task_queue, workflows=workflows, activities=activities, **options
        ),
        Worker(
            client,
            task_queue=batch_task_queue(task_queue),
            workflows=batch_workflows,
            activities=batch_activities,
            **options,
        ),
        Sender(pool, settings or Settings(), SenderOptions(concurrency=4)) if sender else None,
    )


async def run_worker(settings: Settings, client: Client | None = None) -> None:
    """Runs until SIGINT/SIGTERM, then shuts down gracefully: running activities get
    their graceful timeout, workflow tasks finish, the pool closes."""
    client = client or await connect(settings)
    pool = await create_pool(
        settings.require_database_url(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = build_worker(
        client,
        pool,
        settings.task_queue,
        settings,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_seconds),
    )
    try:
        async with worker:
            log.info("worker on task queue %r", settings.task_queue)
            await stop.wait()
            log.info("stopping the worker")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await pool.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(Settings()))
