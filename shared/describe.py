"""The words an enrollment uses for itself: actions, waits and times as the Temporal UI's
current details, activity summaries and the `state` query show them. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.enrollment import EnrollmentState, EnrollmentView
from shared.journey import (
    Action,
    BranchOn,
    CreateTask,
    GoTo,
    Journey,
    SendMessage,
    SendNotification,
    SetProperty,
    Split,
    Wait,
    WaitForEvent,
)


def when(at: datetime) -> str:
    """A moment, to the minute: `2026-11-29 14:05 UTC`."""
    return at.strftime("%Y-%m-%d %H:%M UTC")


def iso_duration(delta: timedelta) -> str:
    """A duration as ISO-8601, as journeys write it: `P2D`, `PT30M`, `P1DT2H`."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "" if days else "T0S")


def describe_action(action: Action) -> str:
    """An action in words, for current details, activity summaries and the state query."""
    match action:
        case SendMessage():
            kind = "marketing " if action.marketing else ""
            return f"send {kind}{'+'.join(action.channels)} {action.template!r}"
        case Wait():
            return f"wait {iso_duration(action.duration)}"
        case WaitForEvent():
            return f"wait up to {iso_duration(action.timeout)} for {action.event.describe()}"
        case CreateTask():
            return f"create task {action.title!r} for {action.assign_to}"
        case SetProperty():
            return f"set {action.property} = {action.value!r}"
        case SendNotification():
            return f"notify {', '.join(action.to)}: {action.message!r}"
        case GoTo():
            return f"go to {action.target}"
        case BranchOn():
            return f"branch {action.name!r} ({len(action.paths)} paths)"
        case Split():
            shares = "/".join(f"{v.name} {v.percent}%" for v in action.variants)
            return f"split {action.name!r} ({shares})"
    return str(action.type)


def current_details(contact_id: str, stage: str | None, running: bool, doing: str) -> str:
    """The workflow's current details: who, where (while running), doing what."""
    where = f"stage {stage} · " if stage and running else ""
    return f"{contact_id} · {where}{doing}"


def view(
    journey: Journey, state: EnrollmentState, details: str, action: Action | None
) -> EnrollmentView:
    """The `state` query's answer: where the contact is and what happens next."""
    return EnrollmentView(
        phase=state.phase,
        stage=state.stage,
        next_action=describe_action(action) if action is not None else None,
        details=details,
        stage_entries=state.stage_entries,
        step_seq=state.step_seq,
        outcome=state.outcome,
        end_value=state.end_value,
        reason=state.exit_reason,
        explanation=state.explanation,
        marketing_sent=state.marketing_sent,
        waiting_until=state.wait_until,
        window_until=state.window_until,
        contact_seq=state.contact.event_seq,
        pending_steps=len(state.pending),
        failed_sends=state.failed_sends,
    )
