"""Journey metrics from their tallies."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.errors import Invalid
from shared.journey import Goal
from shared.metrics import Tally, goal_metrics, journey_metrics, window_of
from tests.helpers.journeys import go_to, journey, stage, wait

CRITERIA = {"property": "plan", "op": "eq", "value": "paid"}


def test_a_percent_target_says_how_far_and_how_many_more() -> None:
    goal = Goal.model_validate({"criteria": CRITERIA, "target": {"percent": 20}})
    half = goal_metrics(goal, epoch=1, enrolled=50, conversions=5)
    assert (half.conversion_rate, half.progress, half.conversions_needed, half.target_met) == (
        10.0,
        50.0,
        5,
        False,
    )
    met = goal_metrics(goal, epoch=1, enrolled=50, conversions=10)
    assert (met.target_met, met.conversions_needed, met.progress) == (True, 0, 100.0)
    empty = goal_metrics(goal, epoch=1, enrolled=0, conversions=0)
    assert (empty.conversion_rate, empty.progress, empty.conversions_needed) == (0.0, 0.0, 1)


def test_a_count_target() -> None:
    goal = Goal.model_validate({"criteria": CRITERIA, "target": {"count": 4}})
    found = goal_metrics(goal, epoch=2, enrolled=10, conversions=3)
    assert (found.progress, found.conversions_needed, found.target) == (75.0, 1, {"count": 4})


def test_ends_and_paths_as_counts_and_percentages() -> None:
    flow = journey([stage("a", wait("P1D"), go_to("b")), stage("b", wait("P1D"))])
    tally = Tally(
        enrolled=4,
        by_status=Counter({"running": 1, "completed": 3}),
        ended=Counter({"success": 2, "goal_met": 1, "suppressed": 0}),
        refused=Counter({"suppressed": 2}),
        entered=Counter({"a": 4, "b": 3, "gone": 1}),
        active=Counter({"b": 1}),
        paths={"a": Counter({"b": 3, "exit:goal_met": 1}), "b": Counter({"end:success": 2})},
    )
    found = journey_metrics("j", flow, 1, tally, eligible=10, window=None)
    assert {k: (s.count, s.percent) for k, s in found.ended.items()} == {
        "goal_met": (1, 25.0),
        "success": (2, 50.0),
    }
    assert (found.active, found.refused, found.refused_total) == (1, {"suppressed": 2}, 2)
    a, b, gone = found.stages
    assert [(p.to, p.count, p.percent) for p in a.paths] == [
        ("b", 3, 75.0),
        ("exit:goal_met", 1, 25.0),
    ]
    assert (b.entered, b.active, b.left) == (3, 1, 2)
    assert gone.key == "gone"  # a stage an earlier version had still shows
    assert {k: (s.count, s.percent) for k, s in found.ends.items()} == {
        "end:success": (2, 50.0),
        "end:failure:churned": (0, 0.0),
    }
    assert {k: (s.count, s.percent) for k, s in found.exits.items()} == {"exit:goal_met": (1, 25.0)}


def test_a_window_needs_zones_and_order() -> None:
    assert window_of(None, "") is None
    found = window_of("2026-01-01T00:00:00Z", "2026-01-02T00:00:00 02:00")
    assert found is not None and found.until is not None and found.until.utcoffset() is not None
    for since, until in (
        ("yesterday", None),
        ("2026-01-01T00:00:00", None),
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"),
    ):
        with pytest.raises(Invalid):
            window_of(since, until)
