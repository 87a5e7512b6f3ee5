"""The activities of a simulated enrollment (docs/testing.md): the same names and requests
as `workers.activities`, and no side effect. Messages, tasks and notifications are
rendered with the workspace's real templates and captured; property writes and list adds
change the simulated contact only; templates are the only thing read, and nothing is
written anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from temporalio import activity

from services.rendering import renderer
from shared.describe import iso_duration
from shared.enrollment import (
    AddToList,
    Convert,
    EndEnrollment,
    Outcome,
    StepRecord,
    TakePath,
    WriteProperty,
)
from shared.settings import Settings
from shared.simulation import SimulatedMessage, SimulatedStep
from store import templates as templates_store
from workers.steps import (
    CREATE_TASK,
    RECORD_STEPS,
    SEND_MESSAGE,
    SEND_NOTIFICATION,
    SET_PROPERTY,
    CreateTaskRequest,
    SendMessageRequest,
    SendNotificationRequest,
    SendOutcome,
    StepRequest,
    StepResult,
)


@dataclass
class Run:
    """One simulation's contact and what its enrollment did."""

    start: datetime
    properties: dict[str, Any]
    lists: set[str]
    seq: int = 1
    steps: list[SimulatedStep] = field(default_factory=list)
    messages: list[SimulatedMessage] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    marketing_sent: bool = False
    outcome: str | None = None
    converted: bool = False
    seen: set[int] = field(default_factory=set)

    def offset(self, at: datetime) -> str:
        return iso_duration(at - self.start)


class SimulatedActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, runs: dict[str, Run]) -> None:
        self.pool = pool
        self.renderer = renderer(settings)
        self.runs = runs

    def _apply(self, run: Run, record: StepRecord) -> None:
        if record.step_seq in run.seen:  # a retried activity
            return
        run.seen.add(record.step_seq)
        run.steps.append(
            SimulatedStep(
                step_seq=record.step_seq, at=record.at, offset=run.offset(record.at),
                stage=record.stage, action=record.action, result=record.result,
                detail=record.detail,
            )
        )  # fmt: skip
        for effect in record.effects:
            if isinstance(effect, WriteProperty):
                run.properties[effect.property] = effect.value
                run.seq += 1
            elif isinstance(effect, AddToList):
                run.lists.add(effect.list)
                run.seq += 1
            elif isinstance(effect, EndEnrollment):
                run.outcome = effect.outcome.value
            elif isinstance(effect, Convert):
                counted = run.outcome not in (Outcome.SUPPRESSED.value, Outcome.HOLDOUT.value)
                run.converted = run.converted or (run.marketing_sent and counted)
            elif isinstance(effect, TakePath):
                run.decisions.append({"stage": record.stage, "node": effect.node, **record.detail})

    def _result(self, run: Run, request: StepRequest) -> StepResult:
        for record in request.pending:
            self._apply(run, record)
        if request.step is not None:
            self._apply(run, request.step)
        applied = [r.step_seq for r in request.pending]
        applied += [request.step.step_seq] if request.step else []
        return StepResult(applied=applied, contact_seq=run.seq)

    def _captured(self, run: Run, at: datetime, kind: str, **found: Any) -> None:
        run.messages.append(SimulatedMessage(at=at, offset=run.offset(at), kind=kind, **found))

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        run = self.runs[request.enrollment.workflow_id]
        step, action = request.step, request.action
        assert step is not None
        if step.step_seq not in run.seen:
            body = await templates_store.template(
                self.pool, request.enrollment.workspace, action.template
            )
            for channel in action.channels:
                content: dict[str, Any] = {"missing": f"no template {action.template!r}"}
                if body is not None:
                    parts = {k: body[k] for k in ("subject", "html", "text") if body[k]}
                    variables = {"trigger": request.trigger or {}}
                    content = await self.renderer.render_parts(parts, run.properties, variables)
                self._captured(
                    run, step.at, "message", channel=channel, template=action.template,
                    content=content,
                )  # fmt: skip
            run.marketing_sent = run.marketing_sent or action.marketing
        result = self._result(run, request)
        result.send = SendOutcome(status="sent", message="simulated: captured, not sent")
        return result

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: CreateTaskRequest) -> StepResult:
        run = self.runs[request.enrollment.workflow_id]
        step, action = request.step, request.action
        assert step is not None
        if step.step_seq not in run.seen:
            render = self.renderer.render_lenient
            found = {"title": await render(action.title, run.properties, request.trigger)}
            if action.notes is not None:
                found["notes"] = await render(action.notes, run.properties, request.trigger)
            self._captured(run, step.at, "task", content={**found, "assign_to": action.assign_to})
        result = self._result(run, request)
        result.send = SendOutcome(status="sent", message="simulated: captured, not sent")
        return result

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_notification(self, request: SendNotificationRequest) -> StepResult:
        run = self.runs[request.enrollment.workflow_id]
        step, action = request.step, request.action
        assert step is not None
        if step.step_seq not in run.seen:
            text = await self.renderer.render_lenient(
                action.message, run.properties, request.trigger
            )
            self._captured(run, step.at, "notification", content={"to": action.to, "message": text})
        result = self._result(run, request)
        result.send = SendOutcome(status="sent", message="simulated: captured, not sent")
        return result

    @activity.defn(name=SET_PROPERTY)
    async def set_property(self, request: StepRequest) -> StepResult:
        return self._result(self.runs[request.enrollment.workflow_id], request)

    @activity.defn(name=RECORD_STEPS)
    async def record_steps(self, request: StepRequest) -> StepResult:
        return self._result(self.runs[request.enrollment.workflow_id], request)

    def all(self) -> list[Any]:
        return [
            self.send_message, self.create_task, self.send_notification, self.set_property,
            self.record_steps,
        ]  # fmt: skip
