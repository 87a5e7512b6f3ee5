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
- **The workflow modules' code is read once.** Re-importing a module for a new run looked
  for its file, read its bytecode and unmarshalled it, each time; the worker keeps the
  code objects of the packages its workflows come from (`workers.*`) and executes those.
  Each run still executes the module afresh. A worker now runs the workflow code it
  started with, as it always did for every module the sandbox passes through.

Both reach into the SDK's private runner (`_Instance`); the locked `temporalio` version is
the one this is written against, and `tests/workers/test_sandbox.py` checks that the
answers are the SDK's own and that the guard still refuses the clock.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType
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

    def prepare_workflow(self, defn: temporalio.workflow._Definition) -> None:
        _ModuleCode.install(defn.cls.__module__.partition(".")[0])
        super().prepare_workflow(defn)

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


class _ModuleCode(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the modules of the packages workflows come from (`workers.*`) where the path
    finder found them the first time, and executes the code read that first time."""

    _packages: set[str] = set()
    _specs: dict[str, importlib.machinery.ModuleSpec] = {}
    _code: dict[str, CodeType] = {}
    _lock = threading.Lock()

    @classmethod
    def install(cls, package: str) -> None:
        with cls._lock:
            cls._packages.add(package)
            if not any(isinstance(finder, cls) for finder in sys.meta_path):
                sys.meta_path.insert(0, cls())

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self._packages:
            return None
        found = self._specs.get(fullname)
        if found is None:
            found = importlib.machinery.PathFinder.find_spec(fullname, path, target)
            if found is None or not isinstance(found.loader, importlib.machinery.SourceFileLoader):
                return found
            self._specs[fullname] = found
        # a spec of its own for every import: the import machinery marks it while loading
        spec = importlib.machinery.ModuleSpec(
            fullname,
            self,
            origin=found.origin,
            is_package=found.submodule_search_locations is not None,
        )
        spec.submodule_search_locations = found.submodule_search_locations
        spec.cached = found.cached
        spec.has_location = True
        return spec

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        code = self._code.get(name)
        if code is None:
            loader = self._specs[name].loader
            assert isinstance(loader, importlib.machinery.SourceFileLoader)
            read = loader.get_code(name)
            assert read is not None
            code = self._code.setdefault(name, read)
        exec(code, module.__dict__)
