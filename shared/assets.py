"""The assets a journey uses: templates, lists, properties and channels, each with where
the journey uses it, and the warnings for those that are missing or not configured. Pure:
the journeys service says what exists now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from shared.criteria import ListLeaf, PropertyLeaf, iter_leaves
from shared.journey import (
    BranchOn,
    CreateTask,
    Journey,
    SendMessage,
    SendNotification,
    SetProperty,
)
from shared.validation import Problem

AssetKind = Literal["template", "list", "property", "channel"]


class Asset(BaseModel):
    kind: AssetKind
    name: str
    used_at: list[str]
    """JSON paths in the journey that name it."""
    exists: bool | None = None
    """Templates: saved; lists: has members; channels: configured. Properties: not told."""


def assets_of(journey: Journey) -> list[Asset]:
    """Every asset the journey names, in kind and name order."""
    found: dict[tuple[AssetKind, str], list[str]] = {}

    def use(kind: AssetKind, name: str | None, path: str) -> None:
        if name:
            found.setdefault((kind, name), []).append(path)

    use("property", journey.stage_property, "stage_property")
    for i, name in enumerate(journey.eligible_lists):
        use("list", name, f"eligible_lists[{i}]")
    for i, name in enumerate(journey.suppression_lists):
        use("list", name, f"suppression_lists[{i}]")
    use("list", journey.ends.success.add_to_list, "ends.success.add_to_list")
    for i, end in enumerate(journey.ends.failure):
        use("list", end.add_to_list, f"ends.failure[{i}].add_to_list")
    if journey.goal is not None:
        use("list", journey.goal.add_to_list, "goal.add_to_list")
        for leaf in iter_leaves(journey.goal.criteria):
            if isinstance(leaf, ListLeaf):
                use("list", leaf.list, "goal.criteria")
            elif isinstance(leaf, PropertyLeaf):
                use("property", leaf.property, "goal.criteria")
    for stage in journey.stages:
        for i, action in enumerate(stage.actions):
            path = f"stages[{stage.key}].actions[{i}]"
            if isinstance(action, BranchOn):
                for k, way in enumerate(action.paths):
                    for leaf in iter_leaves(way.when):
                        if isinstance(leaf, ListLeaf):
                            use("list", leaf.list, f"{path}.paths[{k}].when")
                        elif isinstance(leaf, PropertyLeaf):
                            use("property", leaf.property, f"{path}.paths[{k}].when")
            if isinstance(action, SendMessage):
                use("template", action.template, f"{path}.template")
                for channel in action.channels:
                    use("channel", channel, f"{path}.channels")
            elif isinstance(action, CreateTask | SendNotification):
                use("channel", "webhook", path)
            elif isinstance(action, SetProperty):
                use("property", action.property, f"{path}.property")
    return [
        Asset(kind=kind, name=name, used_at=paths) for (kind, name), paths in sorted(found.items())
    ]


def not_ready(assets: Iterable[Asset]) -> list[Problem]:
    """Warnings for a template that does not exist and a channel with no provider, once
    `exists` has been told (each at the first place the journey uses it)."""
    warnings = []
    for asset in assets:
        if asset.exists is not False:
            continue
        if asset.kind == "template":
            warnings.append(
                Problem(
                    path=asset.used_at[0],
                    reason="template_missing",
                    message=f"Template {asset.name!r} does not exist: its sends would fail.",
                )
            )
        elif asset.kind == "channel":
            warnings.append(
                Problem(
                    path=asset.used_at[0],
                    reason="channel_not_configured",
                    message=f"No provider is configured for {asset.name}: its messages would "
                    "be kept in the outbox, not sent.",
                )
            )
    return warnings
