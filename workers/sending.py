"""Deciding a step's messages, tasks and notifications, and waiting for their delivery.

`queue_message` runs inside the step's transaction, only when the step row is new: it
applies the rules (unsubscribe, send window, frequency cap), renders the template and
writes one outbox row per channel. What it decided goes onto the step row, so a retried
activity answers the same (`recorded`). The commit wakes the sender (services/sender.py),
which hands each queued row to its provider in another process; `delivered` waits until
every row of the step has an outcome and records it on the step.

The worker never talks to a provider, so killing it never leaves a message half handed
over: a retried activity finds the rows queued, `sending` (the sender has them) or done,
and waits again. A wait cancelled by an exit withdraws the rows the sender has not begun.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.providers import Email
from services.rendering import renderer
from shared.channels import (
    CHANNEL_ADDRESS,
    ChannelSettings,
    FrequencyCap,
    contact_zone,
    header_problem,
    next_opening,
    one_address,
    unsubscribed,
)
from shared.enrollment import EnrollmentRef, StepRecord
from shared.journey import SendWindow
from shared.settings import Settings
from shared.templates import RenderError, TemplateBody
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store import outbox as outbox_store
from store import templates as templates_store
from store import workspaces as workspaces_store
from workers.email_tracking import EmailTracking
from workers.steps import SendMessageRequest, SendOutcome

PENDING = ("queued", "sending")
FIRST_LOOK, LONGEST_LOOK = 0.02, 0.5
"""Seconds between looks at a step's rows while the sender has them (doubling)."""


def idempotency_key(workflow_id: str, step_seq: int, channel: str | None = None) -> str:
    key = f"{workflow_id}:{step_seq}"
    return f"{key}:{channel}" if channel else key


def _window_words(window: SendWindow) -> str:
    days = ",".join(window.days) if len(window.days) < 7 else "every day"
    return f"{window.start:%H:%M}-{window.end:%H:%M} {days}"


