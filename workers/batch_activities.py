"""The batches' I/O: one page of an activation (enroll the next eligible contacts) or of
a bulk unenroll (signal the next running enrollments), a chunk at a time.

Every chunk commits its progress (counters and cursor) in `journey_batches`, so a retried
page resumes after the last chunk that committed, and what a crashed attempt did inside
its last chunk is recognised rather than repeated: an enrollment row created since the
batch began counts as started, a refusal recorded since then counts as that refusal. A
chunk runs to its end even when the activity is cancelled (worker shutdown), so no
enrollment row is left without its workflow by a clean stop.

An activation chunk holds a share lock on the journey row while it enrolls: deactivating
(or deleting) waits for the chunk in flight, and once it has committed no activation
starts another enrollment.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from services.audience import count_eligible, eligible_page
from services.enrolling import enroll_many
from shared.activation import (
    ACTIVATION_PAGE,
    CHUNK_SIZE,
    FINISH_BATCH,
    UNENROLL_PAGE,
    BatchInput,
    BatchProgress,
    BatchStatus,
)
from shared.enrollment import Unenroll
from shared.entry import Enrolled, JourneyRecord
from shared.settings import Settings
from store import batches as batches_store
from store import enrollments as enrollments_store
from store import journeys as journeys_store

T = TypeVar("T")
U = TypeVar("U")


WORKER_SHUTDOWN = "WorkerShutdown"
RECORD_WAIT_SECONDS = 60.0


def _progress(row: asyncpg.Record | None) -> BatchProgress:
    assert row is not None, "the batch row exists (it is never deleted)"
    return BatchProgress(
        status=BatchStatus(row["status"]),
        total=row["total"],
        processed=row["processed"],
        done=row["done"],
        skipped=row["skipped"],
        cursor=row["cursor"],
        stop_reason=row["stop_reason"],
    )


def _key(input: BatchInput) -> tuple[str, str, int]:
    return (input.workspace, input.journey_id, input.batch)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _bounded(concurrency: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Runs the jobs, at most `concurrency` at a time; every job ends before an error is
    raised (none is left running half-way)."""
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    results = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def _to_the_end(work: Awaitable[T]) -> T:
    """Awaits `work` even if this task is cancelled meanwhile (then re-raises the cancel):
    a chunk in flight finishes and commits its progress."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class BatchActivities:
    """Activities of the activation and unenroll batches; they start and signal
    enrollment workflows with the worker's own client (`activity.client()`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- activation -------------------------------------------------------------------

    @activity.defn(name=ACTIVATION_PAGE)
    async def activation_page(self, input: BatchInput) -> BatchProgress:
        """Enrolls the next page of eligible contacts, chunk by chunk, within the rate."""
        async with _heartbeats(input):
            return await _resumable(self._activation_page(input))

    async def _activation_page(self, input: BatchInput) -> BatchProgress:
        row = await self._recorded(input)
        if row is None:  # the activation's transaction never committed
            return BatchProgress(status=BatchStatus.STOPPED, stop_reason="not_recorded")
        progress = _progress(row)
        if progress.finished:
            return progress
        journey_row = await journeys_store.journey(self.pool, input.workspace, input.journey_id)
        if (reason := _why_stop(journey_row, input)) is not None:
            return await self._finish(input, BatchStatus.STOPPED, reason)
        assert journey_row is not None
        try:
            record = JourneyRecord.from_row(input.workspace, journey_row)
        except ValidationError:
            return await self._finish(input, BatchStatus.STOPPED, "journey_invalid")
        if progress.total is None:
            total = await count_eligible(self.pool, input.workspace, record.journey)
            await batches_store.set_total(self.pool, _key(input), total)
            progress.total = total
        ids = await eligible_page(
            self.pool, input.workspace, record.journey, progress.cursor, input.page_size
        )
        settings = Settings(task_queue=input.task_queue, max_stage_entries=input.max_stage_entries)
        # a retried page checks that what the attempt before it started really runs
        retried = activity.info().attempt > 1

        def chunk_of(chunk: Sequence[str], first: bool) -> Awaitable[tuple[BatchProgress, int]]:
            since, verify = row["started_at"], retried and first
            return self._activation_chunk(input, record, settings, chunk, since, verify)

        return await self._page(input, progress, ids, chunk_of)

    async def _activation_chunk(
        self,
        input: BatchInput,
        record: JourneyRecord,
        settings: Settings,
        chunk: Sequence[str],
        since: datetime,
        verify: bool,
    ) -> tuple[BatchProgress, int]:
        """One chunk under the journey's share lock; returns the progress and how many
        enrollments it tried to start (what the rate counts)."""
        temporal = activity.client()
        async with self.pool.acquire() as conn, conn.transaction():
            journey_row = await journeys_store.journey(
                conn, input.workspace, input.journey_id, "share"
            )
            batch = await batches_store.lock_batch(conn, _key(input))
            assert batch is not None
            if batch["status"] != BatchStatus.RUNNING:
                return _progress(batch), 0
            if (reason := _why_stop(journey_row, input)) is not None:
                await batches_store.finish(conn, _key(input), BatchStatus.STOPPED.value, reason)
                return _progress(await batches_store.progress(conn, _key(input))), 0

            tally: Counter[str] = Counter(batch["skipped"])
            started = 0
            existing = {
                r["contact_id"]: r
                for r in await enrollments_store.existing_enrollments(
                    conn, input.workspace, input.journey_id, list(chunk), since
                )
            }
            refused = await enrollments_store.refused_since(
                conn, input.workspace, input.journey_id, list(chunk), since
            )
            to_enroll: list[str] = []
            to_verify: list[asyncpg.Record] = []
            for contact_id in chunk:
                enrollment = existing.get(contact_id)
                if enrollment is None:
                    if contact_id in refused:  # refused by an attempt that did not commit
                        tally[refused[contact_id]] += 1
                    else:
                        to_enroll.append(contact_id)
                elif not enrollment["since_batch"]:
                    tally["already_enrolled"] += 1
                elif verify:
                    to_verify.append(enrollment)
                else:  # started by an attempt that did not commit (or by a trigger)
                    started += 1
            if to_verify:

                def check(enrollment: asyncpg.Record) -> Callable[[], Awaitable[bool]]:
                    return lambda: _orphaned(self.pool, temporal, enrollment)

                orphaned = await _bounded(input.concurrency, [check(e) for e in to_verify])
                for enrollment, orphan in zip(to_verify, orphaned, strict=True):
                    if orphan:
                        to_enroll.append(enrollment["contact_id"])
                    else:
                        started += 1
                to_enroll.sort()

            if to_enroll:
                results = await enroll_many(
                    self.pool, temporal, settings, record, to_enroll, input.concurrency
                )
                for result in results.values():
                    if isinstance(result, Enrolled):
                        started += 1
                    else:
                        tally[result.reason] += 1
            row = await batches_store.advance(
                conn, _key(input), chunk[-1], len(chunk), started, dict(tally)
            )
        return _progress(row), len(to_enroll)

    # --- unenroll ---------------------------------------------------------------------

    @activity.defn(name=UNENROLL_PAGE)
    async def unenroll_page(self, input: BatchInput) -> BatchProgress:
        """Signals `unenroll` to the next page of enrollments that were running when the
        batch began, chunk by chunk, within the rate."""
        async with _heartbeats(input):
            return await _resumable(self._unenroll_page(input))

    async def _unenroll_page(self, input: BatchInput) -> BatchProgress:
        row = await self._recorded(input)
        if row is None:
            return BatchProgress(status=BatchStatus.STOPPED, stop_reason="not_recorded")
        progress = _progress(row)
        if progress.finished:
            return progress
        statuses = _open_statuses(input)
        page = await enrollments_store.running_page(
            self.pool,
            input.workspace,
            input.journey_id,
            progress.cursor,
            statuses,
            row["started_at"],
            input.page_size,
        )
        return await self._page(
            input, progress, page, lambda chunk, _: self._unenroll_chunk(input, chunk, statuses)
        )

    async def _unenroll_chunk(
        self, input: BatchInput, chunk: Sequence[asyncpg.Record], statuses: list[str]
    ) -> tuple[BatchProgress, int]:
        """Signals one chunk; returns the progress and how many it looked at (the rate)."""
        temporal = activity.client()
        request = Unenroll(reason=input.reason)
        ids = [r["workflow_id"] for r in chunk]
        open_now = {
            r["workflow_id"] for r in await enrollments_store.still_open(self.pool, ids, statuses)
        }

        def signal(wf_id: str) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                try:
                    await temporal.get_workflow_handle(wf_id).signal("unenroll", request)
                except RPCError as exc:
                    if exc.status == RPCStatusCode.NOT_FOUND:
                        return "already_ended"
                    raise
                return "signalled"

            return run

        results = await _bounded(input.concurrency, [signal(i) for i in ids if i in open_now])
        async with self.pool.acquire() as conn, conn.transaction():
            batch = await batches_store.lock_batch(conn, _key(input))
            assert batch is not None
            tally: Counter[str] = Counter(batch["skipped"])
            tally["already_ended"] += len(ids) - len(open_now) + results.count("already_ended")
            row = await batches_store.advance(
                conn,
                _key(input),
                chunk[-1]["contact_id"],
                len(chunk),
                results.count("signalled"),
                {k: v for k, v in tally.items() if v},
            )
        return _progress(row), len(chunk)

    # --- both -------------------------------------------------------------------------

    async def _page(
        self,
        input: BatchInput,
        progress: BatchProgress,
        items: Sequence[U],
        chunk_of: Callable[[Sequence[U], bool], Awaitable[tuple[BatchProgress, int]]],
    ) -> BatchProgress:
        """Runs a page chunk by chunk (`chunk_of(chunk, first)`): each to the end even when
        cancelled, its progress heartbeated, within the rate (`chunk_of` says how many it
        counted); a short page is the last one."""
        for n, chunk in enumerate(_chunks(items, CHUNK_SIZE)):
            _stop_if_worker_shuts_down()
            began = time.monotonic()
            progress, counted = await _to_the_end(chunk_of(chunk, n == 0))
            activity.heartbeat(progress.model_dump(mode="json"))
            if progress.finished:
                return progress
            await _keep_rate(began, counted, input.rate)
        if len(items) < input.page_size:
            return await self._finish(input, BatchStatus.COMPLETED, None)
        return progress

    async def _recorded(self, input: BatchInput) -> asyncpg.Record | None:
        """The batch's row. The API starts the workflow inside the transaction that inserts
        the row, so the first page can run before that commits: wait for it a while; no
        row after that means the transaction rolled back (the start was not answered)."""
        deadline = time.monotonic() + RECORD_WAIT_SECONDS
        while True:
            row = await batches_store.progress(self.pool, _key(input))
            if row is not None or time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.1)

    @activity.defn(name=FINISH_BATCH)
    async def finish_batch(self, input: BatchInput, reason: str) -> BatchProgress:
        """Marks the batch stopped (the workflow was cancelled from outside)."""
        return await self._finish(input, BatchStatus.STOPPED, reason)

    async def _finish(
        self, input: BatchInput, status: BatchStatus, reason: str | None
    ) -> BatchProgress:
        await batches_store.finish(self.pool, _key(input), status.value, reason)
        row = await batches_store.progress(self.pool, _key(input))
        if row is None:
            return BatchProgress(status=status, stop_reason=reason)
        return _progress(row)


