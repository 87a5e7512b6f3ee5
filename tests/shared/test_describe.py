"""The words an enrollment uses for itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contact import ContactState
from shared.describe import current_details, describe_action, iso_duration, view, when
from shared.enrollment import EnrollmentState, Phase
from tests.helpers.journeys import go_to, journey, send, stage, wait, wait_for_event


def test_durations_read_as_journeys_write_them() -> None:
    assert iso_duration(timedelta(days=2)) == "P2D"
    assert iso_duration(timedelta(minutes=30)) == "PT30M"
    assert iso_duration(timedelta(days=1, hours=2, seconds=5)) == "P1DT2H5S"
    assert iso_duration(timedelta(0)) == "PT0S"


def test_actions_in_words() -> None:
    flow = journey(
        [
            stage(
                "a",
                send("nudge", "email", "sms"),
                wait("P2D"),
                wait_for_event("form_submitted", "P5D", target="demo"),
                go_to("success"),
            )
        ]
    )
    words = [describe_action(a) for a in flow.stages[0].actions]
    assert words == [
        "send marketing email+sms 'nudge'",
        "wait P2D",
        "wait up to P5D for form_submitted/demo",
        "go to success",
    ]
    assert when(datetime(2026, 11, 29, 14, 5, 59, tzinfo=UTC)) == "2026-11-29 14:05 UTC"


def test_current_details_and_the_state_query() -> None:
    assert current_details("ada", "a", True, "waiting") == "ada · stage a · waiting"
    assert current_details("ada", "a", False, "completed") == "ada · completed"
    flow = journey([stage("a", wait("P1D"))])
    state = EnrollmentState(contact=ContactState(event_seq=9), stage="a", phase=Phase.RUNNING)
    answer = view(flow, state, "ada · stage a · waiting", flow.stages[0].actions[0])
    assert (answer.next_action, answer.contact_seq, answer.details) == (
        "wait P1D",
        9,
        "ada · stage a · waiting",
    )
