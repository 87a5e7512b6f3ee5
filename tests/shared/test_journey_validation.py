"""Journey models and validation: the examples, JSON round trips, the workflow helpers,
one case per reason code, and ten malformed journeys that name the right path."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from shared.contact import ContactState
from shared.criteria import PropertyLeaf
from shared.journey import (
    GoTo,
    GoToTarget,
    Journey,
    SendMessage,
    Wait,
    WaitForEvent,
    resolve_target,
)
from shared.validation import (
    MAX_ATTRIBUTION_WINDOW,
    MAX_CRITERIA_DEPTH,
    MAX_WAIT,
    PROBLEM_REASONS,
    WARNING_REASONS,
    Problem,
    format_path,
    validate_journey,
)

EXAMPLES = Path(__file__).parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


# --- the examples --------------------------------------------------------------------------


def test_there_are_four_examples() -> None:
    assert [p.name for p in EXAMPLE_FILES] == [
        "abandoned_cart.json",
        "trial_to_paid.json",
        "webinar_follow_up.json",
        "welcome_test.json",
    ]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_examples_validate_without_problems_or_warnings(path: Path) -> None:
    result = validate_journey(json.loads(path.read_text()))
    assert result.problems == []
    assert result.warnings == []
    assert result.valid and result.journey is not None


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_json_round_trip_gives_an_equal_model(path: Path) -> None:
    journey = Journey.model_validate_json(path.read_text())
    dumped = journey.model_dump(mode="json")
    assert Journey.model_validate(json.loads(json.dumps(dumped))) == journey
    assert Journey.model_validate_json(journey.model_dump_json()) == journey


def test_dump_reads_like_the_design_example() -> None:
    """Durations come back as ISO-8601 and unset optional fields are left out, so the
    stored definition is the JSON the user sent."""
    raw = load("trial_to_paid.json")
    dumped = Journey.model_validate(raw).model_dump(mode="json")
    assert dumped == raw


def test_journey_survives_the_temporal_data_converter() -> None:
    journey = Journey.model_validate(load("webinar_follow_up.json"))
    converter = pydantic_data_converter.payload_converter
    payload = converter.to_payloads([journey])
    assert converter.from_payloads(payload, [Journey]) == [journey]


def test_durations_are_timedeltas() -> None:
    journey = Journey.model_validate(load("trial_to_paid.json"))
    wait = journey.stages[0].actions[1]
    assert isinstance(wait, Wait) and wait.duration == timedelta(days=2)
    assert journey.goal is not None
    assert journey.goal.attribution_window == timedelta(days=3)
    del_window = load("trial_to_paid.json")
    del del_window["goal"]["attribution_window"]
    goal = Journey.model_validate(del_window).goal
    assert goal is not None and goal.attribution_window == timedelta(days=3)


def test_schema_is_served_with_every_action_type() -> None:
    schema = Journey.model_json_schema()
    assert {"SendMessage", "Wait", "WaitForEvent", "CreateTask", "SetProperty"} <= set(
        schema["$defs"]
    )
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Wait"]["properties"]["duration"]["format"] == "duration"
    # dumps leave unset optionals out, but the serialization schema is still the model's
    dumped = Journey.model_json_schema(mode="serialization")
    assert dumped["$defs"]["Wait"]["required"] == ["duration"]


def test_dump_keeps_a_null_the_user_set() -> None:
    """`set_property` to null removes a property: that null is data, not an unset field."""
    raw = mutated(T, (f"{A2}[1].value", None))
    dumped = Journey.model_validate(raw).model_dump(mode="json")
    assert dumped["stages"][2]["actions"][1] == {
        "type": "set_property",
        "property": "lead_status",
        "value": None,
    }


# --- helpers the workflow uses ----------------------------------------------------------------


def test_stage_and_end_lookups() -> None:
    journey = Journey.model_validate(load("trial_to_paid.json"))
    assert journey.stage_by_key("nudge").value == "nudge"
    with pytest.raises(KeyError):
        journey.stage_by_key("nope")
    assert journey.stage_by_value("engaged") is journey.stages[2]
    assert journey.stage_by_value("customer") is None
    assert journey.end_for_value("customer") == ("success", journey.ends.success)
    assert journey.end_for_value("churned") == ("failure", journey.ends.failure[0])
    assert journey.end_for_value("engaged") is None


def test_resolve_target() -> None:
    assert resolve_target("nudge") == GoToTarget(kind="stage", stage_key="nudge")
    assert resolve_target("success") == GoToTarget(kind="success")
    assert resolve_target("failure:churned") == GoToTarget(kind="failure", end_value="churned")
    journey = Journey.model_validate(load("trial_to_paid.json"))
    assert journey.target_exists("failure:churned")
    assert not journey.target_exists("failure:lost")
    assert not journey.target_exists("lost")


def test_interest_set() -> None:
    journey = Journey.model_validate(load("trial_to_paid.json"))
    assert journey.event_types() == {"form_submitted", "page_viewed"}
    assert journey.referenced_properties() == {"journey_stage", "lifecycle_stage"}
    assert journey.referenced_lists() == {"trial-users", "competitors", "employees", "newsletter"}
    cart = Journey.model_validate(load("abandoned_cart.json"))
    assert cart.event_types() == {"purchase"}
    assert [leaf.event for leaf in cart.counted_event_leaves()] == ["purchase"]


def test_journey_without_goal() -> None:
    raw = load("trial_to_paid.json")
    del raw["goal"]
    result = validate_journey(raw)
    assert result.valid and result.journey is not None
    assert result.journey.goal_criteria is None
    assert result.journey.attribution_window == timedelta(0)
    assert result.journey.counted_event_leaves() == []
    assert result.journey.event_types() == {"form_submitted"}


def test_goal_target_count_or_percent() -> None:
    assert Journey.model_validate(load("webinar_follow_up.json")).goal.target.count == 50  # type: ignore[union-attr]
    target = Journey.model_validate(load("trial_to_paid.json")).goal.target  # type: ignore[union-attr]
    assert target is not None and target.percent == 20 and target.count is None


def test_format_path() -> None:
    assert format_path(["stages", 0, "actions", 2, "duration"]) == "stages[0].actions[2].duration"
    assert format_path([]) == ""
    assert format_path(["event", "where", "a b"]) == "event.where['a b']"


# --- one case per reason -----------------------------------------------------------------------

DELETE = object()


def mutated(name: str, *edits: tuple[str, Any]) -> dict[str, Any]:
    """The example with edits applied; an edit is (path, value): `a.b[0].c` sets, a path
    ending in `[+]` appends, and the value DELETE removes."""
    raw = copy.deepcopy(load(name))
    for path, value in edits:
        node: Any = raw
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        last = parts[-1]
        if last == "[+]":
            node.append(value)
        elif last.startswith("["):
            if value is DELETE:
                del node[int(last[1:-1])]
            else:
                node[int(last[1:-1])] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
    return raw


T = "trial_to_paid.json"
A0 = "stages[0].actions"  # onboarding: send_message, wait, wait_for_event
A2 = "stages[2].actions"  # engaged: create_task, set_property, send_notification, wait, go_to
W = "welcome_test.json"
S = "stages[0].actions[0]"  # the welcome split: A, B, holdout control
B = "stages[3].actions[1]"  # the by-plan branch: enterprise, engaged, otherwise


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"property": "plan", "op": "eq", "value": "paid"}
    for _ in range(levels):
        node = {"any": [node]}
    return node


PROBLEM_CASES: list[tuple[str, dict[str, Any], str]] = [
    # (reason, journey, the path of the problem)
    (
        "too_many_paths",
        mutated(W, (f"{B}.paths", [{"name": f"p{i}", "when": {"list": "x"}} for i in range(21)])),
        f"{B}.paths",
    ),
    (
        "too_few_variants",
        mutated(W, (f"{S}.variants", [{"name": "A", "percent": 100}])),
        f"{S}.variants",
    ),
    ("duplicate_path_name", mutated(W, (f"{S}.variants[1].name", "A")), f"{S}.variants[1].name"),
    ("reserved_path_name", mutated(W, (f"{B}.paths[1].name", "otherwise")), f"{B}.paths[1].name"),
    ("duplicate_decision_name", mutated(W, (f"{B}.name", "welcome subject")), f"{B}.name"),
    ("split_percent_sum", mutated(W, (f"{S}.variants[0].percent", 50)), f"{S}.variants"),
    (
        "more_than_one_holdout",
        mutated(W, (f"{S}.variants[1]", {"name": "B", "percent": 45, "holdout": True})),
        f"{S}.variants[2].holdout",
    ),
    (
        "holdout_with_go_to",
        mutated(W, (f"{S}.variants[2].go_to", "nudge")),
        f"{S}.variants[2].go_to",
    ),
    ("winner_without_goal", mutated(W, ("goal", DELETE)), f"{S}.winner"),
    (
        "invalid_trigger",
        mutated("abandoned_cart.json", ("trigger.goal_achieved_in", "jrn_other")),
        "trigger",
    ),
    (
        "match_trigger_without_event_trigger",
        mutated(T, ("goal.criteria.any[1].match_trigger", ["cart_id"])),
        "goal.criteria.any[1].match_trigger",
    ),
    ("invalid_reentry", mutated(T, ("reentry", {"max_entries": 3})), "reentry"),
    (
        "invalid_engagement",
        mutated(T, ("goal.criteria.any[1]", {"engagement": "forwarded"})),
        "goal.criteria.any[1]",
    ),
    ("missing_field", mutated(T, ("owner", DELETE)), "owner"),
    ("missing_field", mutated(T, (f"{A0}[1]", {"duration": "P1D"})), f"{A0}[1].type"),
    ("unknown_field", mutated(T, (f"{A0}[0].marketting", True)), f"{A0}[0].marketting"),
    ("invalid_type", mutated(T, ("stages", {"key": "x"})), "stages"),
    ("invalid_value", mutated(T, (f"{A0}[0].channels[0]", "fax")), f"{A0}[0].channels[0]"),
    ("empty_value", mutated(T, ("name", "")), "name"),
    ("invalid_duration", mutated(T, (f"{A0}[1].duration", "2 days")), f"{A0}[1].duration"),
    ("invalid_duration", mutated(T, (f"{A0}[1].duration", 3600)), f"{A0}[1].duration"),
    ("no_stages", mutated(T, ("stages", [])), "stages"),
    ("no_actions", mutated(T, ("stages[1].actions", [])), "stages[1].actions"),
    (
        "too_many_actions",
        mutated(T, ("stages[1].actions", [{"type": "wait", "duration": "PT1M"}] * 201)),
        "stages[1].actions",
    ),
    (
        "too_many_eligible_lists",
        mutated(T, ("eligible_lists", ["a", "b", "c", "d", "e", "f"])),
        "eligible_lists",
    ),
    ("no_channels", mutated(T, (f"{A0}[0].channels", [])), f"{A0}[0].channels"),
    ("no_recipients", mutated(T, (f"{A2}[2].to", [])), f"{A2}[2].to"),
    (
        "empty_criteria_group",
        mutated(T, ("goal.criteria.any[2].all", [])),
        "goal.criteria.any[2].all",
    ),
    ("unknown_action_type", mutated(T, (f"{A0}[1].type", "sleep")), f"{A0}[1].type"),
    ("invalid_recipient", mutated(T, (f"{A2}[2].to[0]", "sales")), f"{A2}[2].to[0]"),
    ("invalid_stage_key", mutated(T, ("stages[1].key", "nudge me")), "stages[1].key"),
    ("invalid_target", mutated(T, ("goal.target", {"count": 5, "percent": 5})), "goal.target"),
    (
        "invalid_where",
        mutated(T, (f"{A0}[2].event.where", {"plan": ["pro"]})),
        f"{A0}[2].event.where",
    ),
    (
        "invalid_criteria",
        mutated(T, ("goal.criteria.any[0]", {"prop": "x"})),
        "goal.criteria.any[0]",
    ),
    (
        "missing_value",
        mutated(T, ("goal.criteria.any[0].value", DELETE)),
        "goal.criteria.any[0].value",
    ),
    (
        "unexpected_value",
        mutated(T, ("goal.criteria.any[0].op", "is_set")),
        "goal.criteria.any[0].value",
    ),
    (
        "duplicate_stage_key",
        mutated(T, ("stages[2].key", "nudge"), ("stages[0].actions[2].on_event.go_to", "nudge")),
        "stages[2].key",
    ),
    ("duplicate_stage_value", mutated(T, ("stages[2].value", "onboarding")), "stages[2].value"),
    (
        "reserved_stage_key",
        mutated(T, ("stages[1].key", "success"), (f"{A0}[2].on_timeout.go_to", "success")),
        "stages[1].key",
    ),
    (
        "end_value_collides_with_stage",
        mutated(
            T, ("ends.failure[0].value", "nudge"), ("stages[1].actions[2].target", "failure:nudge")
        ),
        "ends.failure[0].value",
    ),
    (
        "duplicate_end_value",
        mutated(T, ("ends.failure[+]", {"value": "customer"})),
        "ends.failure[1].value",
    ),
    (
        "unknown_go_to_target",
        mutated(T, (f"{A0}[2].on_event.go_to", "engagged")),
        f"{A0}[2].on_event.go_to",
    ),
    (
        "unknown_go_to_target",
        mutated(T, (f"{A0}[2].on_timeout.go_to", "failure:lost")),
        f"{A0}[2].on_timeout.go_to",
    ),
    (
        "unknown_go_to_target",
        mutated(T, ("stages[1].actions[2].target", "failure")),
        "stages[1].actions[2].target",
    ),
    ("unknown_start_stage", mutated(T, ("start_stage", "welcome")), "start_stage"),
    (
        "unknown_stage_value",
        mutated(T, (f"{A2}[1].property", "journey_stage")),
        f"{A2}[1].value",
    ),
    (
        "busy_loop",
        mutated(
            T,
            ("stages[1].actions", [{"type": "go_to", "target": "engaged"}]),
            (f"{A2}[3]", {"type": "go_to", "target": "nudge"}),
        ),
        "stages[1].actions[0].target",
    ),
    ("duration_not_positive", mutated(T, (f"{A0}[1].duration", "PT0S")), f"{A0}[1].duration"),
    ("duration_not_positive", mutated(T, (f"{A0}[2].timeout", "-P1D")), f"{A0}[2].timeout"),
    ("duration_too_long", mutated(T, (f"{A0}[1].duration", "P366D")), f"{A0}[1].duration"),
    (
        "duration_too_long",
        mutated(T, ("goal.attribution_window", "P91D")),
        "goal.attribution_window",
    ),
    (
        "invalid_template_name",
        mutated(T, (f"{A0}[0].template", "../welcome")),
        f"{A0}[0].template",
    ),
    (
        "invalid_template",
        mutated(T, (f"{A2}[0].title", "Call {{ contact.first_name }")),
        f"{A2}[0].title",
    ),
    (
        "invalid_template",
        mutated(T, (f"{A2}[2].message", "{% if x %}open")),
        f"{A2}[2].message",
    ),
    (
        "list_eligible_and_suppressed",
        mutated(T, ("suppression_lists[+]", "trial-users")),
        "suppression_lists[2]",
    ),
    (
        "invalid_timezone",
        mutated(
            T,
            (
                "delivery",
                {"send_window": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}},
            ),
        ),
        "delivery.send_window.timezone",
    ),
    (
        "empty_send_window",
        mutated(T, ("delivery", {"send_window": {"start": "09:00", "end": "09:00"}})),
        "delivery.send_window",
    ),
    (
        "criteria_too_deep",
        mutated(T, ("goal.criteria", _nested(MAX_CRITERIA_DEPTH + 1))),
        "goal.criteria",
    ),
]


@pytest.mark.parametrize(
    ("reason", "journey", "path"),
    PROBLEM_CASES,
    ids=[f"{reason}@{path}" for reason, _, path in PROBLEM_CASES],
)
def test_problem_reason(reason: str, journey: dict[str, Any], path: str) -> None:
    result = validate_journey(journey)
    assert not result.valid
    found = [p for p in result.problems if p.path == path]
    assert [p.reason for p in found] == [reason], result.problems
    message = found[0].message
    assert message.endswith(".") and message[0].isupper() and "\n" not in message


def test_every_problem_reason_has_a_case() -> None:
    assert {reason for reason, *_ in PROBLEM_CASES} == PROBLEM_REASONS - {"invalid_length"}


def test_valid_edits_near_the_limits() -> None:
    at_limit = mutated(
        T,
        ("stages[1].actions", [{"type": "wait", "duration": "PT1M"}] * 199
         + [{"type": "go_to", "target": "failure:churned"}]),
        ("eligible_lists", ["a", "b", "c", "d", "e"]),
        (f"{A0}[1].duration", "P365D"),
        ("goal.attribution_window", "P0D"),
    )  # fmt: skip
    result = validate_journey(at_limit)
    assert result.problems == []
    assert MAX_WAIT == timedelta(days=365) and MAX_ATTRIBUTION_WINDOW == timedelta(days=90)


WARNING_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "action_after_go_to",
        mutated(T, (f"{A2}[+]", {"type": "wait", "duration": "P1D"})),
        f"{A2}[5]",
    ),
    (
        "action_after_go_to",
        mutated(T, (f"{A0}[+]", {"type": "send_message", "channels": ["email"], "template": "x"})),
        f"{A0}[3]",
    ),
    ("unreachable_stage", mutated(T, (f"{A0}[2].on_event.go_to", "nudge")), "stages[2]"),
    ("duplicate_list", mutated(T, ("suppression_lists[+]", "employees")), "suppression_lists[2]"),
    (
        "goal_without_marketing_message",
        mutated(T, (f"{A0}[0].marketing", False), ("stages[1].actions[0].marketing", False)),
        "goal",
    ),
]


@pytest.mark.parametrize(("reason", "journey", "path"), WARNING_CASES)
def test_warning_reason(reason: str, journey: dict[str, Any], path: str) -> None:
    result = validate_journey(journey)
    assert result.problems == []
    assert result.valid
    assert [(w.path, w.reason) for w in result.warnings] == [(path, reason)]


def test_every_warning_reason_has_a_case() -> None:
    assert {reason for reason, *_ in WARNING_CASES} == WARNING_REASONS


# --- loops -------------------------------------------------------------------------------------


def loop_journey(*stages: list[dict[str, Any]]) -> dict[str, Any]:
    raw = mutated(T)
    raw["stages"] = [
        {"key": f"s{i}", "value": f"s{i}", "actions": actions} for i, actions in enumerate(stages)
    ]
    raw["start_stage"] = "s0"
    return raw


def go(target: str) -> dict[str, Any]:
    return {"type": "go_to", "target": target}


WAIT = {"type": "wait", "duration": "PT1H"}
SEND = {"type": "send_message", "channels": ["email"], "template": "hi", "marketing": True}


def reasons(raw: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in validate_journey(raw).problems]


def test_self_loop_without_wait_is_busy() -> None:
    assert reasons(loop_journey([SEND, go("s0")])) == [("stages[0].actions[1].target", "busy_loop")]


def test_loop_with_a_wait_anywhere_on_it_is_fine() -> None:
    assert reasons(loop_journey([SEND, WAIT, go("s0")])) == []
    assert reasons(loop_journey([SEND, go("s1")], [WAIT, go("s0")])) == []
    assert reasons(loop_journey([SEND, go("s1")], [SEND, go("s2")], [WAIT, go("s0")])) == []


def test_wait_after_the_jump_does_not_count() -> None:
    problems = reasons(loop_journey([SEND, go("s1")], [go("s0"), WAIT]))
    assert problems == [("stages[0].actions[1].target", "busy_loop")]


def test_three_stage_busy_loop_names_its_stages() -> None:
    raw = loop_journey([SEND, go("s1")], [SEND, go("s2")], [SEND, go("s0")])
    problems = validate_journey(raw).problems
    assert [p.reason for p in problems] == ["busy_loop"]
    assert "s0 → s1 → s2 → s0" in problems[0].message


def test_wait_for_event_branches_wait() -> None:
    wfe = {
        "type": "wait_for_event",
        "event": {"type": "email_clicked"},
        "timeout": "P1D",
        "on_timeout": {"go_to": "s0"},
    }
    assert reasons(loop_journey([SEND, wfe])) == []
    # ...and so does a stage that waited for an event before jumping
    no_branch = {k: v for k, v in wfe.items() if k != "on_timeout"}
    assert reasons(loop_journey([no_branch, go("s0")])) == []


def test_stage_property_moves_are_jumps() -> None:
    move_back = {"type": "set_property", "property": "journey_stage", "value": "s0"}
    assert reasons(loop_journey([SEND, go("s1")], [move_back])) == [
        ("stages[0].actions[1].target", "busy_loop")
    ]
    assert reasons(loop_journey([SEND, go("s1")], [WAIT, move_back])) == []
    to_end = {"type": "set_property", "property": "journey_stage", "value": "churned"}
    assert reasons(loop_journey([SEND, to_end])) == []


def test_stage_property_no_op_moves_do_not_leave_the_stage() -> None:
    """As in the workflow: setting the current stage's value, or an end value while
    `when_stage_matches_end` is off, changes nothing; the stage goes on."""
    stay = {"type": "set_property", "property": "journey_stage", "value": "s0"}
    raw = loop_journey([SEND, stay, WAIT])
    assert validate_journey(raw).warnings == []
    to_end = {"type": "set_property", "property": "journey_stage", "value": "churned"}
    ended = validate_journey(loop_journey([SEND, to_end, WAIT])).warnings
    assert [(w.path, w.reason) for w in ended] == [("stages[0].actions[2]", "action_after_go_to")]
    raw = loop_journey([SEND, to_end, WAIT])
    raw["exit"]["when_stage_matches_end"] = False
    assert validate_journey(raw).warnings == []


def test_two_independent_busy_loops_are_both_reported() -> None:
    raw = loop_journey([SEND, go("s0")], [WAIT, go("s2")], [SEND, go("s3")], [go("s2")])
    assert [p for p in reasons(raw) if p[1] == "busy_loop"] == [
        ("stages[0].actions[1].target", "busy_loop"),
        ("stages[2].actions[1].target", "busy_loop"),
    ]


# --- ten malformed journeys ----------------------------------------------------------------------

MALFORMED: list[tuple[str, Any, set[tuple[str, str]]]] = [
    ("not an object", ["stages"], {("", "invalid_type")}),
    ("empty object", {}, {("name", "missing_field"), ("stages", "missing_field"),
                          ("ends", "missing_field"), ("start_stage", "missing_field")}),
    (
        "misspelt action field and bad duration",
        mutated(T, (f"{A0}[1].duraton", "P1D"), (f"{A0}[1].duration", DELETE),
                (f"{A0}[2].timeout", "five days")),
        {(f"{A0}[1].duraton", "unknown_field"), (f"{A0}[1].duration", "missing_field"),
         (f"{A0}[2].timeout", "invalid_duration")},
    ),
    (
        "criteria deep in the goal",
        mutated(T, ("goal.criteria.any[2].all[0].min_count", 0),
                ("goal.criteria.any[2].all[1].member", "sometimes")),
        {("goal.criteria.any[2].all[0].min_count", "invalid_value"),
         ("goal.criteria.any[2].all[1].member", "invalid_type")},
    ),
    (
        "go_to targets nowhere and the start is missing",
        mutated(T, ("start_stage", "begin"), ("stages[1].actions[2].target", "churn")),
        {("start_stage", "unknown_start_stage"),
         ("stages[1].actions[2].target", "unknown_go_to_target")},
    ),
    (
        "ends collide",
        mutated(T, ("ends.success.value", "engaged"), ("ends.failure[+]", {"value": "churned"})),
        {("ends.success.value", "end_value_collides_with_stage"),
         ("ends.failure[1].value", "duplicate_end_value")},
    ),
    (
        "busy loop between nudge and engaged",
        mutated(T, ("stages[1].actions", [go("engaged")]), (f"{A2}[3]", go("nudge"))),
        {("stages[1].actions[0].target", "busy_loop")},
    ),
    (
        "structural and cross-journey problems at once",
        mutated(T, (f"{A0}[1].duration", "tomorrow"), ("stages[2].value", "nudge")),
        {(f"{A0}[1].duration", "invalid_duration"), ("stages[2].value", "duplicate_stage_value")},
    ),
    (
        "templates",
        mutated(T, (f"{A0}[0].template", "Welcome Email"), (f"{A2}[0].notes", "{{ oops")),
        {(f"{A0}[0].template", "invalid_template_name"), (f"{A2}[0].notes", "invalid_template")},
    ),
    (
        "wrong types everywhere",
        mutated(T, ("enroll_empty_stage", "maybe"), ("eligible_lists", "trial-users"),
                ("exit", {"when_removed_from_eligible_lists": True, "always": True})),
        {("enroll_empty_stage", "invalid_type"), ("eligible_lists", "invalid_type"),
         ("exit.always", "unknown_field")},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(payload, expected) for _, payload, expected in MALFORMED],
    ids=[name for name, _, _ in MALFORMED],
)
def test_malformed_journeys_name_path_and_reason(
    payload: Any, expected: set[tuple[str, str]]
) -> None:
    result = validate_journey(payload)
    assert not result.valid
    found = {(p.path, p.reason) for p in result.problems}
    assert expected <= found, result.problems
    assert len(result.problems) == len(found)  # no problem reported twice
    for problem in result.problems:
        assert problem.reason in PROBLEM_REASONS
        assert problem.message.endswith(".")


def test_ten_malformed_journeys_of_different_kinds() -> None:
    assert len(MALFORMED) == 10
    assert len({frozenset(reason for _, reason in e) for _, _, e in MALFORMED}) == 10


@pytest.mark.parametrize(
    "payload",
    [None, 0, "journey", b"{}", [], {"stages": None}, {"stages": [None, 1, "x"]},
     {"stages": [{"key": 1, "value": None, "actions": "wait"}]}, {"goal": {"criteria": []}},
     {"ends": {"success": None, "failure": [None]}}, {"exit": []}],
)  # fmt: skip
def test_garbage_never_raises(payload: Any) -> None:
    result = validate_journey(payload)
    assert result.journey is None and result.problems
    assert all(isinstance(p, Problem) for p in result.problems)


def test_unknown_field_suggests_the_right_name() -> None:
    result = validate_journey(mutated(T, ("stages[0].actions[0].templte", "x")))
    messages = [p.message for p in result.problems if p.reason == "unknown_field"]
    assert messages == ["Unknown field 'templte' (did you mean 'template'?); remove it."]


def test_a_journey_model_is_accepted_as_input() -> None:
    journey = Journey.model_validate(load("abandoned_cart.json"))
    assert validate_journey(journey).valid


def test_actions_parse_into_their_classes() -> None:
    journey = Journey.model_validate(load("trial_to_paid.json"))
    kinds = [type(a) for a in journey.stages[0].actions]
    assert kinds == [SendMessage, Wait, WaitForEvent]
    assert isinstance(journey.stages[1].actions[2], GoTo)
    assert isinstance(journey.goal.criteria.any[0], PropertyLeaf)  # type: ignore[union-attr]
    assert journey.stages[0].actions[0].marketing is True  # type: ignore[union-attr]


def test_a_goal_on_contact_state_after_round_trip() -> None:
    """The workflow receives the journey through Temporal: the goal still decides alike."""
    journey = Journey.model_validate(load("trial_to_paid.json"))
    again = Journey.model_validate_json(journey.model_dump_json())
    from shared.criteria import evaluate

    state = ContactState(properties={"lifecycle_stage": "customer"})
    assert again.goal is not None and journey.goal is not None
    assert evaluate(again.goal.criteria, state) is evaluate(journey.goal.criteria, state) is True


def test_criteria_nested_past_the_cap_are_refused_when_saved_not_when_run() -> None:
    base = load(T)
    ok = validate_journey({**base, "goal": {"criteria": _nested(MAX_CRITERIA_DEPTH)}})
    assert ok.problems == [] and ok.journey is not None
    for levels in (MAX_CRITERIA_DEPTH + 1, 250, 5000):
        deep = validate_journey({**base, "goal": {"criteria": _nested(levels)}})
        assert deep.journey is None
        assert [(p.path, p.reason) for p in deep.problems] == [
            ("goal.criteria", "criteria_too_deep")
        ]
