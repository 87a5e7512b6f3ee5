""" "Why is this contact not in my journey?", answered rule by rule."""

from __future__ import annotations

from shared.contact import ContactState
from shared.eligibility import eligibility
from tests.helpers.journeys import journey, send, stage, wait

FLOW = journey(
    [stage("onboarding", send(), wait("P1D")), stage("nudge", wait("P1D"))],
    eligible_lists=["trial"],
    suppression_lists=["staff"],
    goal={"criteria": {"property": "plan", "op": "eq", "value": "paid"}},
    enroll_empty_stage=False,
)


def _answer(properties: dict[str, object], lists: list[str], **kw: object):  # type: ignore[no-untyped-def]
    state = ContactState(properties=properties, lists=lists)
    status = kw.get("journey_status", "active")
    return eligibility("j", FLOW, str(status), "ada", state, kw.get("enrolled"))  # type: ignore[arg-type]


def test_a_contact_that_would_enroll_and_where() -> None:
    found = _answer({"journey_stage": "nudge"}, ["trial"])
    assert (found.would_enroll, found.stage, found.reason) == (True, "nudge", None)
    assert [c.check for c in found.checks] == [
        "eligible_lists",
        "stage_value",
        "suppression_lists",
        "goal",
        "not_enrolled_before",
        "journey_active",
    ]
    assert all(c.passed for c in found.checks)


def test_each_failing_check_names_its_reason() -> None:
    assert _answer({"journey_stage": "nudge"}, []).reason == "not_eligible"
    at_end = _answer({"journey_stage": "customer"}, ["trial"])
    assert at_end.reason == "already_at_end" and at_end.checks[1].explanation is not None
    assert _answer({}, ["trial"]).reason == "no_stage_value"  # enroll_empty_stage is off
    assert _answer({"journey_stage": "x"}, ["trial"]).reason == "no_stage_value"
    suppressed = _answer({"journey_stage": "nudge"}, ["trial", "staff"])
    assert (suppressed.reason, suppressed.checks[2].passed) == ("suppressed", False)
    met = _answer({"journey_stage": "nudge", "plan": "paid"}, ["trial"])
    assert met.reason == "goal_already_met"
    assert met.checks[3].explanation is not None and met.checks[3].explanation["result"]
    assert _answer({"journey_stage": "nudge"}, ["trial"], enrolled="completed").reason == (
        "already_enrolled"
    )
    assert _answer({"journey_stage": "nudge"}, ["trial"], journey_status="draft").reason == (
        "journey_not_active"
    )
    # every check is answered, not only the first that fails
    both = _answer({"journey_stage": "nudge"}, ["staff"])
    assert [c.reason for c in both.checks if not c.passed] == ["not_eligible", "suppressed"]
