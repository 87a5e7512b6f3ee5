"""The limits a journey is saved and activated under (docs/design.md, "Journey life
cycle"): a valid definition with at most so many eligible lists, so many journeys per
owner, and no two active journeys on one audience. Pure: the journeys service reads the
counts under a lock and asks these."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from shared.errors import Conflict, Invalid
from shared.journey import Journey
from shared.validation import JourneyValidation, Problem, validate_journey

OWNER = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
"""Who owns a journey: an identifier, so that one owner cannot become many by spelling."""

MAX_JOURNEY_BYTES = 256 * 1024
"""What a journey definition may take as JSON: it travels in every enrollment's workflow
input, which Temporal refuses over 2 MB."""


def checked(payload: Any, max_eligible_lists: int) -> tuple[Journey, JourneyValidation]:
    """The journey a payload defines, or `Invalid` (422 `invalid_journey`) with every
    problem by JSON path and reason, the eligible list limit included; 422
    `journey_too_large` past MAX_JOURNEY_BYTES."""
    try:
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        size = len(raw.encode("utf-8", "surrogatepass"))
    except (RecursionError, ValueError):
        size = 0  # nested too deep to measure: validation refuses it for its depth
    if size > MAX_JOURNEY_BYTES:
        raise Invalid(
            "journey_too_large",
            f"A journey may take at most {MAX_JOURNEY_BYTES // 1024} KB as JSON; "
            f"this one takes {size // 1024} KB.",
        )
    result = validate_journey(payload)
    problems = list(result.problems)
    journey = result.journey
    if (
        journey is not None
        and len(journey.eligible_lists) > max_eligible_lists
        and not any(p.reason == "too_many_eligible_lists" for p in problems)
    ):
        problems.append(
            Problem(
                path="eligible_lists",
                reason="too_many_eligible_lists",
                message=f"A journey has at most {max_eligible_lists} eligible lists; "
                f"this one has {len(journey.eligible_lists)}.",
            )
        )
    if journey is not None and not OWNER.fullmatch(journey.owner):
        problems.append(
            Problem(
                path="owner",
                reason="invalid_owner",
                message="An owner is an identifier of 1-128 characters with no spaces or "
                "control characters (an email address or a team id).",
            )
        )
    if journey is None or problems:
        raise Invalid(
            "invalid_journey",
            f"The journey has {len(problems)} problem(s); see problems.",
            problems=[p.model_dump() for p in problems],
            warnings=[w.model_dump() for w in result.warnings],
        )
    return journey, result


def workspace_limit(journeys: int, limit: int) -> Conflict | None:
    """`journeys`: the workspace's other journeys, whatever their state."""
    if journeys < limit:
        return None
    return Conflict(
        "journey_limit_reached",
        f"The workspace already has {journeys} journeys, the most it may have ({limit}); "
        "delete one first.",
        limit=limit,
    )


def owner_limit(owner: str, owned: int, limit: int) -> Conflict | None:
    """`owned`: the owner's other journeys, whatever their state."""
    if owned < limit:
        return None
    return Conflict(
        "journey_limit_reached",
        f"{owner!r} already owns {owned} journeys, the most one owner may have "
        f"({limit}); delete one first.",
        owner=owner,
        limit=limit,
    )


def audience_conflict(
    journey: Journey, active: Iterable[tuple[str, list[str] | None, str | None]]
) -> Conflict | None:
    """No two active journeys share the same eligible lists (as a set) and stage property:
    their contacts would be moved through the same stages by both. `active`: (id, eligible
    lists, stage property) of the workspace's other active journeys."""
    lists = set(journey.eligible_lists)
    for other_id, other_lists, prop in active:
        if prop == journey.stage_property and set(other_lists or []) == lists:
            return Conflict(
                "journey_conflict",
                f"Active journey {other_id!r} already has the same eligible lists and stage "
                f"property {journey.stage_property!r}; deactivate it first.",
                conflicting_journey_id=other_id,
            )
    return None


def goal_epoch_after_edit(before: dict[str, Any], after: Journey, epoch: int) -> int:
    """Removing the goal starts a new goal epoch (the conversion count restarts); editing
    its criteria does not."""
    if before.get("goal") is not None and after.goal is None:
        return epoch + 1
    return epoch
