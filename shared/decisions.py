"""Branches and splits: decisions of the workflow, taken between actions with no activity
(docs/journeys.md, "Branches and splits"). Pure: the workflow passes in its contact, its
random number and the winners declared when it started; these say where it goes and what
the log and the read models record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.criteria import explain
from shared.enrollment import Assign, Effect, EnrollmentState, TakePath
from shared.journey import BranchOn, Split, Variant


@dataclass(frozen=True)
class Decision:
    """Where a branch or split sends the contact, and its log record."""

    go_to: str | None
    """None: the stage goes on with its next action."""
    result: str
    """The path or variant taken (`otherwise` when no path held)."""
    detail: dict[str, Any]
    effects: list[Effect]
    holdout: bool = False


def decide(
    action: BranchOn | Split,
    state: EnrollmentState,
    number: float,
    winners: dict[str, str],
    version: int,
    forced: dict[str, str] | None = None,
) -> Decision:
    """The branch's path or the split's variant for this enrollment now (`forced`: a
    simulation's choice of variant)."""
    if isinstance(action, BranchOn):
        return take_branch(action, state)
    return take_split(action, state, number, winners, version, forced)


def branch_node(action: BranchOn, path: str) -> str:
    """The path's node in the stage's metrics: `branch:<name>/<path>`."""
    return f"branch:{action.name}/{path}"


def split_node(action: Split, variant: str) -> str:
    """The variant's node in the stage's metrics: `split:<name>/<variant>`."""
    return f"split:{action.name}/{variant}"


def take_branch(action: BranchOn, state: EnrollmentState) -> Decision:
    """The first path whose `when` holds for the contact now, else `otherwise`. The log
    keeps the explanation of every path tried (leaf by leaf), so it says why."""
    tried: list[dict[str, Any]] = []
    for path in action.paths:
        why = explain(path.when, state.contact)
        tried.append({"path": path.name, "explanation": why.model_dump(mode="json")})
        if why.result:
            return _branch_decision(action, path.name, path.go_to, tried)
    return _branch_decision(action, "otherwise", action.otherwise_go_to, tried)


def _branch_decision(
    action: BranchOn, taken: str, go_to: str | None, tried: list[dict[str, Any]]
) -> Decision:
    detail = {"branch": action.name, "path": taken, "go_to": go_to, "tried": tried}
    effects: list[Effect] = [TakePath(node=branch_node(action, taken))]
    return Decision(go_to=go_to, result=taken, detail=detail, effects=effects)


def draw(variants: list[Variant], number: float) -> Variant:
    """The variant a uniform `number` in [0, 1) falls on, by the cumulative percentages."""
    point = number * 100
    upto = 0
    for variant in variants:
        upto += variant.percent
        if point < upto:
            return variant
    return next(v for v in reversed(variants) if v.percent > 0)


def winner_share(action: Split, winner: str) -> list[Variant]:
    """After a declared winner: the winner takes every share but the holdout's."""
    holdout = [v for v in action.variants if v.holdout]
    kept = sum(v.percent for v in holdout)
    chosen = next(v for v in action.variants if v.name == winner)
    return [*holdout, chosen.model_copy(update={"percent": 100 - kept})]


def take_split(
    action: Split,
    state: EnrollmentState,
    number: float,
    winners: dict[str, str],
    version: int,
    forced: dict[str, str] | None = None,
) -> Decision:
    """The variant for this enrollment: the one it drew before (a loop back keeps it),
    else drawn with `number` (the workflow's deterministic random), over the winner's
    share once a winner of this split is declared; a simulation may force one."""
    names = {v.name: v for v in action.variants}
    assigned = state.assignments.get(action.name)
    declared = winners.get(action.name) if action.winner and action.winner.auto else None
    chosen = (forced or {}).get(action.name)
    if assigned in names:
        variant, how = names[assigned], "kept"
    elif chosen in names:
        variant, how = names[chosen], "forced"
    elif declared in names and not names[declared].holdout:
        variant, how = draw(winner_share(action, declared), number), "winner"
    else:
        variant, how = draw(action.variants, number), "drawn"
    first = assigned is None
    state.assignments[action.name] = variant.name
    detail = {"split": action.name, "variant": variant.name, "holdout": variant.holdout,
              "how": how, "go_to": variant.go_to}  # fmt: skip
    effects: list[Effect] = [TakePath(node=split_node(action, variant.name))]
    if first:
        effects.append(
            Assign(
                split=action.name,
                variant=variant.name,
                holdout=variant.holdout,
                version=version,
                auto_winner=bool(action.winner and action.winner.auto),
            )
        )
    return Decision(
        go_to=variant.go_to,
        result=variant.name,
        detail=detail,
        effects=effects,
        holdout=variant.holdout,
    )
