"""The enrollment's side effects. Every activity writes, in ONE transaction, the log
records the workflow had pending, its own step row, what the step produces (outbox rows,
a property, a list membership) and the read models the metrics read.

Exactly once: a step row is keyed (workflow_id, step_seq). Each record is inserted with
ON CONFLICT DO NOTHING first and its effects run only when the row is new, so a retried
activity neither writes nor counts anything twice. Outbox rows carry the idempotency key
`{workflow_id}:{step_seq}:{channel}` that delivery hands to the provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from shared.enrollment import (
    AddToList,
    Complete,
    Convert,
    Effect,
    EndEnrollment,
    EnrollmentRef,
    EnterStage,
    Outcome,
    StepRecord,
    WriteProperty,
)
from shared.journey import Journey
from shared.settings import Settings
from shared.templates import render_lenient
from workers.sending import SELECT_PROPERTIES, Sending, idempotency_key
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

INSERT_STEP = """
INSERT INTO enrollment_steps (workflow_id, step_seq, workspace, journey_id, contact_id,
                              at, stage, action, result, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (workflow_id, step_seq) DO NOTHING
RETURNING step_seq
"""
RECORDED_WRITES = """
SELECT contact_seq, refused_writes FROM enrollment_steps WHERE workflow_id = $1 AND step_seq = $2
"""
RECORD_WRITES = """
UPDATE enrollment_steps SET contact_seq = $3, refused_writes = $4
WHERE workflow_id = $1 AND step_seq = $2
"""
SET_ENROLLMENT_STAGE = "UPDATE enrollments SET stage = $2 WHERE workflow_id = $1"
STAGE_ENTERED = """
INSERT INTO stage_stats AS s (workspace, journey_id, stage, entered, active)
VALUES ($1, $2, $3, 1, 1)
ON CONFLICT (workspace, journey_id, stage)
DO UPDATE SET entered = s.entered + 1, active = s.active + 1
"""
STAGE_LEFT = """
UPDATE stage_stats SET active = active - 1
WHERE workspace = $1 AND journey_id = $2 AND stage = $3
"""
PATH_TAKEN = """
INSERT INTO stage_paths AS p (workspace, journey_id, from_stage, to_node, count)
VALUES ($1, $2, $3, $4, 1)
ON CONFLICT (workspace, journey_id, from_stage, to_node) DO UPDATE SET count = p.count + 1
"""
# Dated stage moves: the metrics of a cohort of enrollment dates (?since=&until=).
STAGE_MOVE = """
INSERT INTO stage_moves (workspace, journey_id, enrolled_at, at, from_stage, to_node)
SELECT workspace, journey_id, enrolled_at, $2, $3, $4 FROM enrollments WHERE workflow_id = $1
"""
WRITE_PROPERTY = """
INSERT INTO contacts AS c (workspace, id, properties)
VALUES ($1, $2, jsonb_build_object($3::text, $4::jsonb))
ON CONFLICT (workspace, id) DO UPDATE
SET properties = c.properties || jsonb_build_object($3::text, $4::jsonb),
    seq = nextval('change_seq'), updated_at = now()
RETURNING seq
"""
# The journey's stage writes: a caller's value committed meanwhile wins (no row: refused).
WRITE_PROPERTY_IF = WRITE_PROPERTY.replace(
    "RETURNING seq",
    """WHERE c.properties -> $3::text IS NOT DISTINCT FROM $5::jsonb
   OR c.properties -> $3::text = $4::jsonb
RETURNING seq""",
)
ADD_MEMBER = """
INSERT INTO list_members (workspace, list, contact_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""
TOUCH_CONTACT = """
INSERT INTO contacts AS c (workspace, id) VALUES ($1, $2)
ON CONFLICT (workspace, id) DO UPDATE SET seq = nextval('change_seq'), updated_at = now()
RETURNING seq
"""
END_ENROLLMENT = """
UPDATE enrollments
SET outcome = $2, end_value = $3, status = $4, ended_at = $5, goal_met_seq = $6,
    completed_at = CASE WHEN $4 = 'completed' THEN $5 ELSE completed_at END
WHERE workflow_id = $1
"""
COMPLETE_ENROLLMENT = """
UPDATE enrollments SET status = 'completed', completed_at = $2 WHERE workflow_id = $1
"""
MARKETING_SENT = "UPDATE enrollments SET marketing_sent = true WHERE workflow_id = $1"
SELECT_ENROLLMENT = """
SELECT marketing_sent, outcome FROM enrollments WHERE workflow_id = $1
"""
# Other enrollments of the same contact that could take the credit for a goal met after
# this one ended (DESIGN §3.6): still running, or left with goal_met at the same change.
SELECT_RIVALS = """
SELECT e.journey_id, v.definition
FROM enrollments e
JOIN journey_versions v
  ON v.workspace = e.workspace AND v.journey_id = e.journey_id AND v.version = e.journey_version
WHERE e.workspace = $1 AND e.contact_id = $2 AND e.journey_id <> $3
  AND (e.status = 'running' OR (e.outcome = 'goal_met' AND e.goal_met_seq = $4))
"""
SELECT_OWN_GOAL = """
SELECT v.definition FROM enrollments e
JOIN journey_versions v
  ON v.workspace = e.workspace AND v.journey_id = e.journey_id AND v.version = e.journey_version
WHERE e.workflow_id = $1
"""
INSERT_CONVERSION = """
INSERT INTO conversions (workspace, journey_id, contact_id, goal_epoch, converted_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""


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


def _heartbeat() -> None:
    # Heartbeats let an exit's cancellation reach a running activity.
    if not activity.info().is_local:
        activity.heartbeat()


class JourneyActivities:
    """The journey's side effects, built with the asyncpg pool; registered as bound methods."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings | None = None) -> None:
        self.pool = pool
        self.sending = Sending(pool, settings or Settings())

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
                    await conn.execute(MARKETING_SENT, ref.workflow_id)
            else:
                decided = await self.sending.recorded(conn, ref, step.step_seq)
        result.send = await self._deliver(ref, step, decided)
        return result

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: CreateTaskRequest) -> StepResult:
        """Records a task for the caller's CRM and POSTs it to the workspace's webhook."""
        action = request.action

        def rendered(properties: dict[str, Any]) -> dict[str, Any]:
            payload = action.model_dump(mode="json", exclude={"type"})
            payload["title"] = render_lenient(action.title, properties)
            if action.notes is not None:
                payload["notes"] = render_lenient(action.notes, properties)
            return payload

        return await self._internal(request, "task", rendered)

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_notification(self, request: SendNotificationRequest) -> StepResult:
        """Records a notification to users/teams/the owner and POSTs it to the webhook."""
        action = request.action

        def rendered(properties: dict[str, Any]) -> dict[str, Any]:
            payload = action.model_dump(mode="json", exclude={"type"})
            payload["message"] = render_lenient(action.message, properties)
            return payload

        return await self._internal(request, "notification", rendered)

    async def _internal(
        self,
        request: CreateTaskRequest | SendNotificationRequest,
        kind: str,
        rendered: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> StepResult:
        """Renders with the contact as it is now (the workflow only hears of the properties
        the journey reads; a template may read any), then records and delivers."""
        ref, step = request.enrollment, request.step
        async with self._step(request) as (conn, result, new):
            if step is None:
                return result
            if new:
                props = await conn.fetchval(SELECT_PROPERTIES, ref.workspace, ref.contact_id)
                payload = rendered(dict(props) if props is not None else request.properties)
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
        local activity only when no other activity is coming to carry it."""
        async with self._step(request) as (_, result, _new):
            pass
        return result

    # --- the shared transaction ----------------------------------------------------------

    @asynccontextmanager
    async def _step(
        self, request: StepRequest
    ) -> AsyncIterator[tuple[PoolConnectionProxy, StepResult, bool]]:
        """One transaction that has applied the pending records and the request's own step
        row; `new` says whether that row was inserted now, i.e. whether to produce the
        step's side effect (a retry finds the row and produces nothing)."""
        _heartbeat()
        result = StepResult()
        ref = request.enrollment
        async with self.pool.acquire() as conn, conn.transaction():
            for record in request.pending:
                await self.apply(conn, ref, record, result)
                _heartbeat()
            new = False
            if request.step is not None:
                new = await self.apply(conn, ref, request.step, result)
            yield conn, result, new

    async def apply(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, record: StepRecord, result: StepResult
    ) -> bool:
        """Inserts the log row; runs its effects only when the row is new. True if new.
        What its property writes came to is kept with the row, so a retry reports it too."""
        inserted = await conn.fetchval(
            INSERT_STEP,
            ref.workflow_id,
            record.step_seq,
            ref.workspace,
            ref.journey_id,
            ref.contact_id,
            record.at,
            record.stage,
            record.action,
            record.result,
            record.detail,
        )
        writes = [e for e in record.effects if isinstance(e, (WriteProperty, AddToList))]
        if inserted is None:
            if writes:
                row = await conn.fetchrow(RECORDED_WRITES, ref.workflow_id, record.step_seq)
                if row is not None:
                    _written(result, row["contact_seq"], writes, row["refused_writes"] or [])
            return False
        result.applied.append(record.step_seq)
        seq: int | None = None
        refused: list[str] = []
        for effect in record.effects:
            if isinstance(effect, WriteProperty) and effect.conditional:
                written = await conn.fetchval(
                    WRITE_PROPERTY_IF,
                    ref.workspace,
                    ref.contact_id,
                    effect.property,
                    effect.value,
                    effect.expected,
                )
                if written is None:
                    refused.append(effect.property)
                else:
                    seq = written
                    refused = [p for p in refused if p != effect.property]
                continue
            seq = await self._effect(conn, ref, record, effect) or seq
        if writes:
            await conn.execute(RECORD_WRITES, ref.workflow_id, record.step_seq, seq, refused)
            if seq is not None or refused:
                _written(result, seq, writes, refused)
        return True

    async def _effect(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, record: StepRecord, effect: Effect
    ) -> int | None:
        ws, journey = ref.workspace, ref.journey_id
        match effect:
            case EnterStage(stage=stage, from_stage=from_stage):
                await conn.execute(SET_ENROLLMENT_STAGE, ref.workflow_id, stage)
                await conn.execute(STAGE_ENTERED, ws, journey, stage)
                await conn.execute(STAGE_MOVE, ref.workflow_id, record.at, from_stage, stage)
                if from_stage is not None:
                    await conn.execute(STAGE_LEFT, ws, journey, from_stage)
                    await conn.execute(PATH_TAKEN, ws, journey, from_stage, stage)
            case WriteProperty(property=name, value=value):
                seq: int = await conn.fetchval(WRITE_PROPERTY, ws, ref.contact_id, name, value)
                return seq
            case AddToList(list=name):
                await conn.execute(ADD_MEMBER, ws, name, ref.contact_id)
                touched: int = await conn.fetchval(TOUCH_CONTACT, ws, ref.contact_id)
                return touched
            case EndEnrollment():
                await conn.execute(
                    END_ENROLLMENT,
                    ref.workflow_id,
                    effect.outcome.value,
                    effect.end_value,
                    effect.status.value,
                    record.at,
                    effect.goal_met_seq,
                )
                if effect.from_stage is not None:
                    await conn.execute(STAGE_LEFT, ws, journey, effect.from_stage)
                    await conn.execute(PATH_TAKEN, ws, journey, effect.from_stage, effect.to_node)
                    await conn.execute(
                        STAGE_MOVE, ref.workflow_id, record.at, effect.from_stage, effect.to_node
                    )
            case Convert():
                await self._convert(conn, ref, record, effect)
            case Complete():
                await conn.execute(COMPLETE_ENROLLMENT, ref.workflow_id, record.at)
        return None

    async def _convert(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, record: StepRecord, effect: Convert
    ) -> None:
        """Counts the conversion when DESIGN §3.6 allows it. `marketing_sent` is read from
        the row, not trusted from the workflow: it is set in the same transaction as the
        outbox row, so even a send that raced an exit's cancellation is seen right."""
        row = await conn.fetchrow(SELECT_ENROLLMENT, ref.workflow_id)
        if row is None or not row["marketing_sent"] or row["outcome"] == Outcome.SUPPRESSED:
            return
        if effect.after_end and await self._credit_goes_elsewhere(conn, ref, effect):
            return
        await conn.execute(
            INSERT_CONVERSION,
            ref.workspace,
            ref.journey_id,
            ref.contact_id,
            ref.goal_epoch,
            record.at,
        )

    async def _credit_goes_elsewhere(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, effect: Convert
    ) -> bool:
        own = await conn.fetchval(SELECT_OWN_GOAL, ref.workflow_id)
        if own is None:
            return False
        goal = Journey.model_validate(own).goal
        if goal is None:
            return False
        rivals = await conn.fetch(
            SELECT_RIVALS, ref.workspace, ref.contact_id, ref.journey_id, effect.goal_met_seq
        )
        for rival in rivals:
            other = Journey.model_validate(rival["definition"]).goal
            if other is not None and other.criteria == goal.criteria:
                return True
        return False
