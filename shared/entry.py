"""Who enters a journey, and who is refused: the entry rules (docs/design.md, "Enrollment").

Pure: the enrolling service, the relay's triggers, activation and the API's previews all
decide with these functions over what they read from the store.

- **list/stage**: a contact enters an active journey without a `trigger` when it is in one
  of the journey's eligible lists (or the journey has none) and its stage property equals
  the start stage's value (or is empty and `enroll_empty_stage` is set). It is checked when
  a change touches what the rule reads: the contact is new, its stage property changed, or
  it joined or left one of the eligible lists.
- **goal achieved**: a contact that met the goal of journey X enters every active journey
  whose `trigger` is `{"goal_achieved_in": X}`.
- **refusals**, in order: not in an eligible list, in a suppression list, goal already met
  (`already_enrolled` is decided by the enrollment row's uniqueness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.contact import ContactState
from shared.criteria import AnyNode, ListLeaf, evaluate, explain
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


def start_value(journey: Journey) -> str | None:
    try:
        return journey.stage_by_key(journey.start_stage).value
    except KeyError:
        return None


def enters(journey: Journey, contact: ContactView) -> bool:
    """The list/stage rule: in an eligible list (or none are set), and the stage property
    at the start stage's value, or empty (missing, null or "") with `enroll_empty_stage`."""
    if journey.eligible_lists and not contact.lists.intersection(journey.eligible_lists):
        return False
    value = contact.properties.get(journey.stage_property)
    if value is None or value == "":
        return journey.enroll_empty_stage
    return value == start_value(journey)


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
    """The trigger deliveries a batch of changes calls for (at most one per contact and
    journey). `journeys`: the active journeys of each workspace; `enrolled`: (workspace,
    journey id, contact id) of the open enrollments of the batch's contacts."""
    found: dict[tuple[str, str], Delivery] = {}
    for change in changes:
        for record in journeys.get(change.workspace, ()):
            key = (record.id, change.contact_id)
            if key in found or (change.workspace, *key) in enrolled:
                continue
            journey = record.journey
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
    return change.kind in ("contact", "list", "goal")


def _lists_explained(lists: list[str], state: ContactState) -> dict[str, Any]:
    """Membership of any of `lists`, explained leaf by leaf (for the enrollment log)."""
    criteria = AnyNode(any=[ListLeaf(list=name) for name in lists])
    return explain(criteria, state).model_dump(mode="json")


def refusal_for(journey: Journey, state: ContactState) -> Refused | None:
    """The first of refusals of docs/design.md, "Entry and refusals", that applies
    (already_enrolled is checked apart)."""
    lists = set(state.lists)
    if journey.eligible_lists and not lists & set(journey.eligible_lists):
        return Refused(
            "not_eligible",
            "The contact is in none of the journey's eligible lists.",
            _lists_explained(journey.eligible_lists, state),
        )
    suppressed = sorted(lists & set(journey.suppression_lists))
    if suppressed:
        return Refused(
            "suppressed",
            f"The contact is in suppression list {suppressed[0]!r}.",
            _lists_explained(journey.suppression_lists, state),
        )
    if journey.goal is not None and evaluate(journey.goal.criteria, state):
        why = explain(journey.goal.criteria, state)
        return Refused(
            "goal_already_met",
            "The contact already meets the journey's goal.",
            why.model_dump(mode="json"),
        )
    return None
