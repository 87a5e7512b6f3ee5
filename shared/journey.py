"""The journey definition: pydantic models in exactly the JSON shape of docs/journeys.md.

The field names are the public contract. Every model forbids unknown fields; durations
are ISO-8601 strings on the wire ("P3D", "PT30S") and `timedelta` in Python, and
`model_dump(mode="json")` gives the same strings back, so a JSON round trip yields an
equal model. Structural rules live here; rules that look across the whole journey
(unique keys, targets that exist, loops without a wait, ...) are in `shared.validation`.

Pure: safe to import from workflow code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.criteria import (
    Criteria,
    DefinitionModel,
    EventFilter,
    EventLeaf,
    ListLeaf,
    PropertyLeaf,
    iter_leaves,
)

__all__ = [
    "Action",
    "ActionType",
    "Branch",
    "BranchOn",
    "CreateTask",
    "DeliveryOptions",
    "End",
    "EndKind",
    "Ends",
    "EventFilter",
    "ExitOptions",
    "GoTo",
    "GoToTarget",
    "Goal",
    "Journey",
    "Otherwise",
    "Path",
    "Reentry",
    "SendMessage",
    "SendNotification",
    "SendWindow",
    "SetProperty",
    "Split",
    "Stage",
    "Target",
    "Trigger",
    "Variant",
    "Wait",
    "WaitForEvent",
    "Winner",
    "resolve_target",
]

MAX_ACTIONS_PER_STAGE = 200
MAX_ELIGIBLE_LISTS = 5
MAX_PATHS = 20
"""Paths of a `branch`, variants of a `split`."""
DEFAULT_ATTRIBUTION_WINDOW = timedelta(days=3)

SUCCESS = "success"
FAILURE_PREFIX = "failure:"

_ISO_DURATION = re.compile(
    r"-?P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?"
)


def _iso_duration(value: Any) -> Any:
    """Only ISO-8601 durations on the wire: no bare seconds, no "3 days", no "HH:MM:SS".
    (pydantic reads Y as 365 days, M as 30 days, W as 7 days.)"""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not _ISO_DURATION.fullmatch(value):
        raise PydanticCustomError(
            "invalid_duration",
            'Expected an ISO-8601 duration such as "PT30S", "PT2H" or "P3D", got {value}.',
            {"value": repr(value)},
        )
    return value


#: A `timedelta` read from an ISO-8601 duration string.
Duration = Annotated[timedelta, BeforeValidator(_iso_duration)]

_RECIPIENT = re.compile(r"owner|(user|team):[^\s:]+")
_STAGE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _recipient(value: str) -> str:
    if not _RECIPIENT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_recipient",
            'Expected "owner", "user:<id>" or "team:<id>", got {value}.',
            {"value": repr(value)},
        )
    return value


Recipient = Annotated[str, AfterValidator(_recipient)]


# --- actions ------------------------------------------------------------------------------


class SendMessage(DefinitionModel):
    """Send a template over one or more channels. `marketing` messages make a contact
    count towards goal conversion."""

    type: Literal["send_message"] = "send_message"
    channels: list[Literal["email", "sms", "whatsapp"]] = Field(min_length=1)
    template: str
    marketing: bool = False
    tracking: bool | None = None
    """Opens and clicks of its email tracked; None: as the journey's `delivery.tracking`."""


class Wait(DefinitionModel):
    type: Literal["wait"] = "wait"
    duration: Duration


class Branch(DefinitionModel):
    """Where a `wait_for_event` continues: `{"go_to": target}`."""

    go_to: str = Field(min_length=1)


class WaitForEvent(DefinitionModel):
    """Wait for a matching event or the timeout; each outcome may jump (`on_event`,
    `on_timeout`), or, when omitted, the stage continues with its next action."""

    type: Literal["wait_for_event"] = "wait_for_event"
    event: EventFilter
    timeout: Duration
    on_event: Branch | None = None
    on_timeout: Branch | None = None


class CreateTask(DefinitionModel):
    """A task for a person in the caller's CRM; `title` and `notes` are Jinja2 templates."""

    type: Literal["create_task"] = "create_task"
    title: str = Field(min_length=1)
    assign_to: Recipient = "owner"
    notes: str | None = None


class SetProperty(DefinitionModel):
    """Set a contact property; setting the stage property moves the contact."""

    type: Literal["set_property"] = "set_property"
    property: str = Field(min_length=1)
    value: Any


