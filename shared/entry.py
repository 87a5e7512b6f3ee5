"""Who enters a journey, and who is refused: the entry rules (docs/design.md, "Enrollment").

Pure: the enrolling service, the relay's triggers, activation and the API's previews all
decide with these functions over what they read from the store.

- **list/stage**: a contact enters an active journey without a `trigger` when it is in one
  of the journey's eligible lists (or the journey has none) and its stage property holds
  any stage's value (it enters that stage), or is empty and `enroll_empty_stage` is set
  (it enters the start stage). It is checked when
  a change touches what the rule reads: the contact is new, its stage property changed, or
  it joined or left one of the eligible lists.
- **goal achieved**: a contact that met the goal of journey X enters every active journey
  whose `trigger` is `{"goal_achieved_in": X}`.
- **refusals**, in order: not in an eligible list, the stage property at an end's value
  (`already_at_end`: it has been through the journey), in a suppression list, goal already
  met (`already_enrolled` is decided by the enrollment row's uniqueness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.contact import ContactState
from shared.criteria import AnyNode, ListLeaf, PropertyLeaf, evaluate, explain
from shared.enrollment import workflow_id
from shared.journey import Journey
from shared.routing import Change, Delivery


@dataclass(frozen=True)
class JourneyRecord:
    workspace: str
    id: str
    version: int
    status: str
    goal_epoch: int
    journey: Journey

    @classmethod
    def from_row(cls, workspace: str, row: Any) -> JourneyRecord:
        """From a `journeys` row (any mapping with its columns)."""
        return cls(
            workspace=workspace,
            id=row["id"],
            version=row["version"],
            status=row["status"],
            goal_epoch=row["goal_epoch"],
            journey=Journey.model_validate(row["definition"]),
        )


@dataclass(frozen=True)
class Enrolled:
    workflow_id: str
    run_id: str | None = field(default=None, compare=False)
    """The first run's id in Temporal (its address in the UI, with the workflow id)."""


@dataclass(frozen=True)
class Refused:
    reason: str
    message: str
    explanation: dict[str, Any] | None = None


@dataclass(frozen=True)
class ContactView:
    """What the list/stage rule reads of a contact."""

    properties: Mapping[str, Any]
    lists: frozenset[str]


def stage_values(journey: Journey) -> list[str]:
    """The values of the journey's stages: a contact holding one of them may enter there."""
    return sorted({stage.value for stage in journey.stages})


def enters(journey: Journey, contact: ContactView) -> bool:
    """The list/stage rule: in an eligible list (or none are set), and the stage property
    at any stage's value, or empty (missing, null or "") with `enroll_empty_stage`."""
    if journey.eligible_lists and not contact.lists.intersection(journey.eligible_lists):
        return False
    value = contact.properties.get(journey.stage_property)
    if value is None or value == "":
        return journey.enroll_empty_stage
    return journey.stage_by_value(value) is not None


def entry_stage(journey: Journey, properties: Mapping[str, Any]) -> str:
    """Where an enrollment begins: the stage whose value the contact's stage property
    holds, else (empty, or a value of no stage) the start stage."""
    stage = journey.stage_by_value(properties.get(journey.stage_property))
    return stage.key if stage is not None else journey.start_stage


def touches_entry(journey: Journey, change: Change) -> bool:
    """Whether the change may have made the list/stage rule true."""
    if change.kind == "contact":
        return change.created or journey.stage_property in (change.changed or {})
    if change.kind == "list":
        return change.name in journey.eligible_lists
    return False


