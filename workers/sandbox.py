"""The workflow sandbox the worker runs journeys in: the SDK's, with two of its costs left
out (docs/performance.md, "A third pass").

The SDK's sandbox re-imports the workflow module for every run and runs every activation
inside it, with the determinism guard on (`time`, `datetime.now`, `random` and the like
refused to workflow code). That stays as it is. What changes:

- **Serialization contexts are read without entering the sandbox.** For each payload of
  every activation and completion the SDK asks the workflow instance which serialization
  context applies (three or four times per payload), and the sandbox answers each question
  by compiling and executing a line of code inside the sandbox. The answer is SDK code
  reading the instance's own bookkeeping (its workflow info and pending activities): no
  workflow code runs and nothing is imported, so the guard has nothing to check there. It
  is asked directly.
- **The few lines the sandbox executes are compiled once** per process instead of once per
  activation.

Both reach into the SDK's private runner (`_Instance`); the locked `temporalio` version is
the one this is written against, and `tests/workers/test_sandbox.py` checks that the
answers are the SDK's own and that the guard still refuses the clock.
"""

from __future__ import annotations

import threading
from types import CodeType
from typing import Any

import temporalio.workflow
from temporalio.converter import SerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker._command_aware_visitor import CommandInfo
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance

_compiled: dict[str, CodeType] = {}


class JourneySandbox(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` with the same restrictions; see the module's docstring."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _JourneyInstance(det, self.runner_class, self.restrictions)


class _JourneyInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # the SDK's `_run_code`, executing a code object compiled once instead of the string
        compiled = _compiled.get(code)
        if compiled is None:
            compiled = _compiled.setdefault(code, compile(code, "<sandbox>", "exec"))
        for k, v in extra_globals.items():
            self.globals_and_locals[k] = v
        try:
            temporalio.workflow.unsafe._set_in_sandbox(True)
            self._current_thread_id = threading.get_ident()
            exec(compiled, self.globals_and_locals, self.globals_and_locals)
        finally:
            temporalio.workflow.unsafe._set_in_sandbox(False)
            self._current_thread_id = None
            for k in extra_globals:
                self.globals_and_locals.pop(k, None)

    def get_serialization_context(
        self, command_info: CommandInfo | None
    ) -> SerializationContext | None:
        context: SerializationContext | None = self._in_sandbox.get_serialization_context(
            command_info
        )
        return context

    def get_external_store_context(self, command_info: CommandInfo | None) -> Any:
        return self._in_sandbox.get_external_store_context(command_info)

    @property
    def _in_sandbox(self) -> Any:
        return self.globals_and_locals["__temporal_in_sandbox"]