class Sending:
    """Rules, rendering and queueing for the journey's activities, and the wait for the
    sender's outcome (the worker itself never talks to a provider)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.email = Email(settings)
        self.renderer = renderer(settings)
        self.tracking = EmailTracking(settings)

    # --- inside the step's transaction ------------------------------------------------------

    async def queue_message(
        self, conn: PoolConnectionProxy, request: SendMessageRequest, step: StepRecord
    ) -> SendOutcome:
        ref, action = request.enrollment, request.action
        ws = await workspaces_store.channel_settings(conn, ref.workspace)
        props = await contacts_store.properties(conn, ref.workspace, ref.contact_id)
        if props is None:
            props = dict(request.properties)
        channels = list(action.channels)
        dropped: dict[str, str] = {}
        if action.marketing:
            for channel in channels:
                prop = unsubscribed(props, channel)
                if prop is not None:
                    dropped[channel] = prop
            channels = [c for c in channels if c not in dropped]
            if not channels:
                names = sorted(set(dropped.values()))
                return await self._decided(
                    conn,
                    ref,
                    step,
                    SendOutcome(
                        status="skipped",
                        reason="unsubscribed",
                        message=f"not sent: the contact is unsubscribed ({', '.join(names)})",
                        channels={
                            c: {"status": "unsubscribed", "by": p} for c, p in dropped.items()
                        },
                    ),
                )
        window = request.delivery.send_window or ws.send_window
        if window is not None:
            zone, zone_words = contact_zone(props, window, ws.timezone)
            opens = next_opening(window, zone, step.at)
            if opens is not None:
                return await self._decided(
                    conn,
                    ref,
                    step,
                    SendOutcome(
                        status="deferred",
                        reason="send_window",
                        until=opens,
                        message=f"outside the send window {_window_words(window)} in "
                        f"{zone_words}; waits until it opens at {opens:%Y-%m-%d %H:%M} UTC",
                    ),
                )
        if action.marketing and ws.frequency_cap is not None:
            key = idempotency_key(ref.workflow_id, step.step_seq)
            until = await self._reserve(conn, ref, key, step.at, ws.frequency_cap)
            if until is not None:
                cap = ws.frequency_cap
                words = f"the frequency cap of {cap.max} marketing message(s) per {cap.per}"
                skip = request.delivery.when_capped == "skip"
                outcome = SendOutcome(
                    status="skipped" if skip else "deferred",
                    reason="frequency_cap",
                    until=None if skip else until,
                    message=f"not sent: {words} is reached"
                    if skip
                    else f"{words} is reached; waits until {until:%Y-%m-%d %H:%M} UTC",
                )
                return await self._decided(conn, ref, step, outcome)
        template = await self._template(conn, ref.workspace, action.template)
        for channel in channels:
            payload: dict[str, Any] = {
                "template": action.template,
                "marketing": action.marketing,
                "properties": request.properties,
            }
            key = idempotency_key(ref.workflow_id, step.step_seq, channel)
            plan = self.tracking.plan(key, action, request.delivery) if channel == "email" else None
            variables: dict[str, Any] = {"trigger": request.trigger or {}}
            if plan is not None:
                variables["unsubscribe_url"] = plan.unsubscribe_url
            status, error, reason = await self._content(
                ws, channel, template, action.template, props, variables
            )
            if isinstance(status, dict):
                if plan is not None:
                    tracked = await self.tracking.apply(
                        conn, plan, status["content"], key, ref, step, action
                    )
                    status = {**status, "content": tracked}
                payload.update(status)
                status = "queued"
            elif reason is not None:
                payload["failure"] = reason
            await self._outbox(conn, ref, step, "message", channel, payload, status, error)
        outcome = SendOutcome(
            status="sending",
            channels={c: {"status": "unsubscribed", "by": p} for c, p in dropped.items()},
        )
        return await self._decided(conn, ref, step, outcome)

    async def queue_internal(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        step: StepRecord,
        kind: str,
        payload: dict[str, Any],
    ) -> SendOutcome:
        """A task or notification: to the workspace's webhook, or kept when it has none."""
        ws = await workspaces_store.channel_settings(conn, ref.workspace)
        status = "queued" if ws.webhook is not None else "kept"
        await self._outbox(conn, ref, step, kind, None, payload, status, None)
        return await self._decided(conn, ref, step, SendOutcome(status="sending"))

    async def recorded(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, step: int
    ) -> SendOutcome:
        """What the first attempt of this step decided (a retry must answer the same)."""
        raw = await enrollments_store.recorded_outcome(conn, ref.workflow_id, step)
        if raw is None:
            return SendOutcome(status="sending")
        return SendOutcome.model_validate(raw)

    async def _decided(
        self, conn: PoolConnectionProxy, ref: EnrollmentRef, step: StepRecord, outcome: SendOutcome
    ) -> SendOutcome:
        # while sending, the row keeps the workflow's word for the step (queued, created)
        result = None if outcome.status == "sending" else outcome.status
        await enrollments_store.record_outcome(
            conn,
            ref.workflow_id,
            step.step_seq,
            result,
            outcome.model_dump(mode="json", exclude_defaults=True),
        )
        return outcome

    async def _reserve(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        key: str,
        at: datetime,
        cap: FrequencyCap,
    ) -> datetime | None:
        """Counts the message against the cap, or says when the cap next allows one.
        The advisory lock serializes every reservation for the contact: of two journeys
        racing, the second sees the first's row."""
        await outbox_store.lock_contact_cap(conn, ref.workspace, ref.contact_id)
        recent = await outbox_store.recent_marketing(
            conn, ref.workspace, ref.contact_id, at - cap.per, cap.max
        )
        if len(recent) >= cap.max:
            return recent[cap.max - 1] + cap.per
        await outbox_store.reserve_marketing(conn, key, ref.workspace, ref.contact_id, at)
        return None

    async def _template(
        self, conn: PoolConnectionProxy, workspace: str, name: str
    ) -> TemplateBody | None:
        return await templates_store.body(conn, workspace, name)

    async def _content(
        self,
        ws: ChannelSettings,
        channel: str,
        template: TemplateBody | None,
        name: str,
        props: dict[str, Any],
        variables: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any] | str, str | None, str | None]:
        """The rendered message and its address, or ("kept"/"failed", why, reason)."""
        configured = self.email.configured if channel == "email" else ws.webhook is not None
        if not configured:
            return "kept", f"no {channel} channel is configured", None
        if template is None:
            return "failed", f"template {name!r} does not exist", "template_missing"
        address_prop = CHANNEL_ADDRESS[channel]
        to = props.get(address_prop)
        if not isinstance(to, str) or not to:
            why = f"the contact has no {address_prop!r} property for {channel}"
            return "failed", why, "no_address"
        if channel == "email" and not one_address(to):
            why = f"the contact's {address_prop!r} is not exactly one email address"
            return "failed", why, "invalid_address"
        if channel == "email" and not template.subject:
            return "failed", f"template {name!r} has no subject for email", "invalid_template"
        if channel == "email" and template.text is None and template.html is None:
            why = f"template {name!r} has no text or html for email"
            return "failed", why, "invalid_template"
        if channel != "email" and template.text is None:
            return "failed", f"template {name!r} has no text for {channel}", "invalid_template"
        try:
            rendered = await self.renderer.render(template, props, variables)
        except RenderError as exc:
            why = f"template {name!r} cannot render its {exc.part}: {exc.message}"
            return "failed", why, exc.reason
        if channel == "email" and (problem := header_problem(rendered.subject or "")):
            why = f"template {name!r} renders a subject that cannot be a header: {problem}"
            return "failed", why, "invalid_header"
        content = rendered.model_dump(exclude_none=True)
        if channel != "email":
            content = {"text": rendered.text}
        return {"to": to, "content": content}, None, None

    async def _outbox(
        self,
        conn: PoolConnectionProxy,
        ref: EnrollmentRef,
        step: StepRecord,
        kind: str,
        channel: str | None,
        payload: dict[str, Any],
        status: str,
        error: str | None,
    ) -> None:
        await outbox_store.queue(
            conn,
            idempotency_key(ref.workflow_id, step.step_seq, channel),
            ref.workspace,
            ref.workflow_id,
            ref.journey_id,
            ref.contact_id,
            kind,
            channel,
            {**payload, "stage": step.stage, "step_seq": step.step_seq},
            status,
            error,
        )

    # --- after the commit -------------------------------------------------------------------

    async def delivered(self, ref: EnrollmentRef, step: int, decided: SendOutcome) -> SendOutcome:
        """Waits until the sender has an outcome for every row of the step and records it
        on the step; raises (retryable) after `send_wait_seconds`, naming what holds it up.
        Cancelled (an exit), it withdraws the rows the sender has not begun to send."""
        key = idempotency_key(ref.workflow_id, step)
        info = activity.info()
        if info.attempt > 1:
            # an earlier attempt was cancelled by a worker shutting down, not by an exit
            # (an exit does not retry): its withdrawn rows are wanted after all
            await outbox_store.restore(self.pool, ref.workflow_id, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.send_wait_seconds
        pause = FIRST_LOOK
        try:
            while True:
                rows = await outbox_store.step_rows(self.pool, ref.workflow_id, key)
                waiting = [r for r in rows if r["status"] in PENDING]
                if not waiting:
                    break
                if loop.time() >= deadline:
                    raise ApplicationError(_held_up(waiting))
                if not info.is_local:
                    activity.heartbeat()
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_LOOK)
        except asyncio.CancelledError:
            await asyncio.shield(outbox_store.withdraw(self.pool, ref.workflow_id, key))
            raise
        channels: dict[str, Any] = dict(decided.channels)
        for row in rows:
            channels[row["channel"] or row["kind"]] = _entry(row)
        return await self._finish(ref, step, channels)

    async def _finish(self, ref: EnrollmentRef, step: int, channels: dict[str, Any]) -> SendOutcome:
        statuses = {c["status"] for c in channels.values() if c["status"] != "unsubscribed"}
        failed = [name for name, c in channels.items() if c["status"] == "failed"]
        if failed:
            why = "; ".join(f"{n}: {channels[n].get('error')}" for n in failed)
            reason = next(
                (channels[n]["reason"] for n in failed if channels[n].get("reason")),
                "provider_refused",
            )
            outcome = SendOutcome(status="failed", reason=reason, message=why, channels=channels)
        elif statuses <= {"kept"}:
            outcome = SendOutcome(
                status="queued",
                message="kept in the outbox: no channel is configured",
                channels=channels,
            )
        else:
            outcome = SendOutcome(status="sent", channels=channels)
        await enrollments_store.record_outcome(
            self.pool,
            ref.workflow_id,
            step,
            None if outcome.status == "queued" else outcome.status,
            outcome.model_dump(mode="json", exclude_defaults=True),
        )
        return outcome


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    """The step log's word for a row another attempt already delivered, failed or kept."""
    entry: dict[str, Any] = {"status": row["status"]}
    answer = row["answer"]
    if answer is not None:
        entry["answer"] = answer
        if answer.get("resends"):
            entry["resends"] = answer["resends"]
    if row["last_error"] and row["status"] != "delivered":
        entry["error"] = row["last_error"]
    failure = (row["payload"] or {}).get("failure") or (answer or {}).get("reason")
    if failure and row["status"] == "failed":
        entry["reason"] = failure
    return entry


def _held_up(rows: list[asyncpg.Record]) -> str:
    """Why a send is still waiting, for the activity's failure (the Temporal UI shows it)."""
    parts = []
    for row in rows:
        name = row["channel"] or row["kind"]
        why = row["last_error"] or "waiting for a sender to take it"
        parts.append(f"{name}: not delivered yet ({why})")
    return "; ".join(parts)
