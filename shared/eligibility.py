""" "Why is this contact not in my journey?": every entry rule checked for one contact, now,
in the order enrollment checks them, with the same reasons the enrollment log records
(docs/design.md, "Entry and refusals"). Pure: the enrolling service reads the contact, its
enrollment and the journey's status, and asks this."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.contact import ContactState
from shared.entry import entry_checks, entry_stage
from shared.journey import Journey


class CheckOut(BaseModel):
    check: str
    """`eligible_lists`, `stage_value`, `suppression_lists`, `goal`, `not_enrolled_before`,
    `journey_active`."""
    passed: bool
    reason: str | None = None
    """When it fails: the refusal's reason (`not_eligible`, `already_at_end`, ...)."""
    message: str
    explanation: dict[str, Any] | None = None
    """The criteria behind the answer, leaf by leaf."""


class Eligibility(BaseModel):
    journey_id: str
    contact_id: str
    would_enroll: bool
    """Whether the contact enters now (activation, or a trigger on its next change)."""
    stage: str | None
    """The stage it would enter."""
    reason: str | None
    """The first check that fails."""
    checks: list[CheckOut]


PASSED = {
    "eligible_lists": "The contact is in one of the journey's eligible lists (or it has none).",
    "stage_value": "The contact's stage value lets it enter.",
    "suppression_lists": "The contact is in none of the journey's suppression lists.",
    "goal": "The contact does not meet the journey's goal yet.",
    "not_enrolled_before": "The contact has never been enrolled in this journey.",
    "journey_active": "The journey is active.",
}


def eligibility(
    journey_id: str,
    journey: Journey,
    journey_status: str,
    contact_id: str,
    state: ContactState,
    enrolled_status: str | None,
) -> Eligibility:
    """Each rule for `state`, in order; `enrolled_status` is the contact's enrollment in
    this journey, if it ever had one."""
    checks = [
        CheckOut(check=c.check, passed=True, message=PASSED[c.check])
        if c.refused is None
        else CheckOut(
            check=c.check,
            passed=False,
            reason=c.refused.reason,
            message=c.refused.message,
            explanation=c.refused.explanation,
        )
        for c in entry_checks(journey, state)
    ]
    stage_value = checks[1]
    value = state.properties.get(journey.stage_property)
    empty = value is None or value == ""
    if (
        stage_value.passed
        and not journey.trigger
        and (
            (empty and not journey.enroll_empty_stage)
            or (not empty and journey.stage_by_value(value) is None)
        )
    ):
        checks[1] = CheckOut(
            check="stage_value",
            passed=False,
            reason="no_stage_value",
            message=f"The contact's {journey.stage_property} is "
            + ("empty" if empty else f"{value!r}, no stage's value")
            + f"; it enters only when it holds a stage's value (a POST …/enrollments would "
            f"start it in {journey.start_stage!r}).",
        )
    if enrolled_status is None:
        checks.append(
            CheckOut(
                check="not_enrolled_before", passed=True, message=PASSED["not_enrolled_before"]
            )
        )
    else:
        checks.append(
            CheckOut(
                check="not_enrolled_before",
                passed=False,
                reason="already_enrolled",
                message=f"The contact was enrolled in this journey before ({enrolled_status}).",
            )
        )
    active = journey_status == "active"
    checks.append(
        CheckOut(check="journey_active", passed=True, message=PASSED["journey_active"])
        if active
        else CheckOut(
            check="journey_active",
            passed=False,
            reason="journey_not_active",
            message=f"The journey is {journey_status}: it enrolls nobody.",
        )
    )
    failed = next((c for c in checks if not c.passed), None)
    return Eligibility(
        journey_id=journey_id,
        contact_id=contact_id,
        would_enroll=failed is None,
        stage=entry_stage(journey, state.properties),
        reason=failed.reason if failed else None,
        checks=checks,
    )
