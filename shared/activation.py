"""The contract of a journey's durable batches: activation (enroll every contact already
eligible) and bulk unenroll (end the running enrollments of a deactivated or deleted
journey). Their ids, the workflow input, the progress they report.

Pure pydantic: imported by the API and by workflow code alike, never does I/O.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

ACTIVATION_WORKFLOW = "ActivationWorkflow"
UNENROLL_WORKFLOW = "UnenrollWorkflow"
ACTIVATION_PAGE = "activation_page"
UNENROLL_PAGE = "unenroll_page"
FINISH_BATCH = "finish_batch"

CHUNK_SIZE = 100
"""Contacts handled between two progress writes (and two checks that the batch may go on)."""


def batch_task_queue(task_queue: str) -> str:
    """The batches' own task queue, next to the enrollments' (`{task_queue}.batches`): the
    next page is not queued behind the work of the enrollments the last page started."""
    return f"{task_queue}.batches"


class BatchKind(StrEnum):
    ACTIVATE = "activate"
    UNENROLL = "unenroll"


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"


def batch_workflow_id(kind: BatchKind, workspace: str, journey_id: str, batch: int) -> str:
    """`activation/{workspace}/{journey}/{n}` or `unenroll/{workspace}/{journey}/{n}`."""
    prefix = "activation" if kind is BatchKind.ACTIVATE else "unenroll"
    return f"{prefix}/{workspace}/{journey_id}/{batch}"


class BatchProgress(BaseModel):
    """Where a batch stands; the database row is the truth, this is its copy."""

    status: BatchStatus = BatchStatus.RUNNING
    total: int | None = None
    """Activation: contacts eligible when it began. Unenroll: enrollments running then."""
    processed: int = 0
    done: int = 0
    """Activation: enrollments started. Unenroll: enrollments signalled to end."""
    skipped: dict[str, int] = Field(default_factory=dict)
    """Activation: refusals by reason. Unenroll: `already_ended` and the like."""
    cursor: str = ""
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status is not BatchStatus.RUNNING


class BatchInput(BaseModel):
    kind: BatchKind
    workspace: str
    journey_id: str
    journey_name: str
    journey_version: int
    batch: int
    task_queue: str
    """Where enrollment workflows run (activation starts them there)."""
    max_stage_entries: int = 100
    rate: float = Field(gt=0)
    """Enrollment starts (or unenroll signals) per second, at most."""
    page_size: int = Field(default=500, ge=1)
    concurrency: int = Field(default=8, ge=1)
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    """A page heartbeats several times in this; a worker that died is noticed after it."""
    reason: str = "journey_deactivated"
    """Unenroll: the reason each enrollment gets (an Outcome value becomes the outcome)."""
    include_attribution_window: bool = False
    """Unenroll: also close the attribution windows (the journey is deleted)."""
    pages: int = 0
    """Pages done by earlier runs (the workflow continues as new after each page)."""
    progress: BatchProgress = Field(default_factory=BatchProgress)


def describe(input: BatchInput, progress: BatchProgress) -> str:
    """The batch in words: the workflow's current details in the Temporal UI."""
    total = "?" if progress.total is None else str(progress.total)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(progress.skipped.items())) or "none"
    if input.kind is BatchKind.ACTIVATE:
        head = f"Activating {input.journey_name!r} v{input.journey_version}"
        line = f"{progress.processed}/{total} eligible handled · started {progress.done}"
        tail = f"refused: {skipped}"
    else:
        head = f"Unenrolling {input.journey_name!r} ({input.reason})"
        line = f"{progress.processed}/{total} handled · signalled {progress.done}"
        tail = f"skipped: {skipped}"
    state = progress.status.value
    if progress.stop_reason:
        state += f" ({progress.stop_reason})"
    return (
        f"**{head}**\n\n{line} · {tail}\n\n"
        f"status: {state} · page {input.pages + 1} · at most {input.rate:g}/s"
    )
