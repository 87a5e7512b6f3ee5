"""Criteria: the AND/OR trees that decide goals, and the one pure evaluator over a
`ContactState`.

Everything here is deterministic and does no I/O and reads no clock, so workflow code may
call it. Comparison rules (DECISIONS "Journey definitions"):

- a missing property, or one set to null, fails every comparison except `neq` and
  `is_unset`;
- a number against a number or a numeric string compares numerically ("10" gt 9);
- two strings: ordering operators compare numerically when both are numbers, as instants
  when both are ISO-8601 dates/datetimes (a date is midnight UTC, a naive time is UTC),
  otherwise lexicographically; `eq`/`in` compare the strings exactly, or as instants when
  both are ISO dates ("2024-05-01T00:00:00Z" eq "2024-05-01");
- booleans equal only booleans; any other type mismatch makes the comparison false;
- `neq` is exactly `not eq`; `contains` is a substring test on strings and a membership
  test (with `eq` rules) on lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.contact import SEEN_EVENT_IDS_LIMIT, ContactEvent, ContactState

if TYPE_CHECKING:
    from shared.journey import Journey

PropertyOp = Literal["eq", "neq", "in", "gt", "gte", "lt", "lte", "contains", "is_set", "is_unset"]
ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})
PRESENCE_OPS = frozenset({"is_set", "is_unset"})


def _only_scalars(where: dict[str, Any]) -> dict[str, Any]:
    for key, value in where.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise PydanticCustomError(
                "invalid_where",
                "Event filter where.{key} must be a string, number, boolean or null, not {kind}.",
                {"key": key, "kind": type(value).__name__},
            )
    return where


#: `where`: event property equality filters; values are JSON scalars.
Where = Annotated[
    dict[str, Any],
    AfterValidator(_only_scalars),
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }
    ),
]


class DefinitionModel(BaseModel):
    """Base of every journey-definition model: unknown fields are rejected, and a dump
    leaves out optional fields that are unset (null), so stored definitions read like
    the JSON a user wrote. Absent and null validate the same, so round trips are equal."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler):
        # no return annotation: pydantic then keeps the model's own serialization schema
        data = handler(self)
        if isinstance(data, dict):
            for name, field in type(self).model_fields.items():
                if field.default is None and name in data and data[name] is None:
                    del data[name]
        return data


class PropertyLeaf(DefinitionModel):
    """`{"property": "lifecycle_stage", "op": "eq", "value": "customer"}`."""

    property: str = Field(min_length=1)
    op: PropertyOp
    value: Any = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:  # the op itself is invalid and already reported
            return value
        if op in PRESENCE_OPS:
            if value is not None:
                raise PydanticCustomError(
                    "unexpected_value", "Operator {op} takes no value; remove it.", {"op": op}
                )
        elif value is None:
            raise PydanticCustomError(
                "missing_value",
                "Operator {op} needs a value (to test for a missing property use is_unset).",
                {"op": op},
            )
        elif op == "in" and not isinstance(value, list):
            raise PydanticCustomError(
                "invalid_value", "Operator in needs a list of values.", {"op": op}
            )
        elif op in ORDERING_OPS and (
            isinstance(value, bool) or not isinstance(value, int | float | str)
        ):
            raise PydanticCustomError(
                "invalid_value",
                "Operator {op} compares with a number, date or string.",
                {"op": op},
            )
        return value


MatchTrigger = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)]
"""Properties an event must share with the event that started the entry (a journey with an
event trigger); bound to `where` equalities when the entry starts (`shared.trigger_context`)."""


ENGAGEMENTS = ("opened", "clicked")


def engagement_as_event(data: Any, type_key: str) -> Any:
    """`{"engagement": "opened" | "clicked", "in_journey"?: true, "human_only"?: false,
    "min_count"?: 1}` is sugar for the event it counts (docs/journeys.md, "Engagement"):
    the journey's own emails opened or clicked, each message once (`first`, or a person's
    first with `human_only`)."""
    if not isinstance(data, Mapping) or "engagement" not in data:
        return data
    found = dict(data)
    kind = found.pop("engagement")
    if kind not in ENGAGEMENTS:
        raise PydanticCustomError(
            "invalid_engagement",
            'An engagement is "opened" or "clicked", got {kind}.',
            {"kind": repr(kind)},
        )
    human = found.pop("human_only", False)
    where = {"machine": False, "repeat": False} if human is True else {"first": True}
    found.setdefault("in_journey", True)
    return {type_key: f"email_{kind}", "where": where, **found}