def _worker_shutdown() -> ApplicationError:
    # A cancel caused by worker shutdown would complete the activity as cancelled; fail
    # it instead, so that Temporal retries the page (on another worker, or this one
    # restarted), which resumes after the last chunk that committed.
    return ApplicationError(
        "The worker shut down during the page; it resumes where it stopped.",
        type=WORKER_SHUTDOWN,
    )


def _stop_if_worker_shuts_down() -> None:
    if activity.is_worker_shutdown():
        raise _worker_shutdown()


@asynccontextmanager
async def _heartbeats(input: BatchInput) -> AsyncIterator[None]:
    """Heartbeats while the page runs, several times per heartbeat timeout: a slow chunk
    (a slow Temporal, a low rate) is not taken for a dead worker, and a dead worker's page
    is retried once the timeout has passed without one."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(input.heartbeat_seconds / 4)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def _resumable(work: Awaitable[T]) -> T:
    try:
        return await work
    except asyncio.CancelledError:
        if activity.is_worker_shutdown():
            raise _worker_shutdown() from None
        raise


def _why_stop(journey_row: asyncpg.Record | None, input: BatchInput) -> str | None:
    if journey_row is None:
        return "journey_deleted"
    if journey_row["status"] != "active":
        return "journey_deactivated"
    if journey_row["version"] != input.journey_version:
        return "journey_edited"
    return None


def _open_statuses(input: BatchInput) -> list[str]:
    return ["running", "in_attribution_window"] if input.include_attribution_window else ["running"]


async def _orphaned(pool: asyncpg.Pool, temporal: Client, enrollment: asyncpg.Record) -> bool:
    """An enrollment row whose workflow never started (the worker died between the row and
    the start): the row is removed (at once, not in the chunk's transaction, which would
    hold the enrollment's key against `enroll`) so the contact can be enrolled again."""
    if enrollment["status"] != "running":
        return False
    try:
        await temporal.get_workflow_handle(enrollment["workflow_id"]).describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        await enrollments_store.delete_orphan(pool, enrollment["workflow_id"])
        return True
    return False


async def _keep_rate(began: float, count: int, rate: float) -> None:
    """Sleeps what is left of the time `count` starts may take at `rate` per second."""
    remaining = count / rate - (time.monotonic() - began)
    if remaining > 0:
        await asyncio.sleep(remaining)
