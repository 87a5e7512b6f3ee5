"""The enrollment's side effects. Every activity writes, in ONE transaction, the log
records the workflow had pending, its own step row, what the step produces (outbox rows,
a property, a list membership) and the read models the metrics read.

Exactly once: a step row is keyed (workflow_id, step_seq). Each record is inserted with
ON CONFLICT DO NOTHING first and its effects run only when the row is new, so a retried
activity neither writes nor counts anything twice. Outbox rows carry the idempotency key
`{workflow_id}:{step_seq}:{channel}` that delivery hands to the provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from services.experiments import check_winner
from shared.enrollment import (
    AddToList,
    Assign,
    Complete,
    Convert,
    Effect,
    EndEnrollment,
    EnrollmentRef,
    EnterStage,
    Outcome,
    StepRecord,
    TakePath,
    WriteProperty,
)
from shared.journey import Journey
from shared.settings import Settings
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store import experiments as experiments_store
from store import metrics as metrics_store
from store.enrollments import Recorded
from workers.sending import Sending, idempotency_key
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

__all__ = ["JourneyActivities", "idempotency_key"]


def _written(
    result: StepResult,
    seq: int | None,
    writes: list[WriteProperty | AddToList],
    refused: list[str],
) -> None:
    """Adds one record's writes to the result: the newest sequence, and per property
    whether its last conditional write was refused."""
    if seq is not None:
        result.contact_seq = max(result.contact_seq or 0, seq)
    for effect in writes:
        if isinstance(effect, WriteProperty):
            if effect.property in refused:
                if effect.property not in result.refused_writes:
                    result.refused_writes.append(effect.property)
            elif effect.property in result.refused_writes:
                result.refused_writes.remove(effect.property)


def _in_sql(effect: Effect) -> bool:
    """An effect `record_steps` makes itself, in its one statement: the read models, the
    stage writes, and the usual conversion (met while running, no experiment to tell)."""
    if isinstance(effect, WriteProperty):
        return effect.conditional
    if isinstance(effect, Convert):
        return not (effect.after_end or effect.experiments)
    return isinstance(effect, (EnterStage, EndEnrollment, Complete, TakePath))


def _transaction(conn: PoolConnectionProxy, atomic: bool) -> AbstractAsyncContextManager[Any]:
    return conn.transaction() if atomic else nullcontext()


class JourneyActivities:
    """The journey's side effects, built with the asyncpg pool; registered as bound methods."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings | None = None) -> None:
        self.pool = pool
        self.sending = Sending(pool, settings or Settings())
        self.renderer = self.sending.renderer

    # --- one activity per side-effecting action ----------------------------------------

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendMessageRequest) -> StepResult:
        """Applies the rules (unsubscribe, send window, frequency cap), queues the message
        in the outbox (one row per channel, keyed for the provider) and waits until the
        sender has delivered it."""
        action, ref, step = request.action, request.enrollment, request.step
        async with self._step(request) as (conn, result, new):
            if step is None:
                return result
            if new:
                decided = await self.sending.queue_message(conn, request, step)
                if action.marketing and decided.status == "sending":
                    await enrollments_store.marketing_sent(conn, ref.workflow_id)
            else:
                decided = await self.sending.recorded(conn, ref, step.step_seq)
        result.send = await self._deliver(ref, step, decided)
        return result

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: CreateTaskRequest) -> StepResult:
        """Records a task for the caller's CRM and POSTs it to the workspace's webhook."""
        action = request.action

        async def rendered(properties: dict[str, Any]) -> dict[str, Any]:
            payload = action.model_dump(mode="json", exclude={"type"})
            render = self.renderer.render_lenient
            payload["title"] = await render(action.title, properties, request.trigger)
            if action.notes is not None:
                payload["notes"] = await render(action.notes, properties, request.trigger)
            return payload

        return await self._internal(request, "task", rendered)

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_notification(self, request: SendNotificationRequest) -> StepResult:
        """Records a notification to users/teams/the owner and POSTs it to the webhook."""
        action = request.action

        async def rendered(properties: dict[str, Any]) -> dict[str, Any]:
            payload = action.model_dump(mode="json", exclude={"type"})
            render = self.renderer.render_lenient
            payload["message"] = await render(action.message, properties, request.trigger)
            return payload

        return await self._internal(request, "notification", rendered)

    async def _internal(
        self,
        request: CreateTaskRequest | SendNotificationRequest,
        kind: str,
        rendered: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> StepResult:
        """Renders with the contact as it is now (the workflow only hears of the properties
        the journey reads; a template may read any), then records and delivers."""
        ref, step = request.enrollment, request.step
        async with self._step(request) as (conn, result, new):
            if step is None:
                return result
            if new:
                props = await contacts_store.properties(conn, ref.workspace, ref.contact_id)
                payload = await rendered(props if props is not None else request.properties)
                decided = await self.sending.queue_internal(conn, ref, step, kind, payload)
            else:
                decided = await self.sending.recorded(conn, ref, step.step_seq)
        result.send = await self._deliver(ref, step, decided)
        return result

    async def _deliver(
        self, ref: EnrollmentRef, step: StepRecord, decided: SendOutcome
    ) -> SendOutcome:
        if decided.status in ("skipped", "deferred"):
            return decided
        return await self.sending.delivered(ref, step.step_seq, decided)

    @activity.defn(name=SET_PROPERTY)
    async def set_property(self, request: StepRequest) -> StepResult:
        """Writes a contact property (the step's WriteProperty effect)."""
        async with self._step(request) as (_, result, _new):
            pass
        return result

    @activity.defn(name=RECORD_STEPS)
    async def record_steps(self, request: StepRequest) -> StepResult:
        """Bookkeeping with no side effect of its own (stage entry, waits, ends): run as a
        local activity only when no other activity is coming to carry it. When every effect
        of its records is `record_steps`'s own, that one statement is all: no transaction
        around it."""
        records = [*request.pending, *([request.step] if request.step is not None else [])]
        atomic = not all(_in_sql(effect) for record in records for effect in record.effects)
        async with self._step(request, atomic) as (_, result, _new):
            pass
        return result

    # --- the shared transaction ----------------------------------------------------------

    @asynccontextmanager
    async def _step(
        self, request: StepRequest, atomic: bool = True
    ) -> AsyncIterator[tuple[PoolConnectionProxy, StepResult, bool]]:
        """One transaction that has applied the pending records and the request's own step
        row; `new` says whether that row was inserted now, i.e. whether to produce the
        step's side effect (a retry finds the row and produces nothing). No heartbeat: the
        transaction is short (an exit waits for it to end); what can wait long, a send
        waiting for the sender, heartbeats so that an exit's cancellation reaches it."""
        result = StepResult()
        ref = request.enrollment
        records = [*request.pending, *([request.step] if request.step is not None else [])]
        async with self.pool.acquire() as conn, _transaction(conn, atomic):
            recorded = await enrollments_store.record_steps(conn, ref, records)
            for record in records:
                await self.apply(conn, ref, record, recorded, result)
            new = request.step is not None and request.step.step_seq in recorded.steps
            yield conn, result, new

    async def apply(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        record: StepRecord,
        recorded: Recorded,
        result: StepResult,
    ) -> None:
        """The effects of a record whose row `record_steps` inserted now beyond the read
        models it already moved; a retry (the row was there) runs none. What its property
        writes came to is kept with the row, so a retry reports it too."""
        writes = [e for e in record.effects if isinstance(e, (WriteProperty, AddToList))]
        if record.step_seq not in recorded.steps:
            if writes:
                row = await enrollments_store.recorded_writes(
                    conn, ref.workflow_id, record.step_seq
                )
                if row is not None:
                    _written(result, row["contact_seq"], writes, row["refused_writes"] or [])
            return
        result.applied.append(record.step_seq)
        # the stage writes (conditional) were made, and kept with the row, by record_steps
        staged = recorded.writes.get(record.step_seq)
        seq, refused = (staged.seq, staged.refused) if staged else (None, [])
        wrote = False
        for effect in record.effects:
            if isinstance(effect, WriteProperty) and effect.conditional:
                continue
            written = await self._effect(conn, ref, record, recorded, effect)
            if written is not None:
                seq, wrote = written, True
        if wrote:
            await enrollments_store.record_writes(
                conn, ref.workflow_id, record.step_seq, seq, refused
            )
        if seq is not None or refused:
            _written(result, seq, writes, refused)

    async def _effect(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        record: StepRecord,
        recorded: Recorded,
        effect: Effect,
    ) -> int | None:
        ws, journey = ref.workspace, ref.journey_id
        match effect:
            case EnterStage() | EndEnrollment() | Complete() | TakePath():
                pass  # moved by record_steps with the row
            case WriteProperty(property=name, value=value):
                return await contacts_store.write_property(conn, ws, ref.contact_id, name, value)
            case AddToList(list=name):
                return await contacts_store.join_list(conn, ws, name, ref.contact_id)
            case Convert() if not _in_sql(effect):
                await self._convert(conn, ref, record, recorded, effect)
            case Assign():
                drawn = await experiments_store.assign(
                    conn, ref.workflow_id, effect.split, ws, journey, effect.version,
                    effect.variant, effect.holdout, record.at,
                )  # fmt: skip
                if drawn and effect.auto_winner:
                    await self._check_winner(conn, ref, effect.split, effect.version)
        return None

    async def _check_winner(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, split: str, version: int
    ) -> None:
        own = await enrollments_store.select_own_goal(conn, ref.workflow_id)
        if own is not None:
            journey = Journey.model_validate(own)
            await check_winner(conn, ref.workspace, ref.journey_id, journey, split, version)

    async def _convert(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        record: StepRecord,
        recorded: Recorded,
        effect: Convert,
    ) -> None:
        """Counts the conversion when docs/design.md, "Goal conversions" allows it (met in
        the attribution window, or with experiments to tell; record_steps counts the rest).
        `marketing_sent` is the row's, not the workflow's (`recorded` read it in this
        transaction): it is set in the same transaction as the outbox row, so even a send
        that raced an exit's cancellation is seen right."""
        if not recorded.found or recorded.outcome == Outcome.SUPPRESSED:
            return
        headline = recorded.marketing_sent and recorded.outcome != Outcome.HOLDOUT
        if not (headline or effect.experiments):
            return
        if effect.after_end and await self._credit_goes_elsewhere(conn, ref, effect):
            return
        counted = "INSERT 0 0"
        if headline:
            counted = await metrics_store.insert_conversion(
                conn, ref.workspace, ref.journey_id, ref.contact_id, ref.goal_epoch, record.at
            )
        if effect.experiments:
            # the experiments compare goals met without the marketing condition
            marked = await experiments_store.converted(
                conn, ref.workflow_id, record.at, counted.endswith(" 1")
            )
            for split in marked:
                await self._check_winner(conn, ref, split["split"], split["version"])
        if counted.endswith(" 1"):
            own = await enrollments_store.select_own_goal(conn, ref.workflow_id)
            goal = Journey.model_validate(own).goal if own is not None else None
            if goal is not None and goal.add_to_list:
                await contacts_store.join_list(
                    conn, ref.workspace, goal.add_to_list, ref.contact_id
                )

    async def _credit_goes_elsewhere(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, effect: Convert
    ) -> bool:
        own = await enrollments_store.select_own_goal(conn, ref.workflow_id)
        if own is None:
            return False
        goal = Journey.model_validate(own).goal
        if goal is None:
            return False
        rivals = await enrollments_store.select_rivals(
            conn, ref.workspace, ref.contact_id, ref.journey_id, effect.goal_met_seq
        )
        for rival in rivals:
            other = Journey.model_validate(rival["definition"]).goal
            if other is not None and other.criteria == goal.criteria:
                return True
        return False
