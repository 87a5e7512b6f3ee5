"""The enrollment's log, as the workflow keeps it: numbered step records (the step number
is the idempotency key of its side effects), the records that ride along with the next
activity, the activities that write them, and what a commit tells about the journey's own
property writes.

Workflow code (sandboxed, deterministic): `EnrollmentWorkflow` holds one `StepLog` over
its state. History events per action are the budget: bookkeeping never gets an activity
of its own unless the enrollment is about to block or end with read models pending.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as TimedOut

with workflow.unsafe.imports_passed_through():
    from shared import exits, own_writes
    from shared.enrollment import (
        AddToList,
        Effect,
        EnrollmentRef,
        EnrollmentState,
        StepRecord,
        WriteProperty,
    )
    from workers.steps import RECORD_STEPS, StepRequest, StepResult

DELIVERY_FAILED = "DeliveryFailed"
"""ApplicationError type a channel raises (non-retryable) when a provider refuses a send."""
LOST_WORKER_PATCH = "exit-outlives-a-lost-worker"
"""An exit that cancelled an activity whose worker had died gets the activity's heartbeat
timeout, not its cancellation: the exit goes on (before: the workflow failed). Only such
runs write the marker."""
FAILED_WHILE_LEAVING_PATCH = "exit-outlives-a-failed-activity"
"""An exit that cancelled an activity which then failed (a database error before it heard
of the cancellation: Temporal does not retry an activity whose cancellation was asked)
goes on, the step not done (before: the workflow failed). Only such runs write the
marker."""

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[DELIVERY_FAILED],
)
ACTIVITY_TIMEOUT = timedelta(minutes=2)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
RECORD_TIMEOUT = timedelta(seconds=30)


class StepLog:
    def __init__(
        self,
        state: EnrollmentState,
        ref: EnrollmentRef,
        contact_id: str,
        settle: Callable[[dict[str, Any]], None],
    ) -> None:
        """`settle(refused)`: after a commit, lets a caller's value win over the journey's
        own writes the database refused (property → value) or a newer snapshot held."""
        self.s = state
        self.ref = ref
        self.contact_id = contact_id
        self.settle = settle

    def step(
        self,
        action: str,
        result: str,
        detail: dict[str, Any] | None = None,
        effects: list[Effect] | None = None,
    ) -> StepRecord:
        """A new log record with the next step number (its idempotency key)."""
        self.s.step_seq += 1
        return StepRecord(
            step_seq=self.s.step_seq,
            at=workflow.now(),
            stage=self.s.stage,
            action=action,
            result=result,
            detail=detail or {},
            effects=effects or [],
        )

    def record(
        self,
        action: str,
        result: str,
        detail: dict[str, Any] | None = None,
        effects: list[Effect] | None = None,
    ) -> None:
        """Queues bookkeeping: it rides along with the next activity."""
        self.s.pending.append(self.step(action, result, detail, effects))

    async def activity(self, name: str, request: StepRequest, summary: str) -> StepResult | None:
        """Runs a side-effecting step; an exit meanwhile cancels it (and waits for the
        cancellation). Returns None when it did not happen."""
        handle = workflow.start_activity(
            name,
            request,
            result_type=StepResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{self.contact_id} · stage {self.s.stage} · {summary}",
        )
        await workflow.wait_condition(lambda: handle.done() or self.s.leaving is not None)
        if not handle.done():
            handle.cancel()
        try:
            result = await handle
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                return None
            if isinstance(err.cause, ApplicationError) and err.cause.type == DELIVERY_FAILED:
                self.s.leaving = exits.delivery_failed(summary, err.cause.message)
                return None
            if (
                self.s.leaving is not None
                and isinstance(err.cause, TimedOut)
                and workflow.patched(LOST_WORKER_PATCH)
            ):
                return None  # cancelled for an exit, its worker gone: timed out instead
            if self.s.leaving is not None and workflow.patched(FAILED_WHILE_LEAVING_PATCH):
                return None  # cancelled for an exit, it failed instead: not retried
            raise
        self._committed(request, result)
        return result

    async def flush_read_models(self) -> None:
        """Before blocking, write pending records that change what the metrics show (a
        stage entry must count while the contact waits); plain log rows can wait."""
        if any(record.effects for record in self.s.pending):
            await self.flush()

    async def flush(self) -> None:
        """Writes the pending records in a local activity (no summary: the marker's input
        lists the records, and a summary is one more payload per flush for the worker)."""
        if not self.s.pending:
            return
        request = StepRequest(enrollment=self.ref, pending=self.s.pending)
        result = await workflow.execute_local_activity(
            RECORD_STEPS,
            request,
            result_type=StepResult,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        self._committed(request, result)

    def _committed(self, request: StepRequest, result: StepResult) -> None:
        """The request's records are in the database: drop them from `pending`, and date
        the journey's own writes so that older contact snapshots cannot undo them."""
        sent = {record.step_seq for record in request.pending}
        self.s.pending = [r for r in self.s.pending if r.step_seq not in sent]
        records = [*request.pending, *([request.step] if request.step else [])]
        refused: dict[str, Any] = {}
        for record in records:
            for effect in record.effects:
                if isinstance(effect, WriteProperty):
                    if record is request.step:  # set_property: true only once it happened
                        own_writes.write_locally(self.s, effect.property, effect.value)
                    if effect.property in result.refused_writes:
                        refused[effect.property] = effect.value
                    else:
                        own_writes.dated(self.s, effect.property, effect.value, result.contact_seq)
                elif isinstance(effect, AddToList):
                    own_writes.dated(self.s, f"list:{effect.list}", True, result.contact_seq)
        self.settle(refused)
