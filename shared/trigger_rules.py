"""Validation rules of event triggers and re-entry (docs/journeys.md, "Event triggers"),
run on a journey that parsed. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from shared.journey import Journey

REASONS = frozenset({"invalid_trigger", "match_trigger_without_event_trigger", "invalid_reentry"})


def _match_trigger_paths(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("match_trigger"):
            yield f"{path}.match_trigger" if path else "match_trigger"
        for key, value in node.items():
            yield from _match_trigger_paths(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _match_trigger_paths(item, f"{path}[{i}]")


def problems(journey: Journey) -> list[tuple[str, str, str]]:
    """(path, reason, message) for each problem."""
    found: list[tuple[str, str, str]] = []
    data = journey.model_dump(mode="json")
    event_trigger = journey.trigger is not None and journey.trigger.event is not None
    for path in _match_trigger_paths(data, ""):
        if path.startswith("trigger."):
            found.append(
                (path, "invalid_trigger", "The trigger's own filter cannot match_trigger.")
            )
        elif not event_trigger:
            found.append(
                (
                    path,
                    "match_trigger_without_event_trigger",
                    "A match_trigger compares with the event that started the entry; this "
                    "journey is not started by an event.",
                )
            )
    rule = journey.reentry
    if rule is not None and rule.mode == "never" and (rule.cooldown or rule.max_entries):
        found.append(
            (
                "reentry",
                "invalid_reentry",
                'The cooldown and max_entries apply only to "mode": "after_exit".',
            )
        )
    if rule is not None and rule.cooldown is not None and rule.cooldown < timedelta(0):
        found.append(("reentry.cooldown", "invalid_reentry", "A cooldown cannot be negative."))
    return found