class SendNotification(DefinitionModel):
    """An internal notification to "owner", "user:<id>" or "team:<id>"."""

    type: Literal["send_notification"] = "send_notification"
    to: list[Recipient] = Field(min_length=1)
    message: str = Field(min_length=1)


class GoTo(DefinitionModel):
    """Jump to a stage key, `success` or `failure:<value>`."""

    type: Literal["go_to"] = "go_to"
    target: str = Field(min_length=1)


#: Names of branches, paths, splits and variants: they make metrics nodes such as
#: `split:<split>/<variant>`, so no '/'.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/]+$")]


class Path(DefinitionModel):
    """One path of a `branch`: taken when `when` holds; without `go_to`, the stage goes
    on with its next action."""

    name: Name
    when: Criteria
    go_to: str | None = Field(default=None, min_length=1)


class Otherwise(DefinitionModel):
    """Where a `branch` goes when no path holds (without `go_to`: the next action)."""

    go_to: str | None = Field(default=None, min_length=1)


class BranchOn(DefinitionModel):
    """If/then paths: the first path whose `when` holds for the contact now is taken,
    else `otherwise`. A decision of the workflow: no activity."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "branch",
                    "name": "by plan",
                    "paths": [
                        {
                            "name": "enterprise",
                            "when": {"property": "plan", "op": "eq", "value": "enterprise"},
                            "go_to": "sales_assist",
                        },
                        {"name": "engaged", "when": {"event": "page_viewed", "min_count": 3}},
                    ],
                    "otherwise": {"go_to": "nurture"},
                }
            ]
        },
    )

    type: Literal["branch"] = "branch"
    name: Name
    paths: list[Path] = Field(min_length=1, max_length=MAX_PATHS)
    otherwise: Otherwise | None = None
    """None, or no `go_to`: the stage goes on with its next action."""

    @property
    def otherwise_go_to(self) -> str | None:
        return self.otherwise.go_to if self.otherwise is not None else None


class Variant(DefinitionModel):
    """One arm of a `split`: `percent` of the contacts (an integer); a `holdout` variant
    receives nothing more from the journey while its goal is still watched."""

    name: Name
    percent: int = Field(ge=0, le=100)
    go_to: str | None = Field(default=None, min_length=1)
    holdout: bool = False


class Winner(DefinitionModel):
    """When a split has a winner: every variant has `min_per_variant` contacts and one is
    ahead of the baseline with probability `confidence`; with `auto`, new contacts then
    take the winner's path (the holdout keeps its share)."""

    auto: bool = False
    min_per_variant: int = Field(default=200, ge=1, le=1_000_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class Split(DefinitionModel):
    """A random split (an A/B test): each contact draws one variant once, by the
    percentages; replay draws the same. A decision of the workflow: no activity."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "split",
                    "name": "welcome subject",
                    "variants": [
                        {"name": "A", "percent": 45, "go_to": "welcome_a"},
                        {"name": "B", "percent": 45, "go_to": "welcome_b"},
                        {"name": "control", "percent": 10, "holdout": True},
                    ],
                    "winner": {"auto": True, "min_per_variant": 200, "confidence": 0.95},
                }
            ]
        },
    )

    type: Literal["split"] = "split"
    name: Name
    variants: list[Variant] = Field(min_length=2, max_length=MAX_PATHS)
    winner: Winner | None = None


Action = Annotated[
    SendMessage
    | Wait
    | WaitForEvent
    | CreateTask
    | SetProperty
    | SendNotification
    | GoTo
    | BranchOn
    | Split,
    Field(discriminator="type"),
]
ActionType = Literal[
    "send_message", "wait", "wait_for_event", "create_task", "set_property",
    "send_notification", "go_to", "branch", "split",
]  # fmt: skip
#: Tags pydantic puts into error locations of the action union (validation strips them).
ACTION_TYPES: frozenset[str] = frozenset(get_args(ActionType))


# --- stages, ends, goal -------------------------------------------------------------------


class Stage(DefinitionModel):
    key: str
    value: str = Field(min_length=1)
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS_PER_STAGE)

    @field_validator("key", mode="before")
    @classmethod
    def _key_format(cls, key: Any) -> Any:
        if isinstance(key, str) and not _STAGE_KEY.fullmatch(key):
            raise PydanticCustomError(
                "invalid_stage_key",
                "A stage key is 1-64 letters, digits, '_', '-' or '.', starting with a "
                "letter or digit; got {key}.",
                {"key": repr(key)},
            )
        return key


class End(DefinitionModel):
    """An end of the journey: its stage-property value and an optional list to join."""

    value: str = Field(min_length=1)
    add_to_list: str | None = None


class Ends(DefinitionModel):
    success: End
    failure: list[End] = Field(default_factory=list)


class Target(DefinitionModel):
    """The goal's target: exactly one of `{"count": n}` or `{"percent": p}`."""

    count: int | None = Field(default=None, gt=0)
    percent: int | float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.count is None) == (self.percent is None):
            raise PydanticCustomError(
                "invalid_target", 'A goal target is either {"count": n} or {"percent": p}.'
            )
        return self


