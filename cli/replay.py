"""`nurture replay`: replays enrollment histories against the current workflow code.

A history is a recorded run (a JSON file exported from the Temporal UI or CLI, or the
runs a visibility query finds on the configured Temporal). Replaying it re-executes the
current `EnrollmentWorkflow` code against the recorded events: a change that would make
a running enrollment take another path (an unguarded change, without `workflow.patched`)
shows up as nondeterminism, named with its workflow and event.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from services.temporal import connect
from shared.settings import Settings
from workers.enrollment import EnrollmentWorkflow
from workers.sandbox import JourneySandbox

WORKFLOW_TYPE = "EnrollmentWorkflow"


class HistoryFileError(Exception):
    """A history file that cannot be read as a Temporal history."""


@dataclass(frozen=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    problem: str | None = None
    """None when the run replayed cleanly; otherwise what went wrong."""
    event_id: int | None = None
    event_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        run = f"{self.workflow_id} (run {self.run_id})"
        if self.ok:
            return f"ok    {run}"
        where = ""
        if self.event_id is not None:
            kind = f" ({self.event_type})" if self.event_type else ""
            where = f" at event {self.event_id}{kind}"
        return f"FAIL  {run}{where}: {self.problem}"


async def run_replay(
    files: list[Path], query: str | None, settings: Settings, console: Console
) -> int:
    """`nurture replay`: 0 when every history replays, 1 on nondeterminism, 2 when there
    is nothing to replay or a history cannot be read."""
    if bool(files) == bool(query):
        console.print("Give history files or --query, not both and not neither.")
        return 2
    if query:
        client = await connect(settings)
        results = await replay(matching_histories(client, query))
    else:
        try:
            histories = [load_history(path) for path in history_files(files)]
        except HistoryFileError as err:
            console.print(escape(str(err)))
            return 2
        results = await replay(histories)
    if not results:
        console.print("No histories to replay.")
        return 2
    for result in results:
        console.print(escape(result.describe()), soft_wrap=True)
    failed = [r for r in results if not r.ok]
    summary = f"{len(results) - len(failed)} of {len(results)} histories replay"
    if failed:
        console.print(f"{summary}; {len(failed)} diverge from the current code (nondeterminism).")
        return 1
    console.print(f"{summary} against the current code.")
    return 0


def load_history(path: Path) -> WorkflowHistory:
    """A history file as the Temporal UI, `temporal workflow show --output json` or
    `scripts/record_histories.py` write it; the workflow id is the file's name."""
    try:
        text = path.read_text()
        json.loads(text)
        return WorkflowHistory.from_json(path.stem, text)
    except (OSError, ValueError) as err:
        raise HistoryFileError(f"{path}: not a Temporal history file ({err})") from err


def history_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for the *.json files in it and below it."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    return found


async def replay(
    histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory],
) -> list[ReplayResult]:
    """Replays every history against the current code; one result per history."""
    replayer = Replayer(
        workflows=[EnrollmentWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=JourneySandbox(),  # the worker's
    )
    results: list[ReplayResult] = []
    async with replayer.workflow_replay_iterator(_as_async(histories)) as replayed:
        async for one in replayed:
            history = one.history
            run_id = _run_id(history)
            failure = one.replay_failure
            if failure is None:
                results.append(ReplayResult(history.workflow_id, run_id))
                continue
            event = await _first_diverging_event(replayer, history)
            results.append(
                ReplayResult(
                    history.workflow_id,
                    run_id,
                    _problem(failure),
                    event.event_id if event else None,
                    _event_name(event) if event else None,
                )
            )
    return results


async def _as_async(
    histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory],
) -> AsyncIterator[WorkflowHistory]:
    if isinstance(histories, AsyncIterator):
        async for history in histories:
            yield history
    else:
        for history in histories:
            yield history


def matching_histories(client: Client, query: str) -> AsyncIterator[WorkflowHistory]:
    """The histories of the enrollments a visibility query finds (every run)."""
    scoped = f'WorkflowType = "{WORKFLOW_TYPE}" AND ({query})'
    return client.list_workflows(scoped).map_histories()


def _run_id(history: WorkflowHistory) -> str:
    if not history.events:
        return "?"
    started = history.events[0].workflow_execution_started_event_attributes
    return started.original_execution_run_id or "?"


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


def _problem(failure: Exception) -> str:
    """The SDK core's own sentence (e.g. "Nondeterminism error: Activity type of scheduled
    event 'send_message' does not match ..."), not the whole failure structure."""
    found = _CORE_MESSAGE.search(str(failure))
    return found.group(1) if found else f"{type(failure).__name__}: {failure}"


async def _first_diverging_event(
    replayer: Replayer, history: WorkflowHistory
) -> HistoryEvent | None:
    """The first recorded event the current code disagrees with: the shortest prefix of
    the history that fails to replay ends with it (found by bisection)."""
    events = list(history.events)
    low, high = 1, len(events)
    while low < high:
        middle = (low + high) // 2
        prefix = WorkflowHistory(history.workflow_id, events[:middle])
        replayed = await replayer.replay_workflow(prefix, raise_on_replay_failure=False)
        if replayed.replay_failure is None:
            low = middle + 1
        else:
            high = middle
    return events[low - 1] if events else None


def _event_name(event: HistoryEvent) -> str:
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    scheduled = event.activity_task_scheduled_event_attributes
    if event.HasField("activity_task_scheduled_event_attributes"):
        return f"{name} {scheduled.activity_type.name}"
    return name
