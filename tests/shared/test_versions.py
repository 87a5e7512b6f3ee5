"""What an edit changed, by path."""

from __future__ import annotations

from shared.versions import MAX_CHANGES, changes_between


def test_stages_are_matched_by_key_and_scalars_carry_before_and_after() -> None:
    before = {"name": "A", "stages": [{"key": "x", "actions": [{"duration": "P1D"}]}]}
    after = {
        "name": "B",
        "stages": [{"key": "y", "actions": []}, {"key": "x", "actions": [{"duration": "P2D"}]}],
        "goal": {"target": {"count": 3}},
    }
    assert changes_between(before, after) == [
        {"path": "name", "change": "changed", "before": "A", "after": "B"},
        {
            "path": "stages[x].actions[0].duration",
            "change": "changed",
            "before": "P1D",
            "after": "P2D",
        },
        {"path": "stages[y]", "change": "added"},
        {"path": "goal", "change": "added"},
    ]


def test_lists_without_keys_by_position_and_nothing_for_no_change() -> None:
    assert changes_between({"a": [{"v": 1}]}, {"a": []}) == [{"path": "a[0]", "change": "removed"}]
    assert changes_between({"a": [1, 2]}, {"a": [2, 1]}) == [
        {"path": "a", "change": "changed", "before": [1, 2], "after": [2, 1]}
    ]
    assert changes_between({"a": {"b": 1}}, {"a": {"b": 1}}) == []


def test_a_long_list_of_changes_is_summed_up() -> None:
    found = changes_between({}, {f"k{i}": i for i in range(150)})
    assert len(found) == MAX_CHANGES
    assert found[-1] == {"path": "", "change": "51 more changes"}
