"""The worker tests' fixtures: histories of passing tests recorded on request (enrollments
are started with `tests.helpers.enrollments`)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.enrollments import started_enrollments

WORKSPACE = "default"

RECORD_HISTORIES = "NURTURE_RECORD_HISTORIES"
"""When set (to a directory), every passing worker test writes the histories of the
enrollments it started there: `scripts/record_histories.py` regenerates tests/histories/."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[_passed] = report.passed
    return report


_passed = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
async def record_histories(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    started_enrollments.clear()
    yield
    await _record(request)


@pytest.fixture
async def ts_env(
    ts_env: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping server of tests/conftest.py, whose histories are recorded before
    it stops (it lives for one test; the dev server lives for the session)."""
    yield ts_env
    await _record(request)


async def _record(request: pytest.FixtureRequest) -> None:
    directory = os.environ.get(RECORD_HISTORIES)
    if not directory or not request.node.stash.get(_passed, False):
        return
    name = re.sub(r"[^a-z0-9_]+", "_", request.node.name.removeprefix("test_").lower())
    files = 0
    recorded: dict[str, str] = {}
    for enrollment in started_enrollments:
        # every run of the chain: continue-as-new starts a new history
        run_id = enrollment.handle.result_run_id
        while run_id:
            handle = enrollment.client.get_workflow_handle(enrollment.workflow_id, run_id=run_id)
            history = await handle.fetch_history()
            files += 1
            recorded[f"{name}-{files}.json"] = history.to_json()
            last = history.events[-1]
            continued = last.workflow_execution_continued_as_new_event_attributes
            run_id = (
                continued.new_execution_run_id
                if last.HasField("workflow_execution_continued_as_new_event_attributes")
                else None
            )
    _write_histories(Path(directory), recorded)
    started_enrollments.clear()


def _write_histories(directory: Path, recorded: dict[str, str]) -> None:
    for name, text in recorded.items():
        (directory / name).write_text(text)
