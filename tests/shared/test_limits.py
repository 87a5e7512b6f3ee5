"""The limits a journey is saved and activated under."""

from __future__ import annotations

import pytest

from shared import limits
from shared.errors import Conflict, Invalid
from tests.helpers.journeys import definition, journey


def test_a_valid_definition_passes_and_too_many_lists_is_a_problem() -> None:
    parsed, result = limits.checked(definition(eligible_lists=["a", "b"]), max_eligible_lists=2)
    assert parsed.eligible_lists == ["a", "b"] and result.problems == []
    with pytest.raises(Invalid) as refused:
        limits.checked(definition(eligible_lists=["a", "b", "c"]), max_eligible_lists=2)
    assert refused.value.reason == "invalid_journey"
    assert [p["reason"] for p in refused.value.extra["problems"]] == ["too_many_eligible_lists"]


def test_every_problem_at_once() -> None:
    with pytest.raises(Invalid) as refused:
        limits.checked({"name": ""}, max_eligible_lists=5)
    assert len(refused.value.extra["problems"]) > 1


def test_the_owner_limit() -> None:
    assert limits.owner_limit("m@x", owned=9, limit=10) is None
    refused = limits.owner_limit("m@x", owned=10, limit=10)
    assert isinstance(refused, Conflict) and refused.reason == "journey_limit_reached"
    assert refused.extra == {"owner": "m@x", "limit": 10}


def test_one_active_journey_per_audience() -> None:
    mine = journey(eligible_lists=["b", "a"])
    assert limits.audience_conflict(mine, [("j1", ["a"], "journey_stage")]) is None
    assert limits.audience_conflict(mine, [("j1", ["a", "b"], "other_stage")]) is None
    refused = limits.audience_conflict(mine, [("j2", ["a", "b"], "journey_stage")])
    assert refused is not None and refused.extra == {"conflicting_journey_id": "j2"}


def test_clearing_the_goal_starts_a_new_epoch_editing_it_does_not() -> None:
    goal = {"criteria": {"property": "plan", "op": "eq", "value": "paid"}}
    with_goal = definition(goal=goal)
    assert limits.goal_epoch_after_edit(with_goal, journey(), 3) == 4
    assert limits.goal_epoch_after_edit(with_goal, journey(goal=goal), 3) == 3
    assert limits.goal_epoch_after_edit(definition(), journey(goal=goal), 3) == 3
