"""Builders for journey definitions: plain JSON (dicts) in the API's shape, validated
locally against the journey's JSON Schema (the one `GET /v1/journeys/schema` serves,
bundled with the client) before anything is sent; the API's `validate_journey` (or a
save) adds the rules that look across the journey (targets that exist, loops without a
wait, ...)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator


@cache
def _validator() -> Draft202012Validator:
    text = resources.files("nurture_client").joinpath("journey.schema.json").read_text()
    return Draft202012Validator(json.loads(text))


def problems(definition: dict[str, Any]) -> list[str]:
    """What the journey's JSON Schema refuses in `definition`, each with its JSON path."""
    found = []
    for error in sorted(_validator().iter_errors(definition), key=lambda e: list(e.path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        found.append(f"{where.lstrip('.') or 'journey'}: {error.message}")
    return found


def journey(name: str, owner: str, stages: list[dict[str, Any]], *, stage_property: str,
            success: str = "customer", failures: tuple[str, ...] = (),
            **more: Any) -> dict[str, Any]:  # fmt: skip
    """A journey starting at its first stage, with a success end and failure ends."""
    if not stages:
        raise ValueError("a journey needs at least one stage")
    keys = [s["key"] for s in stages]
    if len(set(keys)) != len(keys):
        raise ValueError(f"stage keys must be unique: {keys}")
    definition = {
        "name": name,
        "owner": owner,
        "stage_property": stage_property,
        "start_stage": keys[0],
        "stages": stages,
        "ends": {"success": {"value": success}, "failure": [{"value": f} for f in failures]},
        **more,
    }
    if found := problems(definition):
        raise ValueError("not a valid journey: " + "; ".join(found))
    return definition


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
