"""Leaving a journey: which exit applies, in which order, and what leaving writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import exits
from shared.contact import ContactState
from shared.enrollment import (
    AddToList,
    Convert,
    EndEnrollment,
    EnrollmentState,
    Outcome,
    Phase,
    Unenroll,
    WriteProperty,
)
from shared.journey import resolve_target
from tests.helpers.journeys import journey, send, stage, wait

GOAL = {"criteria": {"property": "plan", "op": "eq", "value": "paid"}}


def _state(
    properties: dict[str, Any] | None = None, lists: list[str] | None = None
) -> EnrollmentState:
    contact = ContactState(properties=properties or {}, lists=lists or [], event_seq=7)
    return EnrollmentState(contact=contact, stage="onboarding")


FLOW = journey(
    [stage("onboarding", send(), wait("P1D"))],
    eligible_lists=["trial"],
    suppression_lists=["staff"],
    goal=GOAL,
    ends={
        "success": {"value": "customer", "add_to_list": "customers"},
        "failure": [{"value": "churned"}],
    },
)


def test_no_exit_while_nothing_applies() -> None:
    assert exits.exit_for(FLOW, _state(lists=["trial"])) is None


def test_the_goal_comes_first_and_is_explained() -> None:
    state = _state({"plan": "paid", "journey_stage": "customer"}, lists=["staff"])
    leaving = exits.exit_for(FLOW, state)
    assert leaving is not None
    assert (leaving.outcome, leaving.to_node, leaving.goal_met_seq) == (
        Outcome.GOAL_MET,
        "exit:goal_met",
        7,
    )
    assert leaving.explanation is not None and leaving.explanation["result"] is True


def test_then_suppression_then_removal_then_end_value_then_unenroll() -> None:
    suppressed = exits.exit_for(FLOW, _state(lists=["staff"]))
    assert suppressed is not None and suppressed.outcome is Outcome.SUPPRESSED
    assert suppressed.reason == "joined suppression list 'staff'"
    removed = exits.exit_for(FLOW, _state({"journey_stage": "customer"}))
    assert removed is not None and removed.outcome is Outcome.REMOVED_FROM_LIST
    early = exits.exit_for(FLOW, _state({"journey_stage": "customer"}, lists=["trial"]))
    assert early is not None and early.outcome is Outcome.ENDED_EARLY
    assert (early.end_value, early.add_to_list) == ("customer", "customers")
    state = _state(lists=["trial"])
    state.unenroll = Unenroll(reason="journey_deactivated")
    left = exits.exit_for(FLOW, state)
    assert left is not None and left.outcome is Outcome.JOURNEY_DEACTIVATED
    state.unenroll = Unenroll(reason="asked by support")
    left = exits.exit_for(FLOW, state)
    assert left is not None and (left.outcome, left.reason) == (
        Outcome.UNENROLLED,
        "unenrolled: asked by support",
    )


def test_one_constructor_names_every_node() -> None:
    assert exits.leave(Outcome.SUCCESS, "r").to_node == "end:success"
    assert exits.leave(Outcome.FAILURE, "r", end_value="churned").to_node == "end:failure:churned"
    assert exits.leave(Outcome.LOOP_LIMIT, "r").to_node == "exit:loop_limit"
    assert exits.leave(Outcome.DELIVERY_FAILED, "r").model_fields_set == {
        "outcome",
        "to_node",
        "reason",
    }


def test_go_to_an_end() -> None:
    success = exits.end_at(FLOW, resolve_target("success"))
    assert (success.outcome, success.end_value, success.add_to_list) == (
        Outcome.SUCCESS,
        "customer",
        "customers",
    )
    failure = exits.end_at(FLOW, resolve_target("failure:churned"))
    assert (failure.to_node, failure.reason) == (
        "end:failure:churned",
        "reached the failure end 'churned'",
    )


def test_leaving_writes_the_end_its_value_its_list_and_a_goal_conversion() -> None:
    state = _state({"journey_stage": "onboarding"}, lists=["trial"])
    leaving = exits.success_end(FLOW)
    effects = exits.leaving_effects(FLOW, state, leaving, Phase.IN_ATTRIBUTION_WINDOW)
    assert [type(e) for e in effects] == [EndEnrollment, WriteProperty, AddToList]
    write = effects[1]
    assert isinstance(write, WriteProperty) and (write.conditional, write.expected) == (
        True,
        "onboarding",
    )
    assert state.contact.properties["journey_stage"] == "customer"
    assert "customers" in state.contact.lists and "list:customers" in state.own_writes
    goal = exits.exit_for(FLOW, _state({"plan": "paid"}, lists=["trial"]))
    assert goal is not None
    assert isinstance(exits.leaving_effects(FLOW, _state(), goal, Phase.COMPLETED)[-1], Convert)


def test_the_window_follows_unless_the_goal_or_suppression_ended_it() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = _state()
    assert exits.left(state, FLOW, exits.success_end(FLOW), now) is Phase.IN_ATTRIBUTION_WINDOW
    assert state.window_until == now + timedelta(days=3)
    for outcome in (Outcome.GOAL_MET, Outcome.SUPPRESSED):
        assert exits.left(_state(), FLOW, exits.leave(outcome, "r"), now) is Phase.COMPLETED
    no_goal = journey([stage("a", wait("P1D"))])
    assert exits.left(_state(), no_goal, exits.success_end(no_goal), now) is Phase.COMPLETED


def test_a_goal_met_in_the_window_is_kept_with_its_explanation() -> None:
    state = _state({"plan": "trial"})
    assert not exits.goal_met_in_window(FLOW, state)
    state.contact = state.contact.model_copy(update={"properties": {"plan": "paid"}})
    assert exits.goal_met_in_window(FLOW, state)
    assert state.goal_met_in_window and state.explanation is not None
    action, result, _, effects = exits.window_closed(state)
    assert (action, result, len(effects)) == ("goal_met", "after_end", 2)
    state = _state()
    state.window_closed_early = "unenrolled: x"
    assert exits.window_closed(state)[:3] == ("complete", "completed", {"reason": "unenrolled: x"})
