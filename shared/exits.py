"""Leaving a journey: which exit applies to an enrollment now, and the one constructor of
a `Leaving` for every end and exit (docs/design.md, "Exits and ends"). Pure: the workflow
decides with these between actions and on every signal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.criteria import AllNode, AnyNode, Criteria, ListLeaf, PropertyLeaf, evaluate, explain
from shared.enrollment import (
    AddToList,
    Complete,
    Convert,
    Effect,
    EndEnrollment,
    EnrollmentState,
    Leaving,
    Outcome,
    Phase,
)
from shared.journey import GoToTarget, Journey
from shared.own_writes import join_locally, stage_write

ENDS = (Outcome.SUCCESS, Outcome.FAILURE)


def leave(
    outcome: Outcome,
    reason: str,
    *,
    end_value: str | None = None,
    add_to_list: str | None = None,
    explanation: dict[str, Any] | None = None,
    goal_met_seq: int | None = None,
) -> Leaving:
    """A leaving with its path node: `end:success`, `end:failure:<value>` or
    `exit:<outcome>`. Only the fields given are set."""
    if outcome is Outcome.SUCCESS:
        to_node = "end:success"
    elif outcome is Outcome.FAILURE:
        to_node = f"end:failure:{end_value or ''}"
    else:
        to_node = f"exit:{outcome.value}"
    given = {
        "end_value": end_value,
        "add_to_list": add_to_list,
        "explanation": explanation,
        "goal_met_seq": goal_met_seq,
    }
    return Leaving(
        outcome=outcome,
        to_node=to_node,
        reason=reason,
        **{k: v for k, v in given.items() if v is not None},
    )


def _explained(criteria: Criteria, state: EnrollmentState) -> dict[str, Any]:
    return explain(criteria, state.contact).model_dump(mode="json")


def exit_for(journey: Journey, state: EnrollmentState) -> Leaving | None:
    """The first exit that applies, in this order: goal met, joined a suppression list,
    removed from every eligible list, stage value equal to an end, manual unenroll."""
    return (
        goal_exit(journey, state)
        or suppression_exit(journey, state)
        or removal_exit(journey, state)
        or end_value_exit(journey, state)
        or unenroll_exit(state)
    )


def goal_exit(journey: Journey, state: EnrollmentState) -> Leaving | None:
    goal = journey.goal
    if goal is None or not evaluate(goal.criteria, state.contact):
        return None
    return leave(
        Outcome.GOAL_MET,
        "met the journey's goal",
        explanation=_explained(goal.criteria, state),
        goal_met_seq=state.contact.event_seq,
    )


def suppression_exit(journey: Journey, state: EnrollmentState) -> Leaving | None:
    lists = sorted(set(state.contact.lists) & set(journey.suppression_lists))
    if not lists:
        return None
    criteria = AnyNode(any=[ListLeaf(list=name) for name in journey.suppression_lists])
    return leave(
        Outcome.SUPPRESSED,
        f"joined suppression list {lists[0]!r}",
        explanation=_explained(criteria, state),
    )


def removal_exit(journey: Journey, state: EnrollmentState) -> Leaving | None:
    eligible = journey.eligible_lists
    if not (journey.exit.when_removed_from_eligible_lists and eligible):
        return None
    if set(state.contact.lists) & set(eligible):
        return None
    criteria = AllNode(all=[ListLeaf(list=name, member=False) for name in eligible])
    return leave(
        Outcome.REMOVED_FROM_LIST,
        "removed from every eligible list",
        explanation=_explained(criteria, state),
    )


def end_value_exit(journey: Journey, state: EnrollmentState) -> Leaving | None:
    prop = journey.stage_property
    value = state.contact.properties.get(prop)
    found = journey.end_for_value(value) if value is not None else None
    if not (journey.exit.when_stage_matches_end and found):
        return None
    kind, end = found
    criteria = PropertyLeaf(property=prop, op="eq", value=end.value)
    return leave(
        Outcome.ENDED_EARLY,
        f"{prop} was set to the {kind} end {end.value!r}",
        explanation=_explained(criteria, state),
        end_value=end.value,
        add_to_list=end.add_to_list,
    )


def unenroll_exit(state: EnrollmentState) -> Leaving | None:
    """A manual unenroll; a reason that is an outcome (`journey_deactivated`) is kept."""
    if state.unenroll is None:
        return None
    reason = state.unenroll.reason
    try:
        outcome = Outcome(reason)
    except ValueError:
        outcome = Outcome.UNENROLLED
    return leave(outcome, f"unenrolled: {reason}")


def success_end(journey: Journey) -> Leaving:
    end = journey.ends.success
    return leave(
        Outcome.SUCCESS,
        "reached the success end",
        end_value=end.value,
        add_to_list=end.add_to_list,
    )


def failure_end(journey: Journey, value: str) -> Leaving:
    failure = journey.failure_end(value)
    return leave(
        Outcome.FAILURE,
        f"reached the failure end {value!r}",
        end_value=value,
        add_to_list=failure.add_to_list if failure else None,
    )


def end_at(journey: Journey, target: GoToTarget) -> Leaving:
    """A `go_to` to an end: `success` or `failure:<value>`."""
    if target.kind == "success":
        return success_end(journey)
    return failure_end(journey, target.end_value or "")


def loop_limit(entries: int, cap: int, stage: str) -> Leaving:
    return leave(
        Outcome.LOOP_LIMIT,
        f"{entries} stage entries reached the cap of {cap} before entering {stage!r}",
    )


def holdout(split: str, variant: str) -> Leaving:
    """Drawn into a split's holdout: the journey sends nothing more; the attribution
    window still watches the goal, for the experiment's comparison."""
    return leave(Outcome.HOLDOUT, f"drawn into the holdout {variant!r} of split {split!r}")


