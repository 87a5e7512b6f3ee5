"""Who enters a journey, where, and who is refused."""

from __future__ import annotations

from typing import Any

from shared.contact import ContactState
from shared.entry import ContactView, enters, entry_stage, refusal_for
from tests.helpers.journeys import journey, send, stage, wait

FLOW = journey(
    [stage("onboarding", send(), wait("P1D")), stage("nudge", wait("P1D"))],
    eligible_lists=["trial"],
    suppression_lists=["staff"],
    enroll_empty_stage=True,
)


def _view(lists: list[str], **properties: Any) -> ContactView:
    return ContactView(properties, frozenset(lists))


def test_any_stage_value_enters_and_an_end_or_other_value_does_not() -> None:
    assert enters(FLOW, _view(["trial"], journey_stage="nudge"))
    assert enters(FLOW, _view(["trial"], journey_stage="onboarding"))
    assert enters(FLOW, _view(["trial"]))  # empty, with enroll_empty_stage
    assert not enters(FLOW, _view(["trial"], journey_stage="customer"))
    assert not enters(FLOW, _view(["trial"], journey_stage="elsewhere"))
    assert not enters(FLOW, _view([], journey_stage="nudge"))


def test_the_enrollment_begins_in_the_stage_its_value_names() -> None:
    assert entry_stage(FLOW, {"journey_stage": "nudge"}) == "nudge"
    assert entry_stage(FLOW, {}) == "onboarding"
    assert entry_stage(FLOW, {"journey_stage": "elsewhere"}) == "onboarding"


def test_an_end_value_is_refused_after_the_lists_and_before_suppression() -> None:
    at_end = ContactState(properties={"journey_stage": "churned"}, lists=["trial", "staff"])
    refused = refusal_for(FLOW, at_end)
    assert refused is not None and refused.reason == "already_at_end"
    assert refused.explanation is not None and refused.explanation["result"] is True
    outside = ContactState(properties={"journey_stage": "churned"}, lists=[])
    assert (refusal_for(FLOW, outside) or refused).reason == "not_eligible"
    staff = ContactState(properties={"journey_stage": "nudge"}, lists=["trial", "staff"])
    assert (refusal_for(FLOW, staff) or refused).reason == "suppressed"
    assert (
        refusal_for(FLOW, ContactState(properties={"journey_stage": "nudge"}, lists=["trial"]))
        is None
    )
