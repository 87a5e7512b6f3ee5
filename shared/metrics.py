"""Journey metrics from their tallies: percentages, the goal against its target, every
stage's paths out (docs/design.md, "Metrics"). Pure: `store.metrics` reads a `Tally` from
the read models (counters, or a cohort of enrollment dates); these shape the answer."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from shared.engagement_metrics import MessagePerformance
from shared.errors import Invalid
from shared.experiment_metrics import ExperimentMetrics
from shared.journey import Goal, Journey


class Window(BaseModel):
    since: datetime | None
    until: datetime | None


class Share(BaseModel):
    count: int
    percent: float


class PathOut(BaseModel):
    to: str
    """A stage key, `end:success`, `end:failure:<value>` or `exit:<outcome>`."""
    count: int
    percent: float
    """Of those who left the stage."""


class DecisionOut(BaseModel):
    node: str
    """`branch:<branch>/<path>` or `split:<split>/<variant>`."""
    count: int
    percent: float
    """Of those who took that branch or split in this stage."""


class StageMetrics(BaseModel):
    key: str
    entered: int
    """Stage entries (a contact that loops back counts once per entry)."""
    active: int
    left: int
    paths: list[PathOut]
    decisions: list[DecisionOut] = []
    """Every branch path and split variant taken in the stage (`otherwise` included)."""


class GoalMetrics(BaseModel):
    epoch: int
    enrolled: int
    """Contacts (unique profiles) enrolled in this goal epoch: the base of the rate."""
    conversions: int
    conversion_rate: float
    target: dict[str, float] | None = None
    target_met: bool | None = None
    progress: float | None = None
    """How far towards the target, in percent of it (100 = met; may exceed 100)."""
    conversions_needed: int | None = None
    """More conversions that would meet the target, at the current enrollment count."""


class JourneyMetrics(BaseModel):
    journey_id: str
    window: Window | None
    eligible: int
    enrolled: int
    """Entries: a contact that entered a repeating journey three times counts 3."""
    entries: int
    """The same as `enrolled`, named for repeating journeys."""
    unique_profiles: int
    """Contacts that entered at least once: the base of the goal's conversion rate."""
    active: int
    in_attribution_window: int
    refused: dict[str, int]
    refused_total: int
    ended: dict[str, Share]
    """By outcome (`success`, `failure`, `goal_met`, `suppressed`, ...)."""
    ends: dict[str, Share]
    """Every end of the journey, reached or not: `end:success`, `end:failure:<value>`."""
    exits: dict[str, Share]
    """Every exit taken: `exit:<outcome>`. With `ends`, the sums of the stages' paths."""
    goal: GoalMetrics | None
    stages: list[StageMetrics]
    experiments: list[ExperimentMetrics] = []
    """Every split: its variants' figures against the baseline, and the winner."""
    messages: list[MessagePerformance] = []
    """Every message sent (stage, template, variant): sends, opens and clicks by people
    and by machines, unsubscribes, conversions."""


@dataclass
class Tally:
    """What the metrics are computed from, read from counters or from a cohort."""

    enrolled: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    epoch_enrolled: int = 0
    profiles: int = 0
    epoch_profiles: int = 0
    conversions: int = 0
    entered: Counter[str] = field(default_factory=Counter)
    active: Counter[str] = field(default_factory=Counter)
    paths: dict[str, Counter[str]] = field(default_factory=dict)


def pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def parse_instant(name: str, value: str | None) -> datetime | None:
    """An ISO-8601 timestamp with a time zone; 422 `invalid_window` otherwise."""
    if value is None or value == "":
        return None
    # An unencoded '+' of an offset arrives as a space.
    text = value.replace(" ", "+") if "T" in value else value
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            "invalid_window", f"{name} must be an ISO-8601 timestamp, got {value!r}."
        ) from None
    if instant.tzinfo is None:
        raise Invalid("invalid_window", f"{name} needs a time zone (e.g. Z or +02:00): {value!r}.")
    return instant


def window_of(since: str | None, until: str | None) -> Window | None:
    """The cohort window `?since=&until=` asks for, None for all enrollments."""
    start, end = parse_instant("since", since), parse_instant("until", until)
    if start is not None and end is not None and start >= end:
        raise Invalid("invalid_window", "since must be earlier than until.")
    return Window(since=start, until=end) if start or end else None


