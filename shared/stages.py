"""Where an enrollment is in its journey: the action due next, and how a stage value
moves it (docs/design.md, "Stage moves"). Pure; the workflow acts on what these decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.contact import ContactEvent
from shared.criteria import apply_event, matches_event
from shared.enrollment import Effect, EnrollmentState, EnterStage, Phase
from shared.journey import Action, Journey, WaitForEvent
from shared.own_writes import stage_write


def current_action(journey: Journey, state: EnrollmentState) -> Action | None:
    """The action due in the current stage, None when the stage has run them all."""
    assert state.stage is not None
    actions = journey.stage_by_key(state.stage).actions
    return actions[state.action_index] if state.action_index < len(actions) else None


def stage_value_changed(journey: Journey, state: EnrollmentState, value: Any, reason: str) -> None:
    """A stage's value moves the contact to that stage between actions (its own stage
    value cancels a move); an end value is an exit (`shared.exits`); any other value
    leaves the contact where it is."""
    stage = journey.stage_by_value(value)
    if stage is None:
        return
    if stage.key == state.stage:
        state.stage_move = state.stage_move_reason = None
    else:
        state.stage_move, state.stage_move_reason = stage.key, reason


def enter(
    journey: Journey, state: EnrollmentState, key: str, reason: str
) -> tuple[dict[str, Any], list[Effect]]:
    """Enters stage `key`: its value goes to the stage property (a conditional write),
    its actions start from the first, any pending move or wait is over. Returns the log
    record's detail and effects."""
    stage = journey.stage_by_key(key)
    effects: list[Effect] = [EnterStage(stage=key, from_stage=state.stage)]
    effects += stage_write(state, journey.stage_property, stage.value)
    from_stage = state.stage
    state.stage, state.action_index = key, 0
    state.stage_entries += 1
    state.stage_move = state.stage_move_reason = None
    state.wait_until, state.event_arrived = None, False
    return {"reason": reason, "from": from_stage, "entry": state.stage_entries}, effects


def hear_event(journey: Journey, state: EnrollmentState, event: ContactEvent) -> bool:
    """Counts an event of the contact, unless the starting snapshot already counted it
    (at or below the watermark) or its id was seen; marks a `wait_for_event` it answers.
    False when it was ignored."""
    if event.seq <= state.event_watermark or event.id in state.contact.seen_event_ids:
        return False
    state.contact = apply_event(state.contact, event, journey)
    waiting = current_action(journey, state) if state.wait_until is not None else None
    if isinstance(waiting, WaitForEvent) and matches_event(waiting.event, event):
        state.event_arrived = True
    return True


def caller_moved(journey: Journey, state: EnrollmentState, prop: str, before: Any) -> None:
    """The caller changed the stage property from `before` (a snapshot, or a caller's
    value that won over the journey's own write): while running, that moves the contact."""
    after = state.contact.properties.get(prop)
    if after != before and state.phase is Phase.RUNNING:
        stage_value_changed(journey, state, after, f"the contact's {prop} changed to {after!r}")


@dataclass(frozen=True)
class Next:
    """An action finished: continue with the stage's next action, or jump to `go_to`.
    (Defined here, outside the workflow module, so the sandbox does not build the class
    again for every workflow run.)"""

    go_to: str | None = None
