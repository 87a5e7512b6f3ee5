"""The journey's durable batches: ActivationWorkflow enrolls every contact already
eligible when a journey is activated; UnenrollWorkflow ends the running enrollments of a
journey deactivated (or deleted) with `unenroll=true`.

Both read one page per activity and continue as new after each page, so a batch of any
size keeps a short history. The activity commits its progress in Postgres after every
chunk; the workflow carries a copy, shows it as its current details in the Temporal UI
and answers the `progress` query. A crashed worker's page is retried and resumes after the
last chunk that committed. Deactivating the journey stops an activation at its next chunk;
cancelling the workflow marks the batch stopped.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.activation import (
        ACTIVATION_PAGE,
        ACTIVATION_WORKFLOW,
        FINISH_BATCH,
        UNENROLL_PAGE,
        UNENROLL_WORKFLOW,
        BatchInput,
        BatchProgress,
        describe,
    )

PAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
)


class _Batch:
    def __init__(self, input: BatchInput) -> None:
        self.input = input
        self.progress = input.progress
        workflow.set_current_details(describe(input, self.progress))

    async def _pages(self, activity: str) -> BatchProgress:
        after = repr(self.progress.cursor) if self.progress.cursor else "the start"
        try:
            self.progress = await workflow.execute_activity(
                activity,
                self.input,
                result_type=BatchProgress,
                start_to_close_timeout=self._page_timeout(),
                heartbeat_timeout=timedelta(seconds=self.input.heartbeat_seconds),
                retry_policy=PAGE_RETRY,
                summary=f"page {self.input.pages + 1}, contacts after {after}",
            )
        except asyncio.CancelledError:
            # Cancelled from outside (the UI, tctl): the batch is over, say so in Postgres.
            self.progress = await workflow.execute_activity(
                FINISH_BATCH,
                args=[self.input, "cancelled"],
                result_type=BatchProgress,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PAGE_RETRY,
            )
            workflow.set_current_details(describe(self.input, self.progress))
            raise
        workflow.set_current_details(describe(self.input, self.progress))
        if self.progress.finished:
            return self.progress
        self._next_page()

    def _page_timeout(self) -> timedelta:
        # the rate bounds how long a page takes; leave room for a slow Temporal
        at_rate = self.input.page_size / self.input.rate
        return timedelta(seconds=max(600.0, 5 * at_rate))

    def _next_page(self) -> NoReturn:
        workflow.continue_as_new(
            self.input.model_copy(update={"progress": self.progress, "pages": self.input.pages + 1})
        )

    def _current(self) -> BatchProgress:
        return self.progress


@workflow.defn(name=ACTIVATION_WORKFLOW)
class ActivationWorkflow(_Batch):
    """Enrolls every contact eligible for the journey, a page per run, within a rate."""

    @workflow.init
    def __init__(self, input: BatchInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: BatchInput) -> BatchProgress:
        return await self._pages(ACTIVATION_PAGE)

    @workflow.query(name="progress")
    def query_progress(self) -> BatchProgress:
        return self._current()


@workflow.defn(name=UNENROLL_WORKFLOW)
class UnenrollWorkflow(_Batch):
    """Signals `unenroll` to each enrollment that was running when the batch began."""

    @workflow.init
    def __init__(self, input: BatchInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: BatchInput) -> BatchProgress:
        return await self._pages(UNENROLL_PAGE)

    @workflow.query(name="progress")
    def query_progress(self) -> BatchProgress:
        return self._current()