def goal_metrics(goal: Goal, epoch: int, enrolled: int, conversions: int) -> GoalMetrics:
    """The conversion rate against the goal's target (if it has one): met or not, how far."""
    metrics = GoalMetrics(
        epoch=epoch,
        enrolled=enrolled,
        conversions=conversions,
        conversion_rate=pct(conversions, enrolled),
    )
    target = goal.target
    if target is None:
        return metrics
    if target.count is not None:
        wanted = target.count
        progress = 100.0 * conversions / wanted
    else:
        percent = float(target.percent or 0)
        # the smallest count whose rate reaches the target (exact for 2-decimal percents)
        wanted = max(1, math.ceil(round(percent * enrolled, 6) / 100))
        progress = 100.0 * conversions / enrolled / percent * 100 if enrolled else 0.0
    needed = max(0, wanted - conversions)
    return metrics.model_copy(
        update={
            "target": target.model_dump(exclude_none=True),
            "target_met": needed == 0,
            "progress": round(progress, 2),
            "conversions_needed": needed,
        }
    )


def stage_metrics(journey: Journey, tally: Tally) -> list[StageMetrics]:
    keys = [stage.key for stage in journey.stages]
    # stages an earlier version had and this one dropped still show what happened there
    keys += sorted((set(tally.entered) | set(tally.paths)) - set(keys) - _end_nodes(tally))
    stages = []
    for key in keys:
        every = tally.paths.get(key, Counter())
        out = Counter({n: c for n, c in every.items() if not n.startswith(DECISIONS)})
        left = sum(out.values())
        paths = [PathOut(to=to, count=n, percent=pct(n, left)) for to, n in sorted(out.items())]
        stages.append(
            StageMetrics(
                key=key,
                entered=tally.entered[key],
                active=tally.active[key],
                left=left,
                paths=[p for p in paths if p.count],
                decisions=_decisions(every),
            )
        )
    return stages


DECISIONS = ("branch:", "split:")


def _decisions(out: Counter[str]) -> list[DecisionOut]:
    """Branch paths and split variants, each in % of its own branch or split."""
    taken = {n: c for n, c in out.items() if n.startswith(DECISIONS) and c}
    per: Counter[str] = Counter()
    for node, n in taken.items():
        per[node.rsplit("/", 1)[0]] += n
    return [
        DecisionOut(node=node, count=n, percent=pct(n, per[node.rsplit("/", 1)[0]]))
        for node, n in sorted(taken.items())
    ]


def _end_nodes(tally: Tally) -> set[str]:
    return {node for node in tally.entered if node.startswith(("end:", "exit:", *DECISIONS))}


def journey_metrics(
    journey_id: str,
    journey: Journey,
    epoch: int,
    tally: Tally,
    eligible: int,
    window: Window | None,
) -> JourneyMetrics:
    """The metrics of a journey (or of the cohort `window` selects) from its tally."""
    goal = None
    if journey.goal is not None:
        # conversions count unique profiles: so does the base of their rate
        goal = goal_metrics(journey.goal, epoch, tally.epoch_profiles, tally.conversions)
    ends, exits = left_by_node(journey, tally)
    return JourneyMetrics(
        journey_id=journey_id,
        window=window,
        eligible=eligible,
        enrolled=tally.enrolled,
        entries=tally.enrolled,
        unique_profiles=tally.profiles,
        active=tally.by_status["running"],
        in_attribution_window=tally.by_status["in_attribution_window"],
        refused={k: n for k, n in sorted(tally.refused.items()) if n},
        refused_total=sum(tally.refused.values()),
        ended={
            k: Share(count=n, percent=pct(n, tally.enrolled))
            for k, n in sorted(tally.ended.items())
            if n
        },
        ends={node: Share(count=n, percent=pct(n, tally.enrolled)) for node, n in ends.items()},
        exits={node: Share(count=n, percent=pct(n, tally.enrolled)) for node, n in exits.items()},
        goal=goal,
        stages=stage_metrics(journey, tally),
    )


def left_by_node(journey: Journey, tally: Tally) -> tuple[dict[str, int], dict[str, int]]:
    """(ends, exits): how many enrollments left by each end and each exit, summed over the
    stages they left from, so they agree with the stages' paths. Every end of the journey
    is listed, reached or not; exits only when taken."""
    reached: Counter[str] = Counter()
    for out in tally.paths.values():
        for node, n in out.items():
            if node.startswith(("end:", "exit:")):
                reached[node] += n
    ends = {"end:success": 0, **{f"end:failure:{end.value}": 0 for end in journey.ends.failure}}
    exits: dict[str, int] = {}
    for node, n in sorted(reached.items()):
        if node.startswith("end:"):
            ends[node] = n
        elif n:
            exits[node] = n
    return ends, exits
