"""Branches and splits as pure decisions, and the rules that refuse a bad one."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contact import ContactState
from shared.decisions import decide, draw, take_branch, take_split
from shared.enrollment import Assign, EnrollmentState, TakePath
from shared.journey import BranchOn, Split, Variant
from shared.metrics import Tally, stage_metrics
from shared.validation import validate_journey
from tests.helpers.journeys import branch, definition, go_to, journey, path, split, stage, wait


def _state(**contact: Any) -> EnrollmentState:
    return EnrollmentState(contact=ContactState(**contact))


ROUTE = BranchOn.model_validate(
    branch(
        "by plan",
        path("enterprise", {"property": "plan", "op": "eq", "value": "enterprise"}, "sales"),
        path("vip", {"list": "vip"}),
        otherwise="nurture",
    )
)
TEST = Split.model_validate(
    split("subject", ("A", 45, "a"), ("B", 45, "b"), holdout=("control", 10), winner={"auto": True})
)


def test_the_first_path_that_holds_is_taken_and_every_path_tried_is_explained() -> None:
    both = take_branch(ROUTE, _state(properties={"plan": "enterprise"}, lists=["vip"]))
    assert (both.result, both.go_to) == ("enterprise", "sales")
    assert [t["path"] for t in both.detail["tried"]] == ["enterprise"]
    vip = take_branch(ROUTE, _state(lists=["vip"]))
    assert (vip.result, vip.go_to) == ("vip", None)  # no go_to: the next action
    assert [t["explanation"]["result"] for t in vip.detail["tried"]] == [False, True]
    none = take_branch(ROUTE, _state())
    assert (none.result, none.go_to) == ("otherwise", "nurture")
    assert none.effects == [TakePath(node="branch:by plan/otherwise")]
    bare = BranchOn.model_validate(branch("b", path("p", {"list": "x"})))
    assert take_branch(bare, _state()).go_to is None  # no otherwise at all: the next action


def test_draw_follows_the_cumulative_percentages() -> None:
    variants = TEST.variants
    picks = {n: draw(variants, n).name for n in (0.0, 0.4499, 0.45, 0.8999, 0.9, 0.99999)}
    assert list(picks.values()) == ["A", "A", "B", "B", "control", "control"]
    never = [Variant(name="X", percent=0), Variant(name="Y", percent=100)]
    assert {draw(never, n / 100).name for n in range(100)} == {"Y"}


def test_a_split_draws_once_and_a_contact_that_comes_back_keeps_its_variant() -> None:
    state = _state()
    first = take_split(TEST, state, 0.5, {}, version=3)
    assert (first.result, first.go_to, first.holdout) == ("B", "b", False)
    assert Assign(split="subject", variant="B", version=3, auto_winner=True) in first.effects
    again = take_split(TEST, state, 0.0, {}, version=3)
    assert again.result == "B" and again.detail["how"] == "kept"
    assert not any(isinstance(e, Assign) for e in again.effects)  # counted once
    held = take_split(TEST, _state(), 0.95, {}, version=3)
    assert held.holdout and held.go_to is None


def test_after_a_winner_new_contacts_take_it_but_the_holdout_keeps_its_share() -> None:
    picks = [take_split(TEST, _state(), n / 100, {"subject": "B"}, 1) for n in range(100)]
    assert {p.result for p in picks} == {"B", "control"}
    assert sum(p.result == "control" for p in picks) == 10
    assert all(p.detail["how"] == "winner" for p in picks)
    # a winner the split does not have (an edited version), or a split without auto
    assert decide(TEST, _state(), 0.0, {"subject": "gone"}, 1).result == "A"
    manual = TEST.model_copy(update={"winner": None})
    assert decide(manual, _state(), 0.0, {"subject": "B"}, 1).result == "A"


def test_stage_metrics_show_each_decision_apart_from_the_ways_out() -> None:
    j = journey([stage("a", wait("P1D"), go_to("success"))])
    tally = Tally()
    tally.entered["a"] = 10
    tally.paths["a"] = {  # type: ignore[assignment]
        "end:success": 7,
        "exit:holdout": 3,
        "split:subject/A": 7,
        "split:subject/control": 3,
        "branch:by plan/vip": 1,
        "branch:by plan/otherwise": 3,
    }
    [a] = stage_metrics(j, tally)
    assert a.left == 10 and [p.to for p in a.paths] == ["end:success", "exit:holdout"]
    shares = {d.node: (d.count, d.percent) for d in a.decisions}
    assert shares == {
        "branch:by plan/otherwise": (3, 75.0),
        "branch:by plan/vip": (1, 25.0),
        "split:subject/A": (7, 70.0),
        "split:subject/control": (3, 30.0),
    }


def _problems(*actions: dict[str, Any], **overrides: Any) -> set[tuple[str, str]]:
    stages = [stage("a", *actions), stage("b", wait("P1D"), go_to("success"))]
    result = validate_journey(definition(stages, **overrides))
    return {(p.path, p.reason) for p in result.problems}


GOAL = {"criteria": {"event": "purchase"}}


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            split("s", ("A", 50, "nowhere"), ("B", 40, None)),
            {
                ("stages[0].actions[0].variants", "split_percent_sum"),
                ("stages[0].actions[0].variants[0].go_to", "unknown_go_to_target"),
            },
        ),
        (
            split("s", ("A", 50, None), ("A", 50, None)),
            {("stages[0].actions[0].variants[1].name", "duplicate_path_name")},
        ),
        (
            {**split("s", ("A", 90, None), holdout=("h", 10)),
             "variants": [{"name": "A", "percent": 80}, {"name": "h", "percent": 10,
                          "holdout": True, "go_to": "b"}, {"name": "g", "percent": 10,
                          "holdout": True}]},
            {
                ("stages[0].actions[0].variants[1].go_to", "holdout_with_go_to"),
                ("stages[0].actions[0].variants[2].holdout", "more_than_one_holdout"),
            },
        ),
        (
            split("s", ("A", 50, None), ("B", 50, None), winner={"auto": True}),
            {("stages[0].actions[0].winner", "winner_without_goal")},
        ),
        (
            split("s", ("A", 100, None)),
            {("stages[0].actions[0].variants", "too_few_variants")},
        ),
        (
            branch("b", *[path(f"p{i}", {"list": "x"}) for i in range(21)]),
            {("stages[0].actions[0].paths", "too_many_paths")},
        ),
        (
            branch("b", path("otherwise", {"list": "x"}), path("p", {"list": "y"}, "zz")),
            {
                ("stages[0].actions[0].paths[0].name", "reserved_path_name"),
                ("stages[0].actions[0].paths[1].go_to", "unknown_go_to_target"),
            },
        ),
    ],
)  # fmt: skip
def test_bad_branches_and_splits_are_refused_with_their_paths(
    action: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    assert _problems(action) == expected


def test_a_name_used_twice_and_a_branch_on_a_loop_without_a_wait_are_refused() -> None:
    twice = _problems(branch("x", path("p", {"list": "l"})), split("x", ("A", 50, None),
                      ("B", 50, None)), goal=GOAL)  # fmt: skip
    assert twice == {("stages[0].actions[1].name", "duplicate_decision_name")}
    looping = [
        stage("a", branch("again", path("loop", {"list": "l"}, "b"), otherwise="success")),
        stage("b", split("s", ("A", 50, "a"), ("B", 50, None)), wait("P1D")),
    ]
    problems = validate_journey(definition(looping)).problems
    assert [p.reason for p in problems] == ["busy_loop"]
    slashed = _problems(branch("a/b", path("p", {"list": "l"})))
    assert slashed == {("stages[0].actions[0].name", "invalid_value")}
