"""Validating a journey before anything runs: every problem at once, each naming the JSON
path (`stages[0].actions[2].duration`), a machine `reason` and one sentence.

Two passes. The structure comes from the pydantic models in `shared.journey`; their
errors are translated into problems. The rules that look across the journey (unique
keys, targets that exist, loops that never wait, limits, templates) then run over every
part that parsed, so a journey with a bad duration still hears about its duplicate stage
key in the same answer. Warnings (unreachable stages or actions) never block a save.

Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from shared import decision_rules, trigger_rules
from shared.criteria import CRITERIA_TAGS
from shared.journey import (
    ACTION_TYPES,
    FAILURE_PREFIX,
    MAX_ACTIONS_PER_STAGE,
    MAX_ELIGIBLE_LISTS,
    SUCCESS,
    Branch,
    BranchOn,
    CreateTask,
    Ends,
    Goal,
    GoTo,
    Journey,
    SendMessage,
    SendNotification,
    SetProperty,
    Split,
    Stage,
    Wait,
    WaitForEvent,
    resolve_target,
)

#: The longest `wait` duration or `wait_for_event` timeout.
MAX_WAIT = timedelta(days=365)
#: The longest goal attribution window (zero is allowed: only goals met while enrolled count).
MAX_ATTRIBUTION_WINDOW = timedelta(days=90)
#: `send_message` templates are referenced by name.
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")

_jinja = SandboxedEnvironment()

#: Every reason code a problem (blocks a save) can carry.
PROBLEM_REASONS = frozenset(
    {
        # the structure (pydantic)
        "missing_field", "unknown_field", "invalid_type", "invalid_value", "empty_value",
        "invalid_length", "invalid_duration", "no_stages", "no_actions", "too_many_actions",
        "too_many_eligible_lists", "no_channels", "no_recipients", "empty_criteria_group",
        "unknown_action_type", "invalid_recipient", "invalid_stage_key", "invalid_target",
        "invalid_where", "invalid_criteria", "missing_value", "unexpected_value",
        # across the journey
        "duplicate_stage_key", "duplicate_stage_value", "reserved_stage_key",
        "end_value_collides_with_stage", "duplicate_end_value", "unknown_go_to_target",
        "unknown_start_stage", "unknown_stage_value", "busy_loop", "duration_not_positive",
        "duration_too_long", "invalid_template_name", "invalid_template",
        "list_eligible_and_suppressed", "criteria_too_deep",
        # delivery options
        "invalid_timezone", "empty_send_window",
    }
    | decision_rules.REASONS
    | trigger_rules.REASONS
    | {"invalid_engagement"}
)  # fmt: skip
#: Every reason code a warning (returned alongside a successful save) can carry.
WARNING_REASONS = frozenset(
    {"action_after_go_to", "unreachable_stage", "duplicate_list", "goal_without_marketing_message"}
)


class Problem(BaseModel):
    """One thing wrong (or, as a warning, doubtful) with a journey."""

    model_config = ConfigDict(extra="forbid")

    path: str
    reason: str
    message: str


class JourneyValidation(BaseModel):
    """The outcome of `validate_journey`. `journey` is None when the payload did not even
    have a journey's structure; `valid` needs it parsed and no problems."""

    model_config = ConfigDict(extra="forbid")

    journey: Journey | None
    problems: list[Problem] = []
    warnings: list[Problem] = []

    @property
    def valid(self) -> bool:
        return self.journey is not None and not self.problems


MAX_CRITERIA_DEPTH = 16
"""Levels of `all`/`any` a criteria tree may nest: deeper trees are refused when saved,
not left to fail the workflow later (its evaluator recurses)."""


