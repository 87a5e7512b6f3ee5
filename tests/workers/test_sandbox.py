"""The worker's sandbox (workers/sandbox.py) answers what the SDK's answers, still
refuses the wall clock to workflow code, and still executes the workflow module afresh for
every run."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import (
    RestrictedWorkflowAccessError,
    SandboxedWorkflowRunner,
)

from tests.helpers.sandbox_probe import ClockProbe, ContextProbe, echo
from workers.sandbox import JourneySandbox


class _Recording(PayloadCodec, WithSerializationContext):
    """A codec that changes nothing and notes the context of every payload it is given."""

    def __init__(self, seen: list[tuple[str, str]], context: Any = None) -> None:
        self.seen = seen
        self.context = context

    def with_context(self, context: SerializationContext) -> _Recording:
        return _Recording(self.seen, context)

    def _note(self, op: str, payloads: Sequence[Payload]) -> list[Payload]:
        context = dataclasses.asdict(self.context) if self.context is not None else {}
        context.pop("workflow_id", None)  # each run has its own
        context.pop("activity_id", None)
        context.pop("activity_task_queue", None)
        self.seen.extend((op, repr(sorted(context.items()))) for _ in payloads)
        return list(payloads)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._note("encode", payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._note("decode", payloads)


async def _contexts(env: WorkflowEnvironment, runner: WorkflowRunner) -> Counter[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    converter = dataclasses.replace(DataConverter.default, payload_codec=_Recording(seen))
    client = Client(**{**env.client.config(), "data_converter": converter})
    queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ContextProbe],
        activities=[echo],
        workflow_runner=runner,
        max_cached_workflows=0,  # every activation replays: a new module per activation too
    ):
        result = await client.execute_workflow(
            ContextProbe.run, "hello", id=f"probe-{uuid.uuid4()}", task_queue=queue
        )
    assert result == "hello:1"  # a module of its own for each run (and each replay)
    return Counter(seen)


async def test_payloads_get_the_serialization_contexts_the_sdk_gives_them(
    ts_env: WorkflowEnvironment,
) -> None:
    stock = await _contexts(ts_env, SandboxedWorkflowRunner())
    ours = await _contexts(ts_env, JourneySandbox())

    assert ours == stock
    # the activity's payloads had the activity's context, not only the workflow's
    assert any("probe_echo" in context for _, context in ours)


async def test_workflow_code_still_may_not_read_the_wall_clock(
    ts_env: WorkflowEnvironment,
) -> None:
    queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[ClockProbe],
        workflow_runner=JourneySandbox(),
        workflow_failure_exception_types=[RestrictedWorkflowAccessError],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await ts_env.client.execute_workflow(
                ClockProbe.run, id=f"clock-{uuid.uuid4()}", task_queue=queue
            )
    assert "datetime.datetime.now" in str(failed.value.cause)
