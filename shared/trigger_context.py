"""The event that started an entry of an event-triggered journey, and what it binds
(docs/journeys.md, "Event triggers"). Pure: the enrolling service builds the context and
binds the journey before the refusal checks; the workflow runs the bound journey.

`match_trigger: ["cart_id"]` on an event leaf or a `wait_for_event` filter means "the same
cart as the trigger's": binding turns it into `where: {"cart_id": <the trigger's value>}`,
so every matcher, counter and snapshot of the engine applies as for any `where`. A trigger
without that property (or with a list or object there) binds a value no event carries:
nothing is "the same" as nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.contact import ContactEvent
from shared.journey import Journey

NO_VALUE = "\u2400no trigger value"
"""Bound where the trigger lacks a property `match_trigger` names: no event carries it."""


class TriggerContext(BaseModel):
    """`{{ trigger.* }}` in templates; `key` (the event's idempotency key) keys the entry."""

    id: str
    key: str
    type: str
    target: str | None = None
    properties: dict[str, Any] = {}
    occurred_at: datetime
    seq: int

    @classmethod
    def of(cls, event: ContactEvent, key: str) -> TriggerContext:
        return cls(
            id=event.id,
            key=key,
            type=event.type,
            target=event.target,
            properties=event.properties,
            occurred_at=event.occurred_at,
            seq=event.seq,
        )

    def for_templates(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"key", "seq"})


def _bound(node: Any, properties: dict[str, Any] | None, journey_id: str | None) -> Any:
    if isinstance(node, list):
        return [_bound(item, properties, journey_id) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bound(v, properties, journey_id) for k, v in node.items()}
    names = node.get("match_trigger")
    if properties is not None and isinstance(names, list) and names:
        where = dict(out.get("where") or {})
        for name in names:
            value = properties.get(name)
            scalar = isinstance(value, str | int | float | bool) and value is not None
            where[name] = value if scalar else NO_VALUE
        out["where"] = where
        del out["match_trigger"]
    if journey_id is not None and node.get("in_journey") is True:
        out["where"] = {**(out.get("where") or {}), "journey_id": journey_id}
    return out


def uses_match_trigger(journey: Journey) -> bool:
    return "match_trigger" in journey.model_dump_json()


def uses_in_journey(journey: Journey) -> bool:
    return '"in_journey":true' in journey.model_dump_json()


def bind(journey: Journey, context: TriggerContext) -> Journey:
    """The journey with every `match_trigger` turned into `where` equalities."""
    if not uses_match_trigger(journey):
        return journey
    return Journey.model_validate(_bound(journey.model_dump(mode="json"), context.properties, None))


def bind_journey_id(journey: Journey, journey_id: str) -> Journey:
    """The journey with every `in_journey` leaf and filter limited to its own emails'
    events (`where: {"journey_id": ...}`): what an enrollment of it runs."""
    if not uses_in_journey(journey):
        return journey
    return Journey.model_validate(_bound(journey.model_dump(mode="json"), None, journey_id))