def delivery_failed(summary: str, message: str | None) -> Leaving:
    return leave(Outcome.DELIVERY_FAILED, f"{summary} failed: {message}")


def window_follows(journey: Journey, outcome: Outcome) -> bool:
    """Whether an attribution window follows the leaving: a later goal may still count,
    unless the goal was the exit or the contact was suppressed."""
    return journey.goal is not None and outcome not in (Outcome.GOAL_MET, Outcome.SUPPRESSED)


def leaving_effects(
    journey: Journey, state: EnrollmentState, leaving: Leaving, status: Phase
) -> list[Effect]:
    """What leaving writes: the end of the enrollment (read models, `status`), the end's
    value on the stage property, the end's list, and the conversion of a goal exit. The
    journey's own writes show on the contact at once (`shared.own_writes`)."""
    effects: list[Effect] = [
        EndEnrollment(
            from_stage=state.stage,
            to_node=leaving.to_node,
            outcome=leaving.outcome,
            end_value=leaving.end_value,
            status=status,
            goal_met_seq=leaving.goal_met_seq,
        )
    ]
    if leaving.end_value is not None:
        effects += stage_write(state, journey.stage_property, leaving.end_value)
    if leaving.add_to_list:
        effects.append(AddToList(list=leaving.add_to_list))
        join_locally(state, leaving.add_to_list)
    if leaving.outcome is Outcome.GOAL_MET:
        effects.append(
            Convert(
                after_end=False,
                goal_met_seq=leaving.goal_met_seq,
                experiments=bool(state.assignments),
            )
        )
    return effects


def goal_met_in_window(journey: Journey, state: EnrollmentState) -> bool:
    """In the attribution window: the goal now holds (its explanation is kept)."""
    goal = journey.goal
    if goal is None or not evaluate(goal.criteria, state.contact):
        return False
    state.goal_met_in_window = True
    state.explanation = _explained(goal.criteria, state)
    return True


def left(state: EnrollmentState, journey: Journey, leaving: Leaving, now: datetime) -> Phase:
    """Records the leaving on the state; the phase that follows (the attribution window
    when a later goal may still count, else completed)."""
    goal = journey.goal
    window = goal is not None and window_follows(journey, leaving.outcome)
    state.phase = Phase.IN_ATTRIBUTION_WINDOW if window else Phase.COMPLETED
    state.outcome, state.end_value = leaving.outcome, leaving.end_value
    state.explanation, state.exit_reason = leaving.explanation, leaving.reason
    state.ended_at, state.wait_until = now, None
    if window and goal is not None:
        state.window_until = now + goal.attribution_window
    return state.phase


def leaving_record(leaving: Leaving, was: str) -> tuple[str, dict[str, Any]]:
    """The log record of a leaving: `end` or `exit`, and its detail (`was`: what the
    contact was doing)."""
    detail = {
        "reason": leaving.reason,
        "to": leaving.to_node,
        "end_value": leaving.end_value,
        "explanation": leaving.explanation,
        "was": was,
    }
    return ("end" if leaving.outcome in ENDS else "exit"), detail


def window_closed(state: EnrollmentState) -> tuple[str, str, dict[str, Any], list[Effect]]:
    """The last log record: the goal met inside the attribution window (a conversion, if
    it counts), or the window closed (or closed early); either completes the enrollment."""
    if state.goal_met_in_window:
        convert = Convert(
            after_end=True,
            goal_met_seq=state.contact.event_seq,
            experiments=bool(state.assignments),
        )
        detail = {"explanation": state.explanation}
        return "goal_met", "after_end", detail, [convert, Complete()]
    why = state.window_closed_early or "attribution window closed"
    return "complete", "completed", {"reason": why}, [Complete()]