def _unbound(where: Mapping[str, Any] | None, match_trigger: Any, in_journey: bool | None) -> bool:
    """A leaf or filter not yet bound to its entry (`shared.trigger_context.bind`)."""
    return bool(match_trigger) or (bool(in_journey) and "journey_id" not in (where or {}))


class EventFilter(DefinitionModel):
    """Which events a `wait_for_event` waits for: `{"type", "target"?, "where"?,
    "match_trigger"?, "in_journey"?}` (or an `engagement` shorthand)."""

    type: str = Field(min_length=1)
    target: str | None = None
    where: Where | None = None
    match_trigger: MatchTrigger | None = None
    in_journey: bool | None = None
    """Only events about this journey's own emails (`properties.journey_id`)."""

    @model_validator(mode="before")
    @classmethod
    def _engagement(cls, data: Any) -> Any:
        return engagement_as_event(data, "type")

    def matches(self, event: ContactEvent) -> bool:
        if _unbound(self.where, self.match_trigger, self.in_journey):
            return False
        return _event_matches(self.type, self.target, self.where, event)

    def describe(self) -> str:
        return _describe_event(self.type, self.target, self.where)


class EventLeaf(DefinitionModel):
    """`{"event": "form_submitted", "target": "pricing", "where": {...}, "min_count": 1}`."""

    event: str = Field(min_length=1)
    target: str | None = None
    where: Where | None = None
    match_trigger: MatchTrigger | None = None
    in_journey: bool | None = None
    """Only events about this journey's own emails (`properties.journey_id`)."""
    min_count: int = Field(default=1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _engagement(cls, data: Any) -> Any:
        return engagement_as_event(data, "event")

    def counter_key(self) -> str:
        """The key of this leaf's counter in `ContactState.event_counts`: the same for
        every leaf that counts the same events, whatever its `min_count`."""
        where = sorted((self.where or {}).items())
        key: list[Any] = [self.event, self.target, where]
        if self.match_trigger:
            key.append(sorted(self.match_trigger))
        if self.in_journey and "journey_id" not in (self.where or {}):
            key.append("in_journey")
        return json.dumps(key, separators=(",", ":"))

    def matches(self, event: ContactEvent) -> bool:
        if _unbound(self.where, self.match_trigger, self.in_journey):
            return False
        return _event_matches(self.event, self.target, self.where, event)

    def describe(self) -> str:
        return _describe_event(self.event, self.target, self.where)


class ListLeaf(DefinitionModel):
    """`{"list": "newsletter", "member": true}`."""

    list: str = Field(min_length=1)
    member: bool = True


class AllNode(DefinitionModel):
    """True when every child is: `{"all": [...]}` (at least one child)."""

    all: list[Criteria] = Field(min_length=1)


class AnyNode(DefinitionModel):
    """True when some child is: `{"any": [...]}` (at least one child)."""

    any: list[Criteria] = Field(min_length=1)


_KINDS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("property", PropertyLeaf),
    ("event", EventLeaf),
    ("list", ListLeaf),
    ("all", AllNode),
    ("any", AnyNode),
)


def _criteria_kind(node: Any) -> str | None:
    """Criteria have no `type` on the wire: the key that is present says the kind."""
    if isinstance(node, Mapping) and "engagement" in node:
        return "event"
    if isinstance(node, Mapping):
        return next((kind for kind, _ in _KINDS if kind in node), None)
    return next((kind for kind, model in _KINDS if isinstance(node, model)), None)


CRITERIA_KIND_ERROR = "A criteria node needs one of the keys property, event, list, all or any."

Criteria = Annotated[
    Annotated[PropertyLeaf, Tag("property")]
    | Annotated[EventLeaf, Tag("event")]
    | Annotated[ListLeaf, Tag("list")]
    | Annotated[AllNode, Tag("all")]
    | Annotated[AnyNode, Tag("any")],
    Discriminator(
        _criteria_kind,
        custom_error_type="invalid_criteria",
        custom_error_message=CRITERIA_KIND_ERROR,
    ),
]
Leaf = Annotated[
    Annotated[PropertyLeaf, Tag("property")]
    | Annotated[EventLeaf, Tag("event")]
    | Annotated[ListLeaf, Tag("list")],
    Discriminator(_criteria_kind),
]
#: Tags pydantic puts into error locations of a criteria union (validation strips them).
CRITERIA_TAGS = frozenset(kind for kind, _ in _KINDS)

AllNode.model_rebuild()
AnyNode.model_rebuild()


def iter_leaves(criteria: Criteria) -> Iterator[PropertyLeaf | EventLeaf | ListLeaf]:
    """Every leaf of a tree, depth first, in definition order."""
    for _, leaf in _walk_leaves(criteria, ""):
        yield leaf


