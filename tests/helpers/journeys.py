"""The one journey builder: definitions (the JSON the API takes) and parsed journeys, their
stages and actions, and events as the relay signals them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.contact import ContactEvent
from shared.journey import Journey


def definition(stages: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid journey definition around `stages` (the first is the start stage); by
    default one stage that sends a marketing email, waits an hour, then sends a follow-up."""
    stages = stages or [stage("onboarding", send("welcome"), wait("PT1H"), send("follow_up"))]
    found: dict[str, Any] = {
        "name": "Test journey",
        "owner": "marketing@acme.test",
        "stage_property": "journey_stage",
        "eligible_lists": [],
        "start_stage": stages[0]["key"],
        "enroll_empty_stage": True,
        "stages": stages,
        "ends": {"success": {"value": "customer"}, "failure": [{"value": "churned"}]},
    }
    found.update(overrides)
    return found


def journey(stages: list[dict[str, Any]] | None = None, **overrides: Any) -> Journey:
    """`definition(...)`, parsed as the workflow receives it."""
    return Journey.model_validate(definition(stages, **overrides))


def stage(key: str, *actions: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": key, "actions": list(actions)}


def send(template: str = "welcome", *channels: str, marketing: bool = True) -> dict[str, Any]:
    return {
        "type": "send_message",
        "channels": list(channels or ["email"]),
        "template": template,
        "marketing": marketing,
    }


def wait(duration: str) -> dict[str, Any]:
    return {"type": "wait", "duration": duration}


def go_to(target: str) -> dict[str, Any]:
    return {"type": "go_to", "target": target}


def wait_for_event(
    type_: str, timeout: str, target: str | None = None, **branches: str
) -> dict[str, Any]:
    action: dict[str, Any] = {
        "type": "wait_for_event",
        "event": {"type": type_},
        "timeout": timeout,
    }
    if target is not None:
        action["event"]["target"] = target
    for name, goto in branches.items():  # on_event="engaged", on_timeout="nudge"
        action[name] = {"go_to": goto}
    return action


def event(seq: int, type_: str, target: str | None = None, id: str | None = None) -> ContactEvent:
    return ContactEvent(
        id=id or f"evt-{seq}",
        seq=seq,
        type=type_,
        target=target,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def skeleton_journey(waiting: str) -> dict[str, Any]:
    """The walking skeleton: send a marketing email, wait, succeed; enrolled only by an
    explicit POST (an empty stage does not enroll)."""
    return definition(
        [stage("welcome", send("welcome"), wait(waiting), go_to("success"))],
        name="Skeleton",
        # enrolled by the test's POST alone: a contact created with an empty stage would
        # otherwise be enrolled by the journey's trigger, racing that POST
        enroll_empty_stage=False,
        ends={"success": {"value": "customer"}, "failure": []},
    )


def branch(name: str, *paths: dict[str, Any], otherwise: str | None = None) -> dict[str, Any]:
    """A branch; `paths` from `path(...)`; `otherwise`: its go_to (None: continue)."""
    action: dict[str, Any] = {"type": "branch", "name": name, "paths": list(paths)}
    if otherwise is not None:
        action["otherwise"] = {"go_to": otherwise}
    return action


def path(name: str, when: dict[str, Any], go_to: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "when": when}
    if go_to is not None:
        found["go_to"] = go_to
    return found


def split(
    name: str,
    *variants: tuple[str, int, str | None],
    holdout: tuple[str, int] | None = None,
    winner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A split of (name, percent, go_to) variants and an optional (name, percent) holdout."""
    found: list[dict[str, Any]] = []
    for variant, percent, goto in variants:
        found.append({"name": variant, "percent": percent, **({"go_to": goto} if goto else {})})
    if holdout is not None:
        found.append({"name": holdout[0], "percent": holdout[1], "holdout": True})
    action: dict[str, Any] = {"type": "split", "name": name, "variants": found}
    if winner is not None:
        action["winner"] = winner
    return action
