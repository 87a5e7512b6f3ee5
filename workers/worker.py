"""The worker: runs EnrollmentWorkflow and the journey activities on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from shared.db import create_pool
from shared.settings import Settings
from shared.temporal import connect
from workers.activation import ActivationWorkflow, UnenrollWorkflow
from workers.activities import JourneyActivities
from workers.batch_activities import BatchActivities
from workers.enrollment import EnrollmentWorkflow

log = logging.getLogger(__name__)


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    settings: Settings | None = None,
    **options: Any,
) -> Worker:
    """A worker for the enrollment workflow and its activities. The Worker takes the
    client's data converter (pydantic). `settings` configure the channels (SMTP; None:
    from the environment). `options` pass through to `Worker` (tests use them to swap
    activities or tune concurrency)."""
    journey = JourneyActivities(pool, settings)
    batches = BatchActivities(pool)
    activities = options.pop(
        "activities",
        [
            journey.send_message,
            journey.create_task,
            journey.set_property,
            journey.send_notification,
            journey.record_steps,
            batches.activation_page,
            batches.unenroll_page,
            batches.finish_batch,
        ],
    )
    workflows = options.pop("workflows", [EnrollmentWorkflow, ActivationWorkflow, UnenrollWorkflow])
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        **options,
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
