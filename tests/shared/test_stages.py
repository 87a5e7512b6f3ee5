"""Where an enrollment is: the action due, stage entry, stage moves and events heard."""

from __future__ import annotations

from datetime import UTC, datetime

from shared import stages
from shared.contact import ContactEvent, ContactState
from shared.enrollment import EnrollmentState, EnterStage, Phase, WriteProperty
from shared.journey import Wait
from tests.helpers.journeys import go_to, journey, send, stage, wait, wait_for_event

FLOW = journey(
    [
        stage("a", send(), wait_for_event("demo", "P1D")),
        stage("b", wait("P1D"), go_to("success")),
    ]
)


def _state(**fields: object) -> EnrollmentState:
    return EnrollmentState(contact=ContactState(event_seq=5), **fields)  # type: ignore[arg-type]


def test_entering_a_stage_writes_its_value_and_starts_at_its_first_action() -> None:
    state = _state(stage="a", action_index=1, stage_move="b", wait_until=datetime.now(UTC))
    detail, effects = stages.enter(FLOW, state, "b", "go_to from a")
    assert (state.stage, state.action_index, state.stage_entries) == ("b", 0, 1)
    assert state.stage_move is None and state.wait_until is None
    assert detail == {"reason": "go_to from a", "from": "a", "entry": 1}
    assert effects[0] == EnterStage(stage="b", from_stage="a")
    assert isinstance(effects[1], WriteProperty) and effects[1].value == "b"
    assert isinstance(stages.current_action(FLOW, state), Wait)
    # already holding the value: no write
    _, again = stages.enter(FLOW, state, "b", "moved")
    assert again == [EnterStage(stage="b", from_stage="b")]


def test_no_action_left_in_the_stage() -> None:
    assert stages.current_action(FLOW, _state(stage="b", action_index=2)) is None


def test_a_stage_value_moves_the_contact_its_own_cancels_a_move_others_do_nothing() -> None:
    state = _state(stage="a")
    stages.stage_value_changed(FLOW, state, "b", "caller")
    assert (state.stage_move, state.stage_move_reason) == ("b", "caller")
    stages.stage_value_changed(FLOW, state, "a", "back")
    assert state.stage_move is None
    stages.stage_value_changed(FLOW, state, "customer", "an end")
    assert state.stage_move is None


def test_the_caller_moves_the_contact_only_while_running() -> None:
    state = _state(stage="a")
    state.contact = state.contact.model_copy(update={"properties": {"journey_stage": "b"}})
    stages.caller_moved(FLOW, state, "journey_stage", "a")
    assert state.stage_move == "b"
    ended = _state(stage="a", phase=Phase.IN_ATTRIBUTION_WINDOW)
    ended.contact = state.contact
    stages.caller_moved(FLOW, ended, "journey_stage", "a")
    assert ended.stage_move is None


def test_an_event_counts_once_and_answers_the_wait_it_matches() -> None:
    state = _state(stage="a", action_index=1, wait_until=datetime.now(UTC), event_watermark=5)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    old = ContactEvent(id="e0", seq=5, type="demo", occurred_at=at)
    assert not stages.hear_event(FLOW, state, old)
    other = ContactEvent(id="e1", seq=6, type="page_viewed", occurred_at=at)
    assert stages.hear_event(FLOW, state, other) and not state.event_arrived
    demo = ContactEvent(id="e2", seq=7, type="demo", occurred_at=at)
    assert stages.hear_event(FLOW, state, demo) and state.event_arrived
    assert not stages.hear_event(FLOW, state, demo)  # the same id again