def _criteria_depth(node: object) -> int:
    """How many `all`/`any` levels a raw criteria tree nests (iteratively: any input)."""
    deepest, pending = 0, [(node, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            for tag in ("all", "any"):
                children = item.get(tag)
                if isinstance(children, list):
                    deepest = max(deepest, depth)
                    pending.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(payload: object) -> Problem | None:
    goal = payload.get("goal") if isinstance(payload, dict) else None
    criteria = goal.get("criteria") if isinstance(goal, dict) else None
    if _criteria_depth(criteria) <= MAX_CRITERIA_DEPTH:
        return None
    return Problem(
        path="goal.criteria",
        reason="criteria_too_deep",
        message=f"Criteria may nest `all`/`any` at most {MAX_CRITERIA_DEPTH} levels deep.",
    )


def validate_journey(payload: object) -> JourneyValidation:
    """Every problem and warning of a journey definition (a parsed JSON value or a
    `Journey`), all at once. Never raises on user input."""
    if (deep := _too_deep(payload)) is not None:
        return JourneyValidation(journey=None, problems=[deep], warnings=[])
    try:
        journey = Journey.model_validate(payload)
    except ValidationError as exc:
        problems = [_structural_problem(err, payload) for err in exc.errors()]
        semantic = _Checker(_Parts.salvage(payload), complete=False)
        problems.extend(p for p in semantic.problems if p.path not in {q.path for q in problems})
        return JourneyValidation(journey=None, problems=problems, warnings=[])
    checker = _Checker(_Parts.of(journey), complete=True)
    for path, reason, message in trigger_rules.problems(journey):
        checker.problem(path, reason, message)
    return JourneyValidation(journey=journey, problems=checker.problems, warnings=checker.warnings)


# --- pass 1: pydantic errors as problems --------------------------------------------------

_UNION_POSITIONS = {"actions": ACTION_TYPES, "all": CRITERIA_TAGS, "any": CRITERIA_TAGS}

#: Reason codes our own validators raise (pydantic reports them as the error type).
_CUSTOM_REASONS = frozenset(
    {
        "invalid_duration",
        "invalid_timezone",
        "empty_send_window",
        "invalid_recipient",
        "invalid_stage_key",
        "invalid_target",
        "invalid_where",
        "invalid_criteria",
        "missing_value",
        "unexpected_value",
        "invalid_value",
        "invalid_trigger",
        "invalid_engagement",
    }
)

_LENGTH_REASONS = {
    ("actions", "too_short"): "no_actions",
    ("actions", "too_long"): "too_many_actions",
    ("eligible_lists", "too_long"): "too_many_eligible_lists",
    ("stages", "too_short"): "no_stages",
    ("channels", "too_short"): "no_channels",
    ("to", "too_short"): "no_recipients",
    ("all", "too_short"): "empty_criteria_group",
    ("any", "too_short"): "empty_criteria_group",
    **decision_rules.LENGTH_REASONS,
}


def _known_fields() -> frozenset[str]:
    names: set[str] = set()
    pending: list[Any] = [Journey.model_json_schema()]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return frozenset(names)


_KNOWN_FIELDS = _known_fields()


def _clean_loc(loc: Sequence[int | str]) -> list[int | str]:
    """The location without the union tags pydantic inserts (`actions.0.wait.duration`
    becomes `actions.0.duration`)."""
    clean: list[int | str] = []
    skip: frozenset[str] = frozenset()
    for i, seg in enumerate(loc):
        if isinstance(seg, str) and seg in skip:
            skip = frozenset()
            continue
        skip = frozenset()
        clean.append(seg)
        if isinstance(seg, int) and i > 0 and isinstance(loc[i - 1], str):
            skip = _UNION_POSITIONS.get(str(loc[i - 1]), frozenset())
        elif seg == "criteria":
            skip = CRITERIA_TAGS
    return clean


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def format_path(loc: Iterable[int | str]) -> str:
    """`["stages", 0, "actions", 2, "duration"]` → `stages[0].actions[2].duration`."""
    out = ""
    for seg in loc:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _IDENTIFIER.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{seg!r}]"
    return out


def _structural_problem(err: ErrorDetails, payload: object) -> Problem:
    loc = _clean_loc(err["loc"])
    path = format_path(loc)
    field_name = next((str(s) for s in reversed(loc) if isinstance(s, str)), "")
    kind = err["type"]
    where = f"at {path}" if path else "in the journey"
    in_actions = len(loc) >= 2 and loc[-2] == "actions" and isinstance(loc[-1], int)

    if kind == "missing":
        return Problem(
            path=path, reason="missing_field", message=f"Field {field_name!r} is required."
        )
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(field_name, _KNOWN_FIELDS, n=1)
        also = f" (did you mean {hint[0]!r}?)" if hint else ""
        return Problem(
            path=path,
            reason="unknown_field",
            message=f"Unknown field {field_name!r}{also}; remove it.",
        )
    if kind in ("union_tag_invalid", "union_tag_not_found") and in_actions:
        kinds = ", ".join(sorted(ACTION_TYPES))
        if kind == "union_tag_not_found":
            return Problem(
                path=f"{path}.type",
                reason="missing_field",
                message=f"Every action needs a type, one of {kinds}.",
            )
        return Problem(
            path=f"{path}.type",
            reason="unknown_action_type",
            message=f"Unknown action type {_tag_of(err)!r}; use one of {kinds}.",
        )
    if kind in ("too_short", "too_long"):
        reason = _LENGTH_REASONS.get((field_name, kind), "invalid_length")
        return Problem(path=path, reason=reason, message=_length_message(reason, err, where))
    if kind.startswith("time_delta"):
        return Problem(
            path=path,
            reason="invalid_duration",
            message=f'Expected an ISO-8601 duration such as "PT30S" or "P3D" {where}.',
        )
    if kind in _CUSTOM_REASONS:
        return Problem(path=path, reason=kind, message=_sentence(err["msg"]))
    if kind == "string_too_short":
        return Problem(
            path=path, reason="empty_value", message=f"Field {field_name!r} cannot be empty."
        )
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_attributes_type":
        return Problem(path=path, reason="invalid_type", message=_invalid(field_name, err))
    return Problem(path=path, reason="invalid_value", message=_invalid(field_name, err))


def _invalid(field_name: str, err: ErrorDetails) -> str:
    msg = err["msg"]
    return _sentence(f"Invalid {field_name or 'journey'}: {msg[:1].lower()}{msg[1:]}")


def _tag_of(err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    return str(ctx.get("tag", err.get("input")))


def _length_message(reason: str, err: ErrorDetails, where: str) -> str:
    ctx = err.get("ctx") or {}
    actual = ctx.get("actual_length")
    return {
        "no_actions": "A stage needs at least one action.",
        "too_many_actions": (
            f"A stage has at most {MAX_ACTIONS_PER_STAGE} actions; this one has {actual}."
        ),
        "too_many_eligible_lists": (
            f"A journey has at most {MAX_ELIGIBLE_LISTS} eligible lists; this one has {actual}."
        ),
        "no_stages": "A journey needs at least one stage.",
        "no_channels": "A send_message action needs at least one channel.",
        "no_recipients": "A send_notification action needs at least one recipient.",
        "empty_criteria_group": "An all/any group needs at least one condition.",
        **decision_rules.LENGTH_MESSAGES,
    }.get(reason, _sentence(f"{err['msg']} {where}"))


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(".") else f"{text}."


# --- pass 2: rules across the journey ----------------------------------------------------


@dataclass
class _Parts:
    """What the cross-journey rules look at. For a journey that failed pass 1, the parts
    that parse on their own (with their original positions) are salvaged."""

    stages: list[tuple[int, Stage]]
    stage_ids: list[tuple[int, str | None, str | None]]  # (position, key, value), as sent
    ends: Ends | None
    goal: Goal | None
    start_stage: str | None
    stage_property: str | None
    eligible_lists: list[str] = field(default_factory=list)
    suppression_lists: list[str] = field(default_factory=list)
    exit_on_end_value: bool = True

    @property
    def stage_keys(self) -> set[str]:
        return {key for _, key, _ in self.stage_ids if key is not None}

    @classmethod
    def of(cls, journey: Journey) -> _Parts:
        return cls(
            stages=list(enumerate(journey.stages)),
            stage_ids=[(i, s.key, s.value) for i, s in enumerate(journey.stages)],
            ends=journey.ends,
            goal=journey.goal,
            start_stage=journey.start_stage,
            stage_property=journey.stage_property,
            eligible_lists=journey.eligible_lists,
            suppression_lists=journey.suppression_lists,
            exit_on_end_value=journey.exit.when_stage_matches_end,
        )

    @classmethod
    def salvage(cls, payload: object) -> _Parts:
        raw = payload if isinstance(payload, dict) else {}
        raw_stages = raw.get("stages") if isinstance(raw.get("stages"), list) else []
        stages = [
            (i, stage)
            for i, item in enumerate(raw_stages or [])
            if (stage := _parse_or_none(Stage, item)) is not None
        ]
        stage_ids = [
            (i, _str_or_none(item.get("key")), _str_or_none(item.get("value")))
            for i, item in enumerate(raw_stages or [])
            if isinstance(item, dict)
        ]
        return cls(
            stages=stages,
            stage_ids=stage_ids,
            ends=_parse_or_none(Ends, raw.get("ends")),
            goal=_parse_or_none(Goal, raw.get("goal")),
            start_stage=_str_or_none(raw.get("start_stage")),
            stage_property=_str_or_none(raw.get("stage_property")),
            eligible_lists=_strings(raw.get("eligible_lists")),
            suppression_lists=_strings(raw.get("suppression_lists")),
            exit_on_end_value=_exit_on_end_value(raw.get("exit")),
        )


M = TypeVar("M", bound=BaseModel)


def _parse_or_none(model: type[M], value: object) -> M | None:
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _exit_on_end_value(value: object) -> bool:
    flag = value.get("when_stage_matches_end", True) if isinstance(value, dict) else True
    return flag is not False


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class _Edge:
    """Control can pass from stage `source` to stage `target`; `waits` when a wait or
    wait_for_event always lies between entering `source` and the jump."""

    source: str
    target: str
    waits: bool
    path: str


class _Checker:
    def __init__(self, parts: _Parts, *, complete: bool) -> None:
        self.parts = parts
        self.complete = complete
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.stage_values = {value for _, _, value in parts.stage_ids if value is not None}
        self.end_values = self._end_values()
        self.edges: list[_Edge] = []
        self.has_goal = parts.goal is not None
        self.decision_names: dict[str, str] = {}
        self._check_stages()
        self._check_ends()
        self._check_lists()
        self._check_actions()
        self._check_goal()
        self._check_loops()
        if complete:
            self._check_reachability()

    def problem(self, path: str, reason: str, message: str) -> None:
        self.problems.append(Problem(path=path, reason=reason, message=message))

    def warning(self, path: str, reason: str, message: str) -> None:
        self.warnings.append(Problem(path=path, reason=reason, message=message))

    def _end_values(self) -> dict[str, str]:
        ends = self.parts.ends
        if ends is None:
            return {}
        values = {ends.success.value: SUCCESS}
        for end in ends.failure:
            values.setdefault(end.value, f"{FAILURE_PREFIX}{end.value}")
        return values

    # -- stages, ends, lists

    def _check_stages(self) -> None:
        keys: dict[str, int] = {}
        values: dict[str, int] = {}
        for i, key, value in self.parts.stage_ids:
            if key == SUCCESS or (key or "").startswith(FAILURE_PREFIX):
                self.problem(
                    f"stages[{i}].key",
                    "reserved_stage_key",
                    f"Stage key {key!r} is how go_to names an end; choose another key.",
                )
            if key is not None and key in keys:
                self.problem(
                    f"stages[{i}].key",
                    "duplicate_stage_key",
                    f"Stage key {key!r} is already used by stages[{keys[key]}].",
                )
            if value is not None and value in values:
                self.problem(
                    f"stages[{i}].value",
                    "duplicate_stage_value",
                    f"Stage value {value!r} is already used by stages[{values[value]}].",
                )
            if key is not None:
                keys.setdefault(key, i)
            if value is not None:
                values.setdefault(value, i)
        start = self.parts.start_stage
        if start is not None and start not in self.parts.stage_keys:
            self.problem(
                "start_stage",
                "unknown_start_stage",
                f"The start stage {start!r} is not the key of any stage{self._known_keys()}.",
            )

    def _known_keys(self) -> str:
        keys = sorted(self.parts.stage_keys)
        return f" (stage keys: {', '.join(keys)})" if keys else ""

    def _check_ends(self) -> None:
        ends = self.parts.ends
        if ends is None:
            return
        seen: set[str] = set()
        named = [("ends.success.value", ends.success.value)] + [
            (f"ends.failure[{i}].value", end.value) for i, end in enumerate(ends.failure)
        ]
        for path, value in named:
            if value in self.stage_values:
                self.problem(
                    path,
                    "end_value_collides_with_stage",
                    f"End value {value!r} is also a stage value; the stage property could "
                    "not tell the end from the stage.",
                )
            if value in seen:
                self.problem(
                    path, "duplicate_end_value", f"End value {value!r} is used by another end."
                )
            seen.add(value)

    def _check_lists(self) -> None:
        for name, lists in (
            ("eligible_lists", self.parts.eligible_lists),
            ("suppression_lists", self.parts.suppression_lists),
        ):
            seen: set[str] = set()
            for i, item in enumerate(lists):
                if item in seen:
                    self.warning(
                        f"{name}[{i}]", "duplicate_list", f"List {item!r} is listed twice."
                    )
                seen.add(item)
        eligible = set(self.parts.eligible_lists)
        for i, item in enumerate(self.parts.suppression_lists):
            if item in eligible:
                self.problem(
                    f"suppression_lists[{i}]",
                    "list_eligible_and_suppressed",
                    f"List {item!r} is both eligible and suppressed, so its members could "
                    "never enroll.",
                )

    # -- actions, and the edges between stages they make

    def _check_actions(self) -> None:
        for i, stage in self.parts.stages:
            waited = False
            left_at: str | None = None
            for j, action in enumerate(stage.actions):
                path = f"stages[{i}].actions[{j}]"
                if left_at is not None and not left_at.startswith("warned:"):
                    self.warning(
                        path,
                        "action_after_go_to",
                        f"This action never runs: the stage always leaves at {left_at}.",
                    )
                    left_at = f"warned:{left_at}"
                # unreachable actions are still checked, but make no edges
                leaves = self._check_action(stage, path, action, waited, live=left_at is None)
                left_at = left_at or leaves
                if isinstance(action, Wait | WaitForEvent):
                    waited = True

    def _check_action(
        self, stage: Stage, path: str, action: Any, waited: bool, *, live: bool
    ) -> str | None:
        """Checks one action; returns its path when control never passes beyond it."""
        if isinstance(action, Wait):
            self._check_wait(f"{path}.duration", action.duration, "wait")
        elif isinstance(action, WaitForEvent):
            self._check_wait(f"{path}.timeout", action.timeout, "timeout")
            branches: list[tuple[str, Branch | None]] = [
                ("on_event", action.on_event),
                ("on_timeout", action.on_timeout),
            ]
            for name, branch in branches:
                if branch is not None:
                    self._jump(stage, f"{path}.{name}.go_to", branch.go_to, waits=True, live=live)
            if action.on_event is not None and action.on_timeout is not None:
                return path
        elif isinstance(action, GoTo):
            self._jump(stage, f"{path}.target", action.target, waits=waited, live=live)
            return path
        elif isinstance(action, BranchOn | Split):

            def jump(at: str, target: str) -> None:
                self._jump(stage, at, target, waits=waited, live=live)

            return path if decision_rules.check(self, stage, path, action, jump) else None
        elif isinstance(action, SendMessage):
            if not TEMPLATE_NAME.fullmatch(action.template):
                self.problem(
                    f"{path}.template",
                    "invalid_template_name",
                    f"Template name {action.template!r} must be 1-64 lowercase letters, "
                    "digits, '_' or '-', starting with a letter or digit.",
                )
        elif isinstance(action, CreateTask):
            self._check_template(f"{path}.title", action.title)
            if action.notes is not None:
                self._check_template(f"{path}.notes", action.notes)
        elif isinstance(action, SendNotification):
            self._check_template(f"{path}.message", action.message)
        elif isinstance(action, SetProperty) and action.property == self.parts.stage_property:
            return self._stage_move(stage, path, action, waited, live=live)
        return None

    def _stage_move(
        self, stage: Stage, path: str, action: SetProperty, waited: bool, *, live: bool
    ) -> str | None:
        """Setting the stage property moves the contact: a jump by value. Setting it to
        the current stage's value, or to an end value while `exit.when_stage_matches_end`
        is off, changes nothing and the stage goes on."""
        value = action.value
        target = next((s.key for _, s in self.parts.stages if s.value == value), None)
        if target == stage.key:
            return None
        if target is not None:
            if live:
                self.edges.append(_Edge(stage.key, target, waited, f"{path}.value"))
            return path
        if isinstance(value, str) and value in self.end_values:
            return path if self.parts.exit_on_end_value else None
        known = sorted(self.stage_values | set(self.end_values))
        self.problem(
            f"{path}.value",
            "unknown_stage_value",
            f"Setting the stage property to {value!r} moves the contact nowhere: it is "
            f"neither a stage value nor an end value ({', '.join(known)}).",
        )
        return None

    def _jump(self, stage: Stage, path: str, target: str, *, waits: bool, live: bool) -> None:
        parsed = resolve_target(target)
        if parsed.kind == "stage":
            if parsed.stage_key in self.parts.stage_keys:
                if live:
                    self.edges.append(_Edge(stage.key, target, waits, path))
            else:
                self.problem(
                    path,
                    "unknown_go_to_target",
                    f"Target {target!r} is not a stage key, {SUCCESS!r} or "
                    f"'{FAILURE_PREFIX}<value>'{self._known_keys()}.",
                )
        elif parsed.kind == "failure" and self.parts.ends is not None:
            values = [end.value for end in self.parts.ends.failure]
            if parsed.end_value not in values:
                known = ", ".join(repr(v) for v in values) or "none"
                self.problem(
                    path,
                    "unknown_go_to_target",
                    f"Target {target!r} names no failure end (failure end values: {known}).",
                )

    def _check_wait(self, path: str, duration: timedelta, what: str) -> None:
        if duration <= timedelta(0):
            self.problem(path, "duration_not_positive", f"A {what} must be longer than zero.")
        elif duration > MAX_WAIT:
            self.problem(
                path,
                "duration_too_long",
                f"A {what} lasts at most {MAX_WAIT.days} days; this one is {_days(duration)}.",
            )

    def _check_template(self, path: str, text: str) -> None:
        try:
            _jinja.parse(text)
        except jinja2.TemplateSyntaxError as exc:
            self.problem(
                path,
                "invalid_template",
                f"Not a valid template: {(exc.message or 'syntax error').rstrip('.')} "
                f"(line {exc.lineno}).",
            )

    # -- goal

    def _check_goal(self) -> None:
        goal = self.parts.goal
        if goal is None:
            return
        window = goal.attribution_window
        if window < timedelta(0):
            self.problem(
                "goal.attribution_window",
                "duration_not_positive",
                "The attribution window cannot be negative.",
            )
        elif window > MAX_ATTRIBUTION_WINDOW:
            self.problem(
                "goal.attribution_window",
                "duration_too_long",
                f"The attribution window lasts at most {MAX_ATTRIBUTION_WINDOW.days} days; "
                f"this one is {_days(window)}.",
            )
        if self.complete and not any(
            isinstance(a, SendMessage) and a.marketing
            for _, s in self.parts.stages
            for a in s.actions
        ):
            self.warning(
                "goal",
                "goal_without_marketing_message",
                "No send_message is marked marketing, so no contact can ever count as a "
                "goal conversion.",
            )

    # -- loops and reachability

    def _check_loops(self) -> None:
        busy: dict[str, list[_Edge]] = {}
        for edge in self.edges:
            if not edge.waits:
                busy.setdefault(edge.source, []).append(edge)
        order = [s.key for _, s in self.parts.stages]
        for component in _cycles(order, {k: [e.target for e in v] for k, v in busy.items()}):
            first = next(k for k in order if k in component)
            edge = next(e for e in busy[first] if e.target in component)
            loop = " → ".join([*_cycle_through(first, component, busy), first])
            self.problem(
                edge.path,
                "busy_loop",
                f"Stages {loop} loop without a wait; add a wait or wait_for_event on the loop.",
            )

    def _check_reachability(self) -> None:
        start = self.parts.start_stage
        if start is None:
            return
        reached = {start}
        frontier = [start]
        while frontier:
            key = frontier.pop()
            for edge in self.edges:
                if edge.source == key and edge.target not in reached:
                    reached.add(edge.target)
                    frontier.append(edge.target)
        for i, stage in self.parts.stages:
            if stage.key not in reached:
                self.warning(
                    f"stages[{i}]",
                    "unreachable_stage",
                    f"No path from the start stage leads to stage {stage.key!r}; only a change "
                    "of the stage property from outside can enter it.",
                )


def _days(duration: timedelta) -> str:
    days = duration / timedelta(days=1)
    return f"{days:g} days"


def _cycles(order: list[str], graph: dict[str, list[str]]) -> Iterator[set[str]]:
    """Strongly connected components that contain a cycle (Tarjan, iteration order fixed
    by `order` so that messages are deterministic)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, []):
                found.append(component)

    for node in order:
        if node not in index:
            visit(node)
    yield from found


def _cycle_through(first: str, component: set[str], busy: dict[str, list[_Edge]]) -> list[str]:
    """The shortest cycle from `first` back to itself inside its component (for the
    message), without the closing `first`."""
    came_from: dict[str, str] = {}
    frontier = [first]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in busy.get(node, []):
                if edge.target not in component or edge.target in came_from:
                    continue
                came_from[edge.target] = node
                if edge.target == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(came_from[path[-1]])
                    return list(reversed(path))
                following.append(edge.target)
        frontier = following
    return [first]


__all__ = [
    "MAX_ATTRIBUTION_WINDOW",
    "MAX_WAIT",
    "PROBLEM_REASONS",
    "TEMPLATE_NAME",
    "WARNING_REASONS",
    "JourneyValidation",
    "Problem",
    "format_path",
    "validate_journey",
]
