"""Which enrollments care about a change of a contact (docs/design.md, "The enrollment
workflow": keep histories small).

Each journey has an *interest set* derived from its definition: the event types, properties
and lists it reads. A running enrollment hears about a change only when the change touches
its journey's interest set; an enrollment inside its attribution window only listens for
the goal, so it hears only about what the goal reads.

`route()` is pure: the relay fetches a batch of changes, the open enrollments of the
contacts they concern and those enrollments' journey versions (one indexed query each, for
the whole batch) and asks it which deliveries to make. Never imported by workflow code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared.criteria import EventLeaf, ListLeaf, PropertyLeaf, iter_leaves
from shared.journey import Journey

log = logging.getLogger("nurture.relay")

ChangeKind = Literal["contact", "list", "event", "goal"]
DeliveryKind = Literal["event", "contact", "enter", "enter_after_goal", "enter_on_event"]
"""`event`: a `contact_event` signal; `contact`: a `contact_changed` snapshot, read when it
is delivered; `enter`/`enter_after_goal`/`enter_on_event` (`seq`: the event): an
enrollment trigger (`services.triggers`)."""

RUNNING = "running"
IN_ATTRIBUTION_WINDOW = "in_attribution_window"


@dataclass(frozen=True)
class Interest:
    """What an enrollment must hear about: event types, property names, list names."""

    events: frozenset[str]
    properties: frozenset[str]
    lists: frozenset[str]

    @classmethod
    def of(cls, journey: Journey) -> Interest:
        """A running enrollment's: the goal, `wait_for_event` filters, the stage property,
        eligible and suppression lists."""
        return cls(
            events=journey.event_types(),
            properties=journey.referenced_properties(),
            lists=journey.referenced_lists(),
        )

    @classmethod
    def of_goal(cls, journey: Journey) -> Interest:
        """An enrollment in its attribution window only listens for the goal."""
        leaves = list(iter_leaves(journey.goal.criteria)) if journey.goal is not None else []
        return cls(
            events=frozenset(leaf.event for leaf in leaves if isinstance(leaf, EventLeaf)),
            properties=frozenset(
                leaf.property for leaf in leaves if isinstance(leaf, PropertyLeaf)
            ),
            lists=frozenset(leaf.list for leaf in leaves if isinstance(leaf, ListLeaf)),
        )


@dataclass(frozen=True)
class Change:
    """One committed change, as queued by the triggers of `003_delivery.sql`."""

    id: int
    workspace: str
    contact_id: str
    kind: ChangeKind
    seq: int | None = None
    name: str | None = None
    """event: its type; list: the list joined or left; goal: the journey whose goal was met."""
    changed: Mapping[str, Any] | None = None
    """contact: the properties whose values changed, with their new values (None: removed)."""
    created: bool = False

    @classmethod
    def from_row(cls, row: Any) -> Change:
        """From a row of `change_queue` (any mapping with its columns; others are ignored)."""
        return cls(
            id=row["id"],
            workspace=row["workspace"],
            contact_id=row["contact_id"],
            kind=row["kind"],
            seq=row["seq"],
            name=row["name"],
            changed=row["changed"],
            created=row["created"],
        )

    @property
    def contact(self) -> tuple[str, str]:
        return self.workspace, self.contact_id


@dataclass(frozen=True)
class OpenEnrollment:
    """An enrollment that is running or inside its attribution window."""

    workspace: str
    contact_id: str
    journey_id: str
    journey_version: int
    workflow_id: str
    status: str
    stage: str | None
    end_value: str | None

    @classmethod
    def from_row(cls, row: Any) -> OpenEnrollment:
        """From a row of `enrollments` (any mapping with its columns)."""
        return cls(**dict(row))

    @property
    def version_key(self) -> tuple[str, str, int]:
        return self.workspace, self.journey_id, self.journey_version


@dataclass(frozen=True)
class Delivery:
    """Something to hand to Temporal for one enrollment (or would-be enrollment)."""

    workspace: str
    contact_id: str
    journey_id: str
    workflow_id: str
    kind: DeliveryKind
    seq: int = 0


class InterestCache:
    """Journey versions never change, so their interest sets are computed once."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._journeys: dict[tuple[str, str, int], Journey] = {}
        self._interests: dict[tuple[str, str, int, str], Interest] = {}

    def missing(self, keys: Iterable[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        return sorted({key for key in keys if key not in self._journeys})

    def add(self, key: tuple[str, str, int], definition: Mapping[str, Any]) -> None:
        if len(self._journeys) >= self._limit:
            self._journeys.clear()
            self._interests.clear()
        try:
            self._journeys[key] = Journey.model_validate(definition)
        except ValidationError:
            # a stored definition this code cannot read must not stall the whole queue:
            # its enrollments hear nothing (and the log says why)
            log.error("journey version %s does not validate; routing nothing to it", key)

    def journey(self, key: tuple[str, str, int]) -> Journey | None:
        return self._journeys.get(key)

    def interest(self, enrollment: OpenEnrollment) -> Interest | None:
        journey = self._journeys.get(enrollment.version_key)
        if journey is None:
            return None
        key = (*enrollment.version_key, enrollment.status)
        found = self._interests.get(key)
        if found is None:
            if enrollment.status == IN_ATTRIBUTION_WINDOW:
                found = Interest.of_goal(journey)
            else:
                found = Interest.of(journey)
            self._interests[key] = found
        return found


def route(
    changes: Iterable[Change],
    enrollments: Mapping[tuple[str, str], list[OpenEnrollment]],
    journeys: InterestCache,
) -> list[Delivery]:
    """The signals a batch of changes calls for: an event to every open enrollment of its
    contact whose interest set has the event's type; one snapshot to every open enrollment
    whose interest set has a changed property or list (one per enrollment per batch: the
    snapshot is read when it is delivered, so it carries every change of the batch)."""
    deliveries: dict[tuple[str, str, int], Delivery] = {}
    for change in changes:
        for enrollment in enrollments.get(change.contact, ()):
            interest = journeys.interest(enrollment)
            if interest is None:
                continue
            if change.kind == "event":
                if change.name in interest.events and change.seq is not None:
                    _add(deliveries, enrollment, "event", change.seq)
            elif change.kind == "list":
                if change.name in interest.lists:
                    _add(deliveries, enrollment, "contact")
            elif change.kind == "contact" and change.changed:
                if interest.properties.intersection(change.changed) and not _echo(
                    change, enrollment, journeys.journey(enrollment.version_key)
                ):
                    _add(deliveries, enrollment, "contact")
    return list(deliveries.values())


def _add(
    deliveries: dict[tuple[str, str, int], Delivery],
    enrollment: OpenEnrollment,
    kind: DeliveryKind,
    seq: int = 0,
) -> None:
    key = (enrollment.workflow_id, kind, seq)
    deliveries.setdefault(
        key,
        Delivery(
            workspace=enrollment.workspace,
            contact_id=enrollment.contact_id,
            journey_id=enrollment.journey_id,
            workflow_id=enrollment.workflow_id,
            kind=kind,
            seq=seq,
        ),
    )


def _echo(change: Change, enrollment: OpenEnrollment, journey: Journey | None) -> bool:
    """The enrollment's own stage write coming back: only the stage property changed, to
    the value of the stage the enrollment is in (or the end it reached). The workflow
    already knows; a signal would only grow its history."""
    if journey is None or change.changed is None:
        return False
    prop = journey.stage_property
    if set(change.changed) != {prop}:
        return False
    value = change.changed[prop]
    if enrollment.end_value is not None and value == enrollment.end_value:
        return True
    if enrollment.stage is None:
        return False
    try:
        return journey.stage_by_key(enrollment.stage).value == value
    except KeyError:
        return False


def by_contact(
    enrollments: Iterable[OpenEnrollment],
) -> dict[tuple[str, str], list[OpenEnrollment]]:
    grouped: dict[tuple[str, str], list[OpenEnrollment]] = {}
    for enrollment in enrollments:
        grouped.setdefault((enrollment.workspace, enrollment.contact_id), []).append(enrollment)
    return grouped


def contact_keys(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(workspaces, contact ids) as two arrays for `unnest`."""
    pairs = sorted(set(keys))
    return [w for w, _ in pairs], [c for _, c in pairs]