def _walk_leaves(
    criteria: Criteria, path: str
) -> Iterator[tuple[str, PropertyLeaf | EventLeaf | ListLeaf]]:
    if isinstance(criteria, AllNode | AnyNode):
        key = "all" if isinstance(criteria, AllNode) else "any"
        children = criteria.all if isinstance(criteria, AllNode) else criteria.any
        for i, child in enumerate(children):
            yield from _walk_leaves(child, f"{path}.{key}[{i}]" if path else f"{key}[{i}]")
    else:
        yield path, criteria


# --- evaluation ---------------------------------------------------------------------------


def evaluate(criteria: Criteria, state: ContactState) -> bool:
    """Whether the contact meets the criteria. Pure; never raises on contact data."""
    if isinstance(criteria, AllNode):
        return all(evaluate(child, state) for child in criteria.all)
    if isinstance(criteria, AnyNode):
        return any(evaluate(child, state) for child in criteria.any)
    return _leaf_outcome(criteria, state)[0]


class LeafExplanation(BaseModel):
    """One leaf of an explained tree: where it sits, what it said, and why."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description='Position in the tree, e.g. "any[2].all[0]"; "" for a root leaf.')
    leaf: Leaf
    result: bool
    reason: str


class Explanation(BaseModel):
    """Why a tree is true or false: for exit reasons, refusals and the enrollment log."""

    model_config = ConfigDict(extra="forbid")

    result: bool
    summary: str
    leaves: list[LeafExplanation]


def explain(criteria: Criteria, state: ContactState) -> Explanation:
    """`evaluate`, with every leaf's result and reason and a sentence naming the leaves
    that decided the outcome."""
    outcomes: dict[str, LeafExplanation] = {}
    for path, leaf in _walk_leaves(criteria, ""):
        result, reason = _leaf_outcome(leaf, state)
        outcomes[path] = LeafExplanation(path=path, leaf=leaf, result=result, reason=reason)
    result = evaluate(criteria, state)
    deciding = [outcomes[p].reason for p in _deciding_paths(criteria, "", result, outcomes)]
    summary = f"{'Met' if result else 'Not met'}: {'; '.join(deciding)}."
    return Explanation(result=result, summary=summary, leaves=list(outcomes.values()))


def _deciding_paths(
    criteria: Criteria, path: str, result: bool, outcomes: dict[str, LeafExplanation]
) -> list[str]:
    """The leaves that make a node come out as `result`: for a true `any` or a false `all`
    only the children agreeing with the result; otherwise all of them."""
    if not isinstance(criteria, AllNode | AnyNode):
        return [path]
    key = "all" if isinstance(criteria, AllNode) else "any"
    children = criteria.all if isinstance(criteria, AllNode) else criteria.any
    short_circuit = (key == "any") == result
    paths: list[str] = []
    for i, child in enumerate(children):
        child_path = f"{path}.{key}[{i}]" if path else f"{key}[{i}]"
        child_result = _node_result(child, child_path, outcomes)
        if short_circuit and child_result != result:
            continue
        paths.extend(_deciding_paths(child, child_path, child_result, outcomes))
    return paths


def _node_result(criteria: Criteria, path: str, outcomes: dict[str, LeafExplanation]) -> bool:
    if isinstance(criteria, AllNode):
        return all(
            _node_result(c, f"{path}.all[{i}]", outcomes) for i, c in enumerate(criteria.all)
        )
    if isinstance(criteria, AnyNode):
        return any(
            _node_result(c, f"{path}.any[{i}]", outcomes) for i, c in enumerate(criteria.any)
        )
    return outcomes[path].result


def _leaf_outcome(
    leaf: PropertyLeaf | EventLeaf | ListLeaf, state: ContactState
) -> tuple[bool, str]:
    if isinstance(leaf, PropertyLeaf):
        return _property_outcome(leaf, state.properties)
    if isinstance(leaf, EventLeaf):
        seen = state.event_counts.get(leaf.counter_key(), 0)
        return (
            seen >= leaf.min_count,
            f"{leaf.describe()} seen {seen} time(s), needs {leaf.min_count}",
        )
    member = leaf.list in state.lists
    expected = "expected member" if leaf.member else "expected not a member"
    where = "in" if member else "not in"
    return member == leaf.member, f"{where} list {leaf.list!r} ({expected})"


def _property_outcome(leaf: PropertyLeaf, properties: Mapping[str, Any]) -> tuple[bool, str]:
    name, op, expected = leaf.property, leaf.op, leaf.value
    wanted = op if op in PRESENCE_OPS else f"{op} {_show(expected)}"
    actual = properties.get(name)
    if actual is None:
        return op in ("neq", "is_unset"), f"{name} is not set (expected {wanted})"
    result = _compare(op, actual, expected)
    if result is None:
        return False, f"{name} = {_show(actual)} cannot be compared (expected {wanted})"
    return result, f"{name} = {_show(actual)} (expected {wanted})"


def _compare(op: str, actual: Any, expected: Any) -> bool | None:
    """The operator applied to a present value; None when the types cannot be compared."""
    if op == "is_set":
        return True
    if op == "is_unset":
        return False
    if op == "eq":
        return _equal(actual, expected)
    if op == "neq":
        return not _equal(actual, expected)
    if op == "in":
        return isinstance(expected, list) and any(_equal(actual, v) for v in expected)
    if op == "contains":
        if isinstance(actual, str):
            return expected in actual if isinstance(expected, str) else None
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        return None
    order = _order(actual, expected)
    if order is None:
        return None
    return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[op]


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is bool and type(expected) is bool and actual == expected
    if _is_number(actual) or _is_number(expected):
        a, b = _number(actual), _number(expected)
        return a is not None and b is not None and a == b
    if isinstance(actual, str) and isinstance(expected, str):
        if actual == expected:
            return True
        ta, tb = _instant(actual), _instant(expected)
        return ta is not None and tb is not None and ta == tb
    if isinstance(actual, date) or isinstance(expected, date):
        ta, tb = _instant(actual), _instant(expected)
        return ta is not None and tb is not None and ta == tb
    return bool(actual == expected)


def _order(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 comparing actual with expected; None when they are not comparable."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return None
    if _is_number(actual) or _is_number(expected):
        return _sign(_number(actual), _number(expected))
    if isinstance(actual, str) and isinstance(expected, str):
        na, nb = _number(actual), _number(expected)
        if na is not None and nb is not None:
            return _sign(na, nb)
        ta, tb = _instant(actual), _instant(expected)
        if ta is not None and tb is not None:
            return _sign(ta, tb)
        return _sign(actual, expected)
    if isinstance(actual, date) or isinstance(expected, date):
        return _sign(_instant(actual), _instant(expected))
    return None


def _sign(a: Any, b: Any) -> int | None:
    if a is None or b is None:
        return None
    if a < b:
        return -1
    if a > b:
        return 1
    return 0 if a == b else None  # NaN is not comparable


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_INTEGER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(value: Any) -> int | float | None:
    if _is_number(value):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            return float(text)
    return None


_ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def _instant(value: Any) -> datetime | None:
    """An aware datetime for an ISO-8601 date or datetime (naive means UTC)."""
    if isinstance(value, str):
        if not _ISO_DATE_START.match(value):
            return None
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


# --- events -------------------------------------------------------------------------------


def _event_matches(
    type_: str, target: str | None, where: Mapping[str, Any] | None, event: ContactEvent
) -> bool:
    """Same type; same target when one is given; every `where` property equal (`eq` rules;
    a null in `where` matches a missing or null property)."""
    if event.type != type_ or (target is not None and event.target != target):
        return False
    for key, expected in (where or {}).items():
        actual = event.properties.get(key)
        if expected is None:
            if actual is not None:
                return False
        elif actual is None or not _equal(actual, expected):
            return False
    return True


def _describe_event(type_: str, target: str | None, where: Mapping[str, Any] | None) -> str:
    text = f"{type_}/{target}" if target is not None else type_
    if where:
        text += f" where {json.dumps(dict(sorted(where.items())), default=str)}"
    return text


def matches_event(event_filter: EventFilter, event: ContactEvent) -> bool:
    """Whether a `wait_for_event` filter accepts this event."""
    return event_filter.matches(event)


def apply_event(state: ContactState, event: ContactEvent, journey: Journey) -> ContactState:
    """A new state with the event counted in every counter the journey's goal criteria
    need, the watermark advanced and the event id remembered.

    An event whose id the state has seen is ignored (the state is returned unchanged).
    The watermark check (`state.reflects(event.seq)`) is left to the caller: a snapshot
    loader applies events older than the contact's own change sequence.
    """
    if event.id in state.seen_event_ids:
        return state
    counts = dict(state.event_counts)
    for leaf in journey.counted_event_leaves():
        if leaf.matches(event):
            key = leaf.counter_key()
            counts[key] = counts.get(key, 0) + 1
    seen = [*state.seen_event_ids, event.id][-SEEN_EVENT_IDS_LIMIT:]
    return state.model_copy(
        update={
            "event_counts": counts,
            "event_seq": max(state.event_seq, event.seq),
            "seen_event_ids": seen,
        }
    )
