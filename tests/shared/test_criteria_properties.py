"""Property tests: `all`/`any` obey their laws, negation works where the leaves can be
negated, comparisons are symmetric, nothing a contact holds makes the evaluator raise,
and evaluation is unchanged by a JSON round trip of the criteria or the journey."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from shared.contact import ContactState
from shared.criteria import (
    AllNode,
    AnyNode,
    Criteria,
    EventLeaf,
    ListLeaf,
    PropertyLeaf,
    evaluate,
    explain,
    iter_leaves,
)
from shared.journey import Journey

CRITERIA: TypeAdapter[Criteria] = TypeAdapter(Criteria)
EXAMPLE = Path(__file__).parents[2] / "examples" / "trial_to_paid.json"

NAMES = ["plan", "seats", "signed_up", "tags"]
LISTS = ["newsletter", "customers", "vip"]
EVENTS = [
    EventLeaf(event="page_viewed"),
    EventLeaf(event="form_submitted", target="pricing"),
    EventLeaf(event="purchase", where={"plan": "pro"}),
]

words = st.sampled_from(["pro", "basic", "Pro", "", "10", "9.5", "abc", "2024-05-01",
                         "2024-05-01T10:00:00Z", "2023-12-31T23:00:00+01:00"])  # fmt: skip
numbers = st.one_of(st.integers(-20, 20), st.floats(-20, 20, allow_nan=False))
scalars = st.one_of(words, numbers, st.booleans())
values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=3))

states = st.builds(
    ContactState,
    properties=st.dictionaries(st.sampled_from(NAMES), values, max_size=len(NAMES)),
    lists=st.lists(st.sampled_from(LISTS), unique=True),
    event_counts=st.fixed_dictionaries({leaf.counter_key(): st.integers(0, 4) for leaf in EVENTS}),
)


@st.composite
def property_leaves(draw: st.DrawFn, ops: list[str] | None = None) -> PropertyLeaf:
    op = draw(st.sampled_from(ops or ["eq", "neq", "in", "gt", "gte", "lt", "lte",
                                      "contains", "is_set", "is_unset"]))  # fmt: skip
    name = draw(st.sampled_from(NAMES))
    if op in ("is_set", "is_unset"):
        return PropertyLeaf(property=name, op=op)
    if op == "in":
        value: Any = draw(st.lists(scalars, min_size=1, max_size=3))
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.one_of(words, numbers))
    else:
        value = draw(scalars)
    return PropertyLeaf(property=name, op=op, value=value)


list_leaves = st.builds(ListLeaf, list=st.sampled_from(LISTS), member=st.booleans())
event_leaves = st.builds(
    lambda leaf, n: leaf.model_copy(update={"min_count": n}),
    st.sampled_from(EVENTS),
    st.integers(1, 3),
)
leaves = st.one_of(property_leaves(), list_leaves, event_leaves)


def groups(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    kids = st.lists(children, min_size=1, max_size=4)
    return st.one_of(st.builds(AllNode, all=kids), st.builds(AnyNode, any=kids))


trees: st.SearchStrategy[Criteria] = st.recursive(leaves, groups, max_leaves=12)

# leaves that have an exact negation, and trees built from them
negatable_leaves = st.one_of(property_leaves(["eq", "neq", "is_set", "is_unset"]), list_leaves)
negatable_trees: st.SearchStrategy[Criteria] = st.recursive(negatable_leaves, groups, max_leaves=10)

_OPPOSITE = {"eq": "neq", "neq": "eq", "is_set": "is_unset", "is_unset": "is_set"}


def negate(node: Criteria) -> Criteria:
    if isinstance(node, AllNode):
        return AnyNode(any=[negate(c) for c in node.all])
    if isinstance(node, AnyNode):
        return AllNode(all=[negate(c) for c in node.any])
    if isinstance(node, ListLeaf):
        return ListLeaf(list=node.list, member=not node.member)
    assert isinstance(node, PropertyLeaf)
    return node.model_copy(update={"op": _OPPOSITE[node.op]})


# --- laws of all/any -----------------------------------------------------------------------


@given(trees, states)
def test_singleton_groups_are_their_child(x: Criteria, state: ContactState) -> None:
    assert evaluate(AllNode(all=[x]), state) == evaluate(x, state)
    assert evaluate(AnyNode(any=[x]), state) == evaluate(x, state)


@given(st.lists(trees, min_size=1, max_size=5), states)
def test_groups_fold_their_children(xs: list[Criteria], state: ContactState) -> None:
    results = [evaluate(x, state) for x in xs]
    assert evaluate(AllNode(all=xs), state) == all(results)
    assert evaluate(AnyNode(any=xs), state) == any(results)


@given(st.lists(trees, min_size=1, max_size=5), st.randoms(use_true_random=False), states)
def test_groups_are_commutative(xs: list[Criteria], rnd: Any, state: ContactState) -> None:
    shuffled = list(xs)
    rnd.shuffle(shuffled)
    assert evaluate(AllNode(all=xs), state) == evaluate(AllNode(all=shuffled), state)
    assert evaluate(AnyNode(any=xs), state) == evaluate(AnyNode(any=shuffled), state)


@given(trees, trees, trees, states)
def test_groups_are_associative(x: Criteria, y: Criteria, z: Criteria, s: ContactState) -> None:
    nested_all = AllNode(all=[x, AllNode(all=[y, z])])
    assert evaluate(nested_all, s) == evaluate(AllNode(all=[x, y, z]), s)
    nested_any = AnyNode(any=[AnyNode(any=[x, y]), z])
    assert evaluate(nested_any, s) == evaluate(AnyNode(any=[x, y, z]), s)


@given(trees, trees, states)
def test_idempotence_and_absorption(x: Criteria, y: Criteria, s: ContactState) -> None:
    assert evaluate(AllNode(all=[x, x]), s) == evaluate(x, s)
    assert evaluate(AnyNode(any=[x, x]), s) == evaluate(x, s)
    assert evaluate(AnyNode(any=[x, AllNode(all=[x, y])]), s) == evaluate(x, s)
    assert evaluate(AllNode(all=[x, AnyNode(any=[x, y])]), s) == evaluate(x, s)


@given(negatable_trees, states)
def test_de_morgan(x: Criteria, state: ContactState) -> None:
    """any(xs) == not all(not x for x in xs), with negation pushed to the leaves."""
    assert evaluate(negate(x), state) == (not evaluate(x, state))


@given(negatable_trees, negatable_trees, states)
def test_any_is_not_all_of_negations(x: Criteria, y: Criteria, state: ContactState) -> None:
    any_xy = AnyNode(any=[x, y])
    not_all_of_nots = AllNode(all=[negate(x), negate(y)])
    assert evaluate(any_xy, state) == (not evaluate(not_all_of_nots, state))


# --- explanation agrees with evaluation ------------------------------------------------------


@given(trees, states)
def test_explain_agrees_with_evaluate(x: Criteria, state: ContactState) -> None:
    why = explain(x, state)
    assert why.result == evaluate(x, state)
    assert [e.leaf for e in why.leaves] == list(iter_leaves(x))
    for entry in why.leaves:
        assert entry.result == evaluate(entry.leaf, state)
    assert why.summary.startswith("Met: " if why.result else "Not met: ")


# --- comparisons -----------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values, property_leaves())
def test_evaluation_never_raises_on_contact_data(actual: Any, leaf: PropertyLeaf) -> None:
    state = ContactState(properties={leaf.property: actual})
    assert evaluate(leaf, state) in (True, False)
    assert explain(leaf, state).leaves[0].reason


@given(st.one_of(st.none(), json_values), scalars)
def test_neq_is_exactly_not_eq(actual: Any, expected: Any) -> None:
    state = ContactState(properties={"p": actual})
    eq = PropertyLeaf(property="p", op="eq", value=expected)
    neq = PropertyLeaf(property="p", op="neq", value=expected)
    assert evaluate(neq, state) == (not evaluate(eq, state))


comparable = st.one_of(words, numbers)


@given(comparable, comparable)
def test_ordering_is_symmetric(a: Any, b: Any) -> None:
    def holds(actual: Any, op: str, value: Any) -> bool:
        leaf = PropertyLeaf(property="p", op=op, value=value)
        return evaluate(leaf, ContactState(properties={"p": actual}))

    assert holds(a, "gt", b) == holds(b, "lt", a)
    assert holds(a, "gte", b) == holds(b, "lte", a)
    assert not (holds(a, "gt", b) and holds(a, "lt", b))


@given(numbers, numbers)
def test_numbers_are_totally_ordered(a: float, b: float) -> None:
    def holds(op: str, actual: Any = a, value: Any = b) -> bool:
        leaf = PropertyLeaf(property="p", op=op, value=value)
        return evaluate(leaf, ContactState(properties={"p": actual}))

    assert [holds("lt"), holds("eq"), holds("gt")].count(True) == 1
    assert holds("gte") == (holds("gt") or holds("eq"))
    # a number written as a string compares the same way
    assert holds("lt", str(a)) == holds("lt") and holds("gt", a, str(b)) == holds("gt")


# --- JSON round trips -------------------------------------------------------------------------


@given(trees, states)
def test_criteria_json_round_trip(x: Criteria, state: ContactState) -> None:
    again = CRITERIA.validate_json(CRITERIA.dump_json(x))
    assert again == x
    assert evaluate(again, state) == evaluate(x, state)
    as_python = CRITERIA.validate_python(json.loads(CRITERIA.dump_json(x)))
    assert evaluate(as_python, state) == evaluate(x, state)


@settings(max_examples=50)
@given(trees, states)
def test_journey_json_round_trip_keeps_the_goal(x: Criteria, state: ContactState) -> None:
    raw = json.loads(EXAMPLE.read_text())
    raw["goal"]["criteria"] = json.loads(CRITERIA.dump_json(x))
    journey = Journey.model_validate(raw)
    again = Journey.model_validate_json(journey.model_dump_json())
    assert again == journey
    assert again.goal is not None and journey.goal is not None
    assert evaluate(again.goal.criteria, state) == evaluate(journey.goal.criteria, state)
    state_again = ContactState.model_validate_json(state.model_dump_json())
    assert evaluate(again.goal.criteria, state_again) == evaluate(x, state)
