"""The journey's own writes against caller snapshots."""

from __future__ import annotations

from shared import own_writes
from shared.contact import ContactState
from shared.enrollment import ContactChanged, EnrollmentState, HeldValue


def _state() -> EnrollmentState:
    return EnrollmentState(contact=ContactState(properties={"journey_stage": "a"}, event_seq=1))


def test_an_older_snapshot_does_not_undo_a_write_in_flight_and_is_held() -> None:
    state = _state()
    writes = own_writes.stage_write(state, "journey_stage", "b")
    assert writes[0].expected == "a" and state.contact.properties["journey_stage"] == "b"
    own_writes.apply_snapshot(state, ContactChanged(seq=3, properties={"journey_stage": "c"}))
    assert state.contact.properties["journey_stage"] == "b"
    held = state.own_writes["journey_stage"].held
    assert held == HeldValue(seq=3, value="c", present=True)


def test_a_snapshot_at_or_after_the_commit_drops_the_own_write() -> None:
    state = _state()
    own_writes.write_locally(state, "journey_stage", "b")
    own_writes.dated(state, "journey_stage", "b", 4)
    own_writes.apply_snapshot(state, ContactChanged(seq=4, properties={"journey_stage": "b"}))
    assert "journey_stage" not in state.own_writes


def test_lists_the_journey_joined_stay_until_a_snapshot_reflects_them() -> None:
    state = _state()
    own_writes.join_locally(state, "customers")
    own_writes.apply_snapshot(state, ContactChanged(seq=2, lists=["trial"]))
    assert state.contact.lists == ["customers", "trial"]


def test_a_refused_write_gives_way_to_the_callers_value_when_patched() -> None:
    state = _state()
    own_writes.write_locally(state, "journey_stage", "b")
    own_writes.apply_snapshot(state, ContactChanged(seq=3, properties={"journey_stage": "c"}))
    applied: list[tuple[str, HeldValue]] = []
    own_writes.settle(
        state, {"journey_stage": "b"}, lambda: False, lambda k, h: applied.append((k, h))
    )
    assert applied == [] and "journey_stage" in state.own_writes  # an old history: kept
    own_writes.settle(
        state, {"journey_stage": "b"}, lambda: True, lambda k, h: applied.append((k, h))
    )
    assert applied == [("journey_stage", HeldValue(seq=3, value="c", present=True))]
    assert "journey_stage" not in state.own_writes
    assert own_writes.take_held(state, "journey_stage", applied[0][1]) == "b"
    assert state.contact.properties["journey_stage"] == "c"


def test_a_held_snapshot_older_than_the_commit_is_forgotten() -> None:
    state = _state()
    own_writes.write_locally(state, "journey_stage", "b")
    own_writes.apply_snapshot(state, ContactChanged(seq=3, properties={"journey_stage": "c"}))
    own_writes.dated(state, "journey_stage", "b", 5)
    asked = []
    own_writes.settle(state, {}, lambda: asked.append(1) or True, lambda k, h: None)
    assert asked == [] and state.own_writes["journey_stage"].held is None