class Goal(DefinitionModel):
    criteria: Criteria
    target: Target | None = None
    attribution_window: Duration = DEFAULT_ATTRIBUTION_WINDOW
    add_to_list: str | None = Field(default=None, min_length=1)
    """A list every contact counted as a conversion joins (also inside the attribution
    window), to feed other journeys' eligible lists or criteria."""


class ExitOptions(DefinitionModel):
    when_removed_from_eligible_lists: bool = True
    when_stage_matches_end: bool = True


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)


def _time_zone(name: str | None) -> str | None:
    if name is None:
        return None
    from zoneinfo import ZoneInfo  # the system's tz database; no I/O beyond reading it

    try:
        ZoneInfo(name)
    except Exception:
        raise PydanticCustomError(
            "invalid_timezone",
            'Expected an IANA time zone such as "Europe/Berlin" or "UTC", got {name}.',
            {"name": repr(name)},
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_time_zone)]


class SendWindow(DefinitionModel):
    """Quiet hours: messages go out only from `start` to `end` (local time, "HH:MM") on
    `days`, in the contact's `timezone` property, else `timezone` here, else the
    workspace's zone. `end` before `start` is a window across midnight."""

    start: time
    end: time
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SendWindow:
        if self.start == self.end:
            raise PydanticCustomError(
                "empty_send_window", "A send window's start and end must differ."
            )
        return self


class DeliveryOptions(DefinitionModel):
    """How this journey's messages, tasks and notifications go out."""

    send_window: SendWindow | None = None
    """None: the workspace's send window, if it has one."""
    on_failure: Literal["skip", "end"] = "skip"
    """A provider refused for good (4xx other than 429): skip the action and go on, or
    end the enrollment with `delivery_failed`."""
    when_capped: Literal["wait", "skip"] = "wait"
    """The workspace's frequency cap is reached: wait until a marketing message is
    allowed again, or skip the message."""
    tracking: bool = True
    """Opens and clicks of the journey's emails tracked (when the server has a
    tracking secret)."""


class Trigger(DefinitionModel):
    """What enrolls contacts instead of the list/stage rule (docs/design.md, "Triggers"):
    `{"goal_achieved_in": journey_id}`, meeting the goal of that other journey, or
    `{"event": {"type", "target"?, "where"?}}`, an event of the contact (its properties are
    the entry's context)."""

    goal_achieved_in: str | None = Field(default=None, min_length=1)
    event: EventFilter | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        if (self.goal_achieved_in is None) == (self.event is None):
            raise PydanticCustomError(
                "invalid_trigger",
                'A trigger is either {"goal_achieved_in": journey_id} or {"event": {...}}.',
            )
        return self


class Reentry(DefinitionModel):
    """Whether a contact may enter the journey again: `never` (the default), or
    `after_exit`: once its previous entry has left the journey's actions (ended or exited)
    and `cooldown` has passed since, at most `max_entries` times in all."""

    mode: Literal["never", "after_exit"] = "never"
    cooldown: Duration | None = None
    max_entries: int | None = Field(default=None, ge=1, le=1_000_000)


EndKind = Literal["success", "failure"]


@dataclass(frozen=True)
class GoToTarget:
    """A parsed `go_to` target: a stage (`stage_key`), the success end, or a failure end
    (`end_value`)."""

    kind: Literal["stage", "success", "failure"]
    stage_key: str | None = None
    end_value: str | None = None


def resolve_target(target: str) -> GoToTarget:
    """Parses `go_to`/`on_event`/`on_timeout` targets; does not check that they exist
    (`Journey.target_exists` does)."""
    if target == SUCCESS:
        return GoToTarget(kind="success")
    if target.startswith(FAILURE_PREFIX):
        return GoToTarget(kind="failure", end_value=target.removeprefix(FAILURE_PREFIX))
    return GoToTarget(kind="stage", stage_key=target)


# --- the journey --------------------------------------------------------------------------


