"""Builders for journey definitions: plain JSON (dicts) in the API's shape, checked for the
mistakes a builder can see alone (docs/journeys.md has every field); the API's
`validate_journey` (or a save) checks the whole journey."""

from __future__ import annotations

from typing import Any


def journey(name: str, owner: str, stages: list[dict[str, Any]], *, stage_property: str,
            success: str = "customer", failures: tuple[str, ...] = (),
            **more: Any) -> dict[str, Any]:  # fmt: skip
    """A journey starting at its first stage, with a success end and failure ends."""
    if not stages:
        raise ValueError("a journey needs at least one stage")
    keys = [s["key"] for s in stages]
    if len(set(keys)) != len(keys):
        raise ValueError(f"stage keys must be unique: {keys}")
    return {
        "name": name,
        "owner": owner,
        "stage_property": stage_property,
        "start_stage": keys[0],
        "stages": stages,
        "ends": {"success": {"value": success}, "failure": [{"value": f} for f in failures]},
        **more,
    }


def stage(key: str, *actions: dict[str, Any], value: str | None = None) -> dict[str, Any]:
    if not actions:
        raise ValueError(f"stage {key!r} needs at least one action")
    return {"key": key, "value": value or key, "actions": list(actions)}


def send(template: str, *channels: str, marketing: bool = True) -> dict[str, Any]:
    return {"type": "send_message", "channels": list(channels or ("email",)),
            "template": template, "marketing": marketing}  # fmt: skip


def wait(duration: str) -> dict[str, Any]:
    if not duration.startswith("P"):
        raise ValueError(f"a duration is ISO-8601, such as P3D or PT2H; got {duration!r}")
    return {"type": "wait", "duration": duration}


def go_to(target: str) -> dict[str, Any]:
    return {"type": "go_to", "target": target}


def path(name: str, when: dict[str, Any], go_to: str | None = None) -> dict[str, Any]:
    return {"name": name, "when": when, **({"go_to": go_to} if go_to else {})}


def branch(name: str, *paths: dict[str, Any], otherwise: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": "branch", "name": name, "paths": list(paths)}
    if otherwise is not None:
        found["otherwise"] = {"go_to": otherwise}
    return found


def split(name: str, **percents: int) -> dict[str, Any]:
    """`split("subject", A=50, B=50)`: variants that continue with the next action."""
    if sum(percents.values()) != 100:
        raise ValueError(f"the percentages must add up to 100, not {sum(percents.values())}")
    return {"type": "split", "name": name,
            "variants": [{"name": n, "percent": p} for n, p in percents.items()]}  # fmt: skip
