"""The criteria evaluator: every operator, missing properties, type mismatches, nesting,
event counters and the explanations used in exit reasons."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.contact import SEEN_EVENT_IDS_LIMIT, ContactEvent, ContactState
from shared.criteria import (
    AllNode,
    AnyNode,
    Criteria,
    EventFilter,
    EventLeaf,
    ListLeaf,
    PropertyLeaf,
    apply_event,
    evaluate,
    explain,
    iter_leaves,
    matches_event,
)
from shared.journey import Journey

CRITERIA: TypeAdapter[Criteria] = TypeAdapter(Criteria)
EXAMPLES = Path(__file__).parents[2] / "examples"


def leaf(prop: str, op: str, value: Any = None) -> Criteria:
    node: dict[str, Any] = {"property": prop, "op": op}
    if value is not None:
        node["value"] = value
    return CRITERIA.validate_python(node)


def props(**properties: Any) -> ContactState:
    return ContactState(properties=properties)


# (property value or MISSING, op, expected value, result)
MISSING = object()
OPERATOR_TABLE: list[tuple[Any, str, Any, bool]] = [
    # eq
    ("customer", "eq", "customer", True),
    ("Customer", "eq", "customer", False),
    (5, "eq", 5, True),
    (5, "eq", 5.0, True),
    ("5", "eq", 5, True),
    (5, "eq", "5.0", True),
    ("abc", "eq", 5, False),
    ("007", "eq", "7", False),  # two strings compare as strings
    ("1.10", "eq", "1.1", False),
    (True, "eq", True, True),
    (True, "eq", 1, False),
    (1, "eq", True, False),
    ("true", "eq", True, False),
    ("2024-05-01", "eq", "2024-05-01T00:00:00Z", True),
    ("2024-05-01T02:00:00+02:00", "eq", "2024-05-01T00:00:00Z", True),
    (["a", "b"], "eq", ["a", "b"], True),
    ({"a": 1}, "eq", {"a": 1}, True),
    (MISSING, "eq", "customer", False),
    (None, "eq", "customer", False),
    # neq
    ("lead", "neq", "customer", True),
    ("customer", "neq", "customer", False),
    ("5", "neq", 5, False),
    ("abc", "neq", 5, True),
    (MISSING, "neq", "customer", True),
    (None, "neq", "customer", True),
    # in
    ("b", "in", ["a", "b"], True),
    ("c", "in", ["a", "b"], False),
    ("2", "in", [1, 2, 3], True),
    (2, "in", ["1", "2"], True),
    (MISSING, "in", ["a"], False),
    # gt / gte / lt / lte
    (10, "gt", 9, True),
    (9, "gt", 9, False),
    ("10", "gt", 9, True),
    ("10", "gt", "9", True),  # both numeric strings: numerically, not "10" < "9"
    (10, "gt", "abc", False),
    ("abc", "gt", 1, False),
    (9, "gte", 9, True),
    (8.5, "gte", 9, False),
    (3, "lt", 4, True),
    ("3.5", "lt", 4, True),
    (4, "lt", 4, False),
    (4, "lte", 4, True),
    (5, "lte", 4, False),
    ("2024-05-02", "gt", "2024-05-01T23:59:59Z", True),
    ("2024-05-01T10:00:00", "lt", "2024-05-01T11:00:00+00:00", True),
    ("2024-05-01T10:00:00+02:00", "lt", "2024-05-01T09:00:00Z", True),
    ("banana", "gt", "apple", True),
    ("apple", "lte", "apple", True),
    ("2024-05-02", "gt", 5, False),
    (True, "gt", 0, False),
    ([1], "gt", 0, False),
    (MISSING, "gt", 0, False),
    (MISSING, "lt", 0, False),
    (None, "lte", 0, False),
    # contains
    ("hello world", "contains", "world", True),
    ("hello world", "contains", "World", False),
    (["a", "b"], "contains", "b", True),
    (["a", "b"], "contains", "c", False),
    ([1, 2], "contains", "2", True),
    (12345, "contains", "23", False),
    ("abc", "contains", 1, False),
    (MISSING, "contains", "x", False),
    # is_set / is_unset
    ("x", "is_set", None, True),
    ("", "is_set", None, True),
    (0, "is_set", None, True),
    (False, "is_set", None, True),
    (MISSING, "is_set", None, False),
    (None, "is_set", None, False),
    ("x", "is_unset", None, False),
    (MISSING, "is_unset", None, True),
    (None, "is_unset", None, True),
]


@pytest.mark.parametrize(("actual", "op", "expected", "result"), OPERATOR_TABLE)
def test_property_operators(actual: Any, op: str, expected: Any, result: bool) -> None:
    state = props() if actual is MISSING else props(p=actual)
    criteria = leaf("p", op, expected)
    assert evaluate(criteria, state) is result
    assert explain(criteria, state).result is result


def test_every_operator_is_in_the_table() -> None:
    assert {op for _, op, _, _ in OPERATOR_TABLE} == {
        "eq", "neq", "in", "gt", "gte", "lt", "lte", "contains", "is_set", "is_unset",
    }  # fmt: skip


def test_python_dates_compare_with_iso_strings() -> None:
    state = props(signed_up=date(2024, 5, 1), seen=datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert evaluate(leaf("signed_up", "lt", "2024-05-02"), state)
    assert evaluate(leaf("seen", "gt", "2024-05-01T11:00:00Z"), state)
    assert evaluate(leaf("signed_up", "eq", "2024-05-01"), state)


def test_nan_is_never_comparable() -> None:
    state = props(p=float("nan"))
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert evaluate(leaf("p", op, 1), state) is False
    assert evaluate(leaf("p", "neq", 1), state) is True


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        ({"property": "p", "op": "eq"}, "missing_value"),
        ({"property": "p", "op": "gt", "value": None}, "missing_value"),
        ({"property": "p", "op": "is_set", "value": 1}, "unexpected_value"),
        ({"property": "p", "op": "in", "value": "a"}, "invalid_value"),
        ({"property": "p", "op": "gt", "value": [1]}, "invalid_value"),
        ({"property": "p", "op": "gt", "value": True}, "invalid_value"),
        ({"property": "p", "op": "like", "value": "a"}, "literal_error"),
        ({"event": "e", "min_count": 0}, "greater_than_equal"),
        ({"event": "e", "where": {"k": [1]}}, "invalid_where"),
        ({"all": []}, "too_short"),
        ({"any": []}, "too_short"),
        ({"nothing": 1}, "invalid_criteria"),
        ({"list": "l", "member": True, "extra": 1}, "extra_forbidden"),
    ],
)
def test_malformed_criteria_are_rejected(node: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        CRITERIA.validate_python(node)
    assert reason in {e["type"] for e in exc.value.errors()}


def test_kind_is_taken_from_the_key_present() -> None:
    assert isinstance(CRITERIA.validate_python({"property": "p", "op": "is_set"}), PropertyLeaf)
    assert isinstance(CRITERIA.validate_python({"event": "e"}), EventLeaf)
    assert isinstance(CRITERIA.validate_python({"list": "l"}), ListLeaf)
    assert isinstance(CRITERIA.validate_python({"all": [{"list": "l"}]}), AllNode)
    assert isinstance(CRITERIA.validate_python({"any": [{"list": "l"}]}), AnyNode)


# --- lists, events, nesting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lists", "member", "result"),
    [(["newsletter"], True, True), ([], True, False), (["newsletter"], False, False),
     ([], False, True)],
)  # fmt: skip
def test_list_leaves(lists: list[str], member: bool, result: bool) -> None:
    criteria = CRITERIA.validate_python({"list": "newsletter", "member": member})
    assert evaluate(criteria, ContactState(lists=lists)) is result


def test_event_leaf_needs_min_count() -> None:
    node = EventLeaf(event="page_viewed", min_count=3)
    key = node.counter_key()
    assert not evaluate(node, ContactState(event_counts={key: 2}))
    assert evaluate(node, ContactState(event_counts={key: 3}))
    assert evaluate(node, ContactState(event_counts={key: 4}))
    assert not evaluate(node, ContactState())


def test_counter_key_is_canonical() -> None:
    a = EventLeaf(event="purchase", where={"sku": "x", "qty": 2}, min_count=1)
    b = EventLeaf(event="purchase", where={"qty": 2, "sku": "x"}, min_count=5)
    c = EventLeaf(event="purchase", target="x", min_count=1)
    d = EventLeaf(event="purchase", where={"qty": "2", "sku": "x"})
    assert a.counter_key() == b.counter_key()
    assert len({a.counter_key(), c.counter_key(), d.counter_key()}) == 3
    assert json.loads(a.counter_key()) == ["purchase", None, [["qty", 2], ["sku", "x"]]]


NESTED = CRITERIA.validate_python(
    {
        "any": [
            {"property": "lifecycle_stage", "op": "eq", "value": "customer"},
            {"all": [{"property": "seats", "op": "gte", "value": 10}, {"list": "enterprise"}]},
            {"all": [{"any": [{"list": "a"}, {"list": "b"}]}, {"list": "c", "member": False}]},
        ]
    }
)


@pytest.mark.parametrize(
    ("state", "result"),
    [
        (ContactState(), False),
        (props(lifecycle_stage="customer"), True),
        (ContactState(properties={"seats": 12}, lists=["enterprise"]), True),
        (ContactState(properties={"seats": 9}, lists=["enterprise"]), False),
        (ContactState(properties={"seats": "12"}), False),
        (ContactState(lists=["b"]), True),
        (ContactState(lists=["b", "c"]), False),
        (ContactState(lists=["c"]), False),
    ],
)
def test_nesting(state: ContactState, result: bool) -> None:
    assert evaluate(NESTED, state) is result
    assert explain(NESTED, state).result is result


def test_iter_leaves_in_definition_order() -> None:
    leaves = list(iter_leaves(NESTED))
    assert [type(x).__name__ for x in leaves] == [
        "PropertyLeaf", "PropertyLeaf", "ListLeaf", "ListLeaf", "ListLeaf", "ListLeaf",
    ]  # fmt: skip


# --- explanations ----------------------------------------------------------------------------


def test_explain_names_each_leaf_and_the_deciding_ones() -> None:
    journey = Journey.model_validate_json((EXAMPLES / "trial_to_paid.json").read_text())
    assert journey.goal is not None
    criteria = journey.goal.criteria
    pricing = EventLeaf(event="form_submitted", target="pricing")
    state = ContactState(
        properties={"lifecycle_stage": "lead"},
        lists=["newsletter"],
        event_counts={pricing.counter_key(): 1},
    )
    why = explain(criteria, state)
    assert why.result is True
    by_path = {x.path: x for x in why.leaves}
    assert list(by_path) == ["any[0]", "any[1]", "any[2].all[0]", "any[2].all[1]"]
    assert by_path["any[0]"].reason == "lifecycle_stage = 'lead' (expected eq 'customer')"
    assert by_path["any[0]"].result is False
    assert by_path["any[1]"].reason == "form_submitted/pricing seen 1 time(s), needs 1"
    assert by_path["any[1]"].result is True
    assert by_path["any[2].all[0]"].reason == "page_viewed seen 0 time(s), needs 5"
    assert by_path["any[2].all[1]"].reason == "in list 'newsletter' (expected member)"
    # an `any` that holds is explained by the leaves that hold
    assert why.summary == "Met: form_submitted/pricing seen 1 time(s), needs 1."


def test_explain_when_not_met_lists_what_failed() -> None:
    criteria = CRITERIA.validate_python(
        {"all": [{"property": "plan", "op": "eq", "value": "pro"}, {"list": "x"}]}
    )
    why = explain(criteria, ContactState(lists=["x"]))
    assert why.result is False
    assert why.summary == "Not met: plan is not set (expected eq 'pro')."


def test_explain_mentions_uncomparable_values() -> None:
    why = explain(leaf("seats", "gt", 5), props(seats="ten"))
    assert why.leaves[0].reason == "seats = 'ten' cannot be compared (expected gt 5)"
    assert why.leaves[0].path == ""


def test_explanation_round_trips_as_json() -> None:
    why = explain(NESTED, ContactState(lists=["b"]))
    again = type(why).model_validate_json(why.model_dump_json())
    assert again == why


# --- applying events -------------------------------------------------------------------------


def event(
    id: str, seq: int, type: str, target: str | None = None, **properties: Any
) -> ContactEvent:
    return ContactEvent(
        id=id,
        seq=seq,
        type=type,
        target=target,
        properties=properties,
        occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


def trial_to_paid() -> Journey:
    return Journey.model_validate_json((EXAMPLES / "trial_to_paid.json").read_text())


def test_apply_event_counts_only_what_the_goal_needs() -> None:
    journey = trial_to_paid()
    state = ContactState(event_seq=3)
    state = apply_event(state, event("e1", 4, "form_submitted", "pricing"), journey)
    state = apply_event(state, event("e2", 5, "form_submitted", "demo-request"), journey)
    state = apply_event(state, event("e3", 6, "email_opened"), journey)
    state = apply_event(state, event("e4", 7, "page_viewed", "/pricing"), journey)
    pricing = EventLeaf(event="form_submitted", target="pricing").counter_key()
    views = EventLeaf(event="page_viewed").counter_key()
    assert state.event_counts == {pricing: 1, views: 1}
    assert state.event_seq == 7
    assert state.seen_event_ids == ["e1", "e2", "e3", "e4"]


def test_apply_event_returns_a_new_state_and_ignores_a_seen_id() -> None:
    journey = trial_to_paid()
    before = ContactState()
    after = apply_event(before, event("e1", 1, "page_viewed"), journey)
    assert before.event_counts == {} and before.event_seq == 0
    again = apply_event(after, event("e1", 1, "page_viewed"), journey)
    assert again == after


def test_apply_event_never_moves_the_watermark_back() -> None:
    state = apply_event(ContactState(event_seq=10), event("e1", 4, "page_viewed"), trial_to_paid())
    assert state.event_seq == 10
    assert state.reflects(4) and state.reflects(10) and not state.reflects(11)


def test_apply_event_reaches_the_goal() -> None:
    journey = trial_to_paid()
    assert journey.goal is not None
    state = ContactState(lists=["newsletter"])
    for i in range(5):
        assert not evaluate(journey.goal.criteria, state)
        state = apply_event(state, event(f"v{i}", i + 1, "page_viewed"), journey)
    assert evaluate(journey.goal.criteria, state)


def test_apply_event_with_where_filters() -> None:
    journey = Journey.model_validate_json((EXAMPLES / "trial_to_paid.json").read_text())
    journey = journey.model_copy(
        update={
            "goal": journey.goal.model_copy(  # type: ignore[union-attr]
                update={
                    "criteria": CRITERIA.validate_python(
                        {"event": "purchase", "where": {"plan": "pro", "seats": 5}}
                    )
                }
            )
        }
    )
    state = ContactState()
    state = apply_event(state, event("a", 1, "purchase", plan="pro", seats="5"), journey)
    state = apply_event(state, event("b", 2, "purchase", plan="pro"), journey)
    state = apply_event(state, event("c", 3, "purchase", plan="basic", seats=5), journey)
    assert list(state.event_counts.values()) == [1]


def test_seen_event_ids_are_bounded() -> None:
    journey = trial_to_paid()
    state = ContactState()
    for i in range(SEEN_EVENT_IDS_LIMIT + 10):
        state = apply_event(state, event(f"e{i}", i + 1, "email_opened"), journey)
    assert len(state.seen_event_ids) == SEEN_EVENT_IDS_LIMIT
    assert state.seen_event_ids[-1] == f"e{SEEN_EVENT_IDS_LIMIT + 9}"


@pytest.mark.parametrize(
    ("event_filter", "evt", "result"),
    [
        ({"type": "purchase"}, event("1", 1, "purchase"), True),
        ({"type": "purchase"}, event("1", 1, "page_viewed"), False),
        ({"type": "form_submitted", "target": "d"}, event("1", 1, "form_submitted", "d"), True),
        ({"type": "form_submitted", "target": "demo"}, event("1", 1, "form_submitted", "x"), False),
        ({"type": "form_submitted", "target": "demo"}, event("1", 1, "form_submitted"), False),
        ({"type": "form_submitted"}, event("1", 1, "form_submitted", "any"), True),
        ({"type": "purchase", "where": {"total": 10}}, event("1", 1, "purchase", total="10"), True),
        ({"type": "purchase", "where": {"total": 10}}, event("1", 1, "purchase", total=11), False),
        ({"type": "purchase", "where": {"total": 10}}, event("1", 1, "purchase"), False),
        ({"type": "purchase", "where": {"c": None}}, event("1", 1, "purchase"), True),
        ({"type": "purchase", "where": {"c": None}}, event("1", 1, "purchase", c="X"), False),
    ],
)  # fmt: skip
def test_matches_event(event_filter: dict[str, Any], evt: ContactEvent, result: bool) -> None:
    assert matches_event(EventFilter.model_validate(event_filter), evt) is result


def test_contact_state_keeps_lists_as_a_sorted_set() -> None:
    state = ContactState(lists=["b", "a", "b"])
    assert state.lists == ["a", "b"]
    assert state.with_lists({"z", "y"}).lists == ["y", "z"]