class Journey(DefinitionModel):
    """A journey definition (one version of it)."""

    name: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1)
    stage_property: str = Field(min_length=1)
    eligible_lists: list[str] = Field(default_factory=list, max_length=MAX_ELIGIBLE_LISTS)
    start_stage: str
    enroll_empty_stage: bool = False
    stages: list[Stage] = Field(min_length=1)
    ends: Ends
    goal: Goal | None = None
    suppression_lists: list[str] = Field(default_factory=list)
    exit: ExitOptions = Field(default_factory=ExitOptions)
    trigger: Trigger | None = None
    """None: contacts enter when their lists and stage property say so (or by the API);
    set: only when they achieve the goal of the named journey (or by the API)."""
    delivery: DeliveryOptions | None = None
    """Send window, failure and frequency-cap handling; None: the defaults."""
    reentry: Reentry | None = None
    """None: a contact enters once, ever (`{"mode": "never"}`)."""

    @property
    def delivery_options(self) -> DeliveryOptions:
        return self.delivery if self.delivery is not None else DeliveryOptions()

    # -- stages and ends

    def stage_by_key(self, key: str) -> Stage:
        """The stage with this key; KeyError if there is none (validation guarantees the
        start stage and every go_to target exist)."""
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise KeyError(f"journey {self.name!r} has no stage {key!r}")

    def stage_by_value(self, value: Any) -> Stage | None:
        """The stage whose value the stage property holds, if any."""
        return next((s for s in self.stages if s.value == value), None)

    def end_for_value(self, value: Any) -> tuple[EndKind, End] | None:
        """The end whose value the stage property holds, if any."""
        if self.ends.success.value == value:
            return "success", self.ends.success
        for end in self.ends.failure:
            if end.value == value:
                return "failure", end
        return None

    def failure_end(self, value: str) -> End | None:
        return next((e for e in self.ends.failure if e.value == value), None)

    def target_exists(self, target: str) -> bool:
        parsed = resolve_target(target)
        if parsed.kind == "success":
            return True
        if parsed.kind == "failure":
            return self.failure_end(parsed.end_value or "") is not None
        return any(s.key == parsed.stage_key for s in self.stages)

    # -- goal

    @property
    def goal_criteria(self) -> Criteria | None:
        """The goal's criteria, or None when the journey has no goal (no conversions)."""
        return self.goal.criteria if self.goal is not None else None

    @property
    def attribution_window(self) -> timedelta:
        return self.goal.attribution_window if self.goal is not None else timedelta(0)

    def criteria_in_use(self) -> list[Criteria]:
        """Every criteria tree an enrollment evaluates: the goal's and each branch path's."""
        trees = [self.goal.criteria] if self.goal is not None else []
        for stage in self.stages:
            for action in stage.actions:
                if isinstance(action, BranchOn):
                    trees.extend(path.when for path in action.paths)
        return trees

    def _leaves_in_use(self) -> list[PropertyLeaf | EventLeaf | ListLeaf]:
        return [leaf for tree in self.criteria_in_use() for leaf in iter_leaves(tree)]

    def counted_event_leaves(self) -> list[EventLeaf]:
        """The event leaves of the goal and the branches, one per counter key: the
        counters `apply_event` keeps."""
        leaves: dict[str, EventLeaf] = {}
        for leaf in self._leaves_in_use():
            if isinstance(leaf, EventLeaf):
                leaves.setdefault(leaf.counter_key(), leaf)
        return list(leaves.values())

    # -- the interest set: what changes an enrollment of this journey must hear about

    def wait_for_event_filters(self) -> list[EventFilter]:
        return [
            action.event
            for stage in self.stages
            for action in stage.actions
            if isinstance(action, WaitForEvent)
        ]

    def event_types(self) -> frozenset[str]:
        """Event types named by the goal criteria and by wait_for_event filters."""
        types = {leaf.event for leaf in self.counted_event_leaves()}
        types.update(f.type for f in self.wait_for_event_filters())
        return frozenset(types)

    def referenced_properties(self) -> frozenset[str]:
        """The stage property and every property the goal and branch criteria read."""
        props = {self.stage_property}
        props.update(
            leaf.property for leaf in self._leaves_in_use() if isinstance(leaf, PropertyLeaf)
        )
        return frozenset(props)

    def referenced_lists(self) -> frozenset[str]:
        """Eligible and suppression lists and every list the goal and branch criteria read."""
        lists = {*self.eligible_lists, *self.suppression_lists}
        lists.update(leaf.list for leaf in self._leaves_in_use() if isinstance(leaf, ListLeaf))
        return frozenset(lists)