def candidates(
    changes: Iterable[Change],
    journeys: Mapping[str, Sequence[JourneyRecord]],
    contacts: Mapping[tuple[str, str], ContactView],
    enrolled: set[tuple[str, str, str]],
) -> list[Delivery]:
    """The trigger deliveries a batch of changes calls for: at most one per contact and
    journey, except events, one per event that an event trigger names (the entry or its
    refusal is decided when it is delivered). `journeys`: the active journeys of each
    workspace; `enrolled`: (workspace, journey id, contact id) of the open enrollments of
    the batch's contacts."""
    found: dict[tuple[str, str, int], Delivery] = {}
    for change in changes:
        for record in journeys.get(change.workspace, ()):
            journey = record.journey
            event = journey.trigger.event if journey.trigger is not None else None
            if change.kind == "event":
                # every event may start an entry (or be refused): keyed by the event
                if event is not None and event.type == change.name and change.seq:
                    found[(record.id, change.contact_id, change.seq)] = Delivery(
                        workspace=change.workspace,
                        contact_id=change.contact_id,
                        journey_id=record.id,
                        workflow_id=workflow_id(change.workspace, record.id, change.contact_id),
                        kind="enter_on_event",
                        seq=change.seq,
                    )
                continue
            key = (record.id, change.contact_id, 0)
            if key in found or (change.workspace, record.id, change.contact_id) in enrolled:
                continue
            kind = None
            if change.kind == "goal":
                trigger = journey.trigger
                if trigger and trigger.goal_achieved_in == change.name != record.id:
                    kind = "enter_after_goal"
            elif journey.trigger is None and touches_entry(journey, change):
                contact = contacts.get(change.contact)
                if contact is not None and enters(journey, contact):
                    kind = "enter"
            if kind is not None:
                found[key] = Delivery(
                    workspace=change.workspace,
                    contact_id=change.contact_id,
                    journey_id=record.id,
                    workflow_id=workflow_id(change.workspace, record.id, change.contact_id),
                    kind=kind,  # type: ignore[arg-type]
                )
    return list(found.values())


def may_trigger(change: Change) -> bool:
    return change.kind in ("contact", "list", "goal", "event")


def _lists_explained(lists: list[str], state: ContactState) -> dict[str, Any]:
    """Membership of any of `lists`, explained leaf by leaf (for the enrollment log)."""
    criteria = AnyNode(any=[ListLeaf(list=name) for name in lists])
    return explain(criteria, state).model_dump(mode="json")


@dataclass(frozen=True)
class Check:
    """One entry rule, checked for one contact: `refused` is what fails it, or None."""

    check: str
    """`eligible_lists`, `stage_value`, `suppression_lists`, `goal`, `not_enrolled_before`,
    `journey_active`."""
    refused: Refused | None


def entry_checks(journey: Journey, state: ContactState) -> list[Check]:
    """The entry rules the contact's own data decides, in their order: the eligible lists,
    the stage value (an end's value: it has been through the journey), the suppression
    lists, the goal (met already). Each with its reason and its explanation, leaf by leaf.
    """
    lists = set(state.lists)
    found = [Check("eligible_lists", None)]
    if journey.eligible_lists and not lists & set(journey.eligible_lists):
        found[0] = Check(
            "eligible_lists",
            Refused(
                "not_eligible",
                "The contact is in none of the journey's eligible lists.",
                _lists_explained(journey.eligible_lists, state),
            ),
        )
    value = state.properties.get(journey.stage_property)
    at_end = journey.end_for_value(value) if value is not None else None
    stage_check = Check("stage_value", None)
    if at_end is not None:
        kind, end = at_end
        leaf = PropertyLeaf(property=journey.stage_property, op="eq", value=end.value)
        stage_check = Check(
            "stage_value",
            Refused(
                "already_at_end",
                f"The contact's {journey.stage_property} is {end.value!r}, the journey's "
                f"{kind} end: it has been through this journey already.",
                explain(leaf, state).model_dump(mode="json"),
            ),
        )
    found.append(stage_check)
    suppressed = sorted(lists & set(journey.suppression_lists))
    found.append(
        Check(
            "suppression_lists",
            Refused(
                "suppressed",
                f"The contact is in suppression list {suppressed[0]!r}.",
                _lists_explained(journey.suppression_lists, state),
            )
            if suppressed
            else None,
        )
    )
    goal_check = Check("goal", None)
    if journey.goal is not None and evaluate(journey.goal.criteria, state):
        why = explain(journey.goal.criteria, state)
        goal_check = Check(
            "goal",
            Refused(
                "goal_already_met",
                "The contact already meets the journey's goal.",
                why.model_dump(mode="json"),
            ),
        )
    found.append(goal_check)
    return found


def refusal_for(journey: Journey, state: ContactState) -> Refused | None:
    """The first of the refusals of docs/design.md, "Entry and refusals", that applies
    (already_enrolled is checked apart)."""
    return next((c.refused for c in entry_checks(journey, state) if c.refused), None)
