"""Validation rules of `branch` and `split` actions (docs/journeys.md, "Branches and
splits"), run by `shared.validation`'s checker for each such action. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from shared.journey import MAX_PATHS, BranchOn, Split, Stage

REASONS = frozenset(
    {
        "too_many_paths", "too_few_variants", "duplicate_path_name", "reserved_path_name",
        "duplicate_decision_name", "split_percent_sum", "more_than_one_holdout",
        "holdout_with_go_to", "winner_without_goal",
    }
)  # fmt: skip
LENGTH_REASONS = {
    ("paths", "too_long"): "too_many_paths",
    ("variants", "too_long"): "too_many_paths",
    ("variants", "too_short"): "too_few_variants",
}
LENGTH_MESSAGES = {
    "too_many_paths": f"A branch or split has at most {MAX_PATHS} paths or variants.",
    "too_few_variants": "A split needs at least two variants.",
}


class Checker(Protocol):
    has_goal: bool
    decision_names: dict[str, str]

    def problem(self, path: str, reason: str, message: str) -> None: ...


Jump = Callable[[str, str], None]
"""(path, target): checks a go_to target and records the edge between stages."""


def check(checker: Checker, stage: Stage, path: str, action: BranchOn | Split, jump: Jump) -> bool:
    """Checks the action; True when every way out of it jumps (control never passes
    beyond it)."""
    first = checker.decision_names.setdefault(action.name, path)
    if first != path:
        checker.problem(
            f"{path}.name",
            "duplicate_decision_name",
            f"The name {action.name!r} is already used at {first}; names of "
            "branches and splits are unique in a journey (metrics and experiments use them).",
        )
    if isinstance(action, BranchOn):
        return _branch(checker, path, action, jump)
    return _split(checker, path, action, jump)


def _branch(checker: Checker, path: str, action: BranchOn, jump: Jump) -> bool:
    seen: set[str] = set()
    for k, way in enumerate(action.paths):
        at = f"{path}.paths[{k}]"
        if way.name == "otherwise":
            checker.problem(
                f"{at}.name",
                "reserved_path_name",
                "The name 'otherwise' is the branch's fallback; give this path another name.",
            )
        elif way.name in seen:
            checker.problem(
                f"{at}.name",
                "duplicate_path_name",
                f"Path name {way.name!r} is used twice in branch {action.name!r}.",
            )
        seen.add(way.name)
        if way.go_to is not None:
            jump(f"{at}.go_to", way.go_to)
    if action.otherwise_go_to is not None:
        jump(f"{path}.otherwise.go_to", action.otherwise_go_to)
    return all(p.go_to is not None for p in action.paths) and action.otherwise_go_to is not None


def _split(checker: Checker, path: str, action: Split, jump: Jump) -> bool:
    total = sum(v.percent for v in action.variants)
    if total != 100:
        checker.problem(
            f"{path}.variants",
            "split_percent_sum",
            f"The variants' percentages must add up to 100; these add up to {total}.",
        )
    seen: set[str] = set()
    holdouts = 0
    for k, variant in enumerate(action.variants):
        at = f"{path}.variants[{k}]"
        if variant.name in seen:
            checker.problem(
                f"{at}.name",
                "duplicate_path_name",
                f"Variant name {variant.name!r} is used twice in split {action.name!r}.",
            )
        seen.add(variant.name)
        if variant.holdout:
            holdouts += 1
            if holdouts > 1:
                checker.problem(
                    f"{at}.holdout",
                    "more_than_one_holdout",
                    f"Split {action.name!r} has more than one holdout variant.",
                )
            if variant.go_to is not None:
                checker.problem(
                    f"{at}.go_to",
                    "holdout_with_go_to",
                    "A holdout variant receives nothing more from the journey, so it has no go_to.",
                )
        elif variant.go_to is not None:
            jump(f"{at}.go_to", variant.go_to)
    if action.winner is not None and not checker.has_goal:
        checker.problem(
            f"{path}.winner",
            "winner_without_goal",
            "A split's winner is decided by the journey's goal, and this journey has none.",
        )
    return all(v.go_to is not None or v.holdout for v in action.variants)
