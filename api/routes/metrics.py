"""Journey metrics (DESIGN §6), served from the Postgres read models that the activities
and the triggers of 006_metrics.sql keep current in the transactions that change them.

Without a window every number is a counter read: a handful of index lookups whatever the
number of enrollments. With `?since=&until=` the numbers describe the cohort of contacts
enrolled in that window (refusals: those made in it), read through covering indexes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.errors import ApiError
from api.routes.journeys import fetch_journey
from shared.journey import Goal, Journey
from store import contacts as contacts_store
from store import metrics as metrics_store
from store.db import Queryable

router = APIRouter(prefix="/v1/journeys/{journey_id}/metrics", tags=["metrics"])


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


class StageMetrics(BaseModel):
    key: str
    entered: int
    """Stage entries (a contact that loops back counts once per entry)."""
    active: int
    left: int
    paths: list[PathOut]


class GoalMetrics(BaseModel):
    epoch: int
    enrolled: int
    """Enrollments of this goal epoch: the base of the conversion rate."""
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
    active: int
    in_attribution_window: int
    refused: dict[str, int]
    refused_total: int
    ended: dict[str, Share]
    goal: GoalMetrics | None
    stages: list[StageMetrics]


@dataclass
class Tally:
    """What the metrics are computed from, read from counters or from a cohort."""

    enrolled: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    epoch_enrolled: int = 0
    conversions: int = 0
    entered: Counter[str] = field(default_factory=Counter)
    active: Counter[str] = field(default_factory=Counter)
    paths: dict[str, Counter[str]] = field(default_factory=dict)


def _pct(part: int, whole: int) -> float:
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
        raise ApiError(
            422, "invalid_window", f"{name} must be an ISO-8601 timestamp, got {value!r}."
        ) from None
    if instant.tzinfo is None:
        raise ApiError(
            422, "invalid_window", f"{name} needs a time zone (e.g. Z or +02:00): {value!r}."
        )
    return instant


async def _counters(conn: Queryable, workspace: str, journey_id: str, epoch: int) -> Tally:
    tally = Tally()
    for key, n in await metrics_store.counters(conn, workspace, journey_id):
        kind, _, rest = key.partition(":")
        if kind == "enrolled":
            tally.enrolled = n
        elif kind == "status":
            tally.by_status[rest] = n
        elif kind == "ended":
            tally.ended[rest] = n
        elif kind == "refused":
            tally.refused[rest] = n
        elif key == f"epoch:{epoch}:enrolled":
            tally.epoch_enrolled = n
        elif key == f"epoch:{epoch}:conversions":
            tally.conversions = n
    for r in await metrics_store.stages(conn, workspace, journey_id):
        tally.entered[r["stage"]], tally.active[r["stage"]] = r["entered"], r["active"]
    for r in await metrics_store.paths(conn, workspace, journey_id):
        tally.paths.setdefault(r["from_stage"], Counter())[r["to_node"]] = r["count"]
    return tally


async def _cohort(
    conn: Queryable, workspace: str, journey_id: str, epoch: int, window: Window
) -> Tally:
    tally = Tally()
    bounds = (workspace, journey_id, window.since, window.until)
    for r in await metrics_store.cohort(conn, bounds):
        n = r["n"]
        tally.enrolled += n
        tally.by_status[r["status"]] += n
        if r["outcome"] is not None:
            tally.ended[r["outcome"]] += n
        if r["goal_epoch"] == epoch:
            tally.epoch_enrolled += n
        if r["status"] == "running" and r["stage"] is not None:
            tally.active[r["stage"]] += n
    tally.conversions = await metrics_store.cohort_conversions(conn, bounds, epoch)
    for r in await metrics_store.cohort_refusals(conn, bounds):
        tally.refused[r["reason"]] = r["n"]
    for r in await metrics_store.cohort_moves(conn, bounds):
        tally.entered[r["to_node"]] += r["n"]
        if r["from_stage"] is not None:
            tally.paths.setdefault(r["from_stage"], Counter())[r["to_node"]] += r["n"]
    return tally


async def _eligible(conn: Queryable, workspace: str, journey: Journey) -> int:
    """Contacts now in the journey's eligible lists (every contact when it has none)."""
    lists = journey.eligible_lists
    if not lists:
        n = await metrics_store.contacts(conn, workspace)
    elif len(lists) == 1:
        n = await metrics_store.list_size(conn, workspace, lists[0])
    else:
        n = await contacts_store.in_any_list(conn, workspace, lists)
    return int(n)


def goal_metrics(goal: Goal, epoch: int, enrolled: int, conversions: int) -> GoalMetrics:
    """The conversion rate against the goal's target (if it has one): met or not, how far."""
    metrics = GoalMetrics(
        epoch=epoch,
        enrolled=enrolled,
        conversions=conversions,
        conversion_rate=_pct(conversions, enrolled),
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


def _stages(journey: Journey, tally: Tally) -> list[StageMetrics]:
    keys = [stage.key for stage in journey.stages]
    # stages an earlier version had and this one dropped still show what happened there
    keys += sorted((set(tally.entered) | set(tally.paths)) - set(keys) - _end_nodes(tally))
    stages = []
    for key in keys:
        out = tally.paths.get(key, Counter())
        left = sum(out.values())
        paths = [PathOut(to=to, count=n, percent=_pct(n, left)) for to, n in sorted(out.items())]
        stages.append(
            StageMetrics(
                key=key,
                entered=tally.entered[key],
                active=tally.active[key],
                left=left,
                paths=[p for p in paths if p.count],
            )
        )
    return stages


def _end_nodes(tally: Tally) -> set[str]:
    return {node for node in tally.entered if node.startswith(("end:", "exit:"))}


@router.get("", operation_id="journey_metrics")
async def journey_metrics(
    journey_id: str,
    pool: PoolDep,
    workspace: WorkspaceDep,
    since: str | None = None,
    until: str | None = None,
) -> JourneyMetrics:
    """Eligible, enrolled, active, refused by reason, ended by outcome, the goal against
    its target, and per stage: entered, active now and every path out. `since`/`until`
    (ISO-8601 with a time zone) narrow it to the contacts enrolled in that window."""
    start, end = parse_instant("since", since), parse_instant("until", until)
    if start is not None and end is not None and start >= end:
        raise ApiError(422, "invalid_window", "since must be earlier than until.")
    window = Window(since=start, until=end) if start or end else None
    async with pool.acquire() as conn:
        row = await fetch_journey(conn, workspace, journey_id)
        journey = Journey.model_validate(row["definition"])
        epoch = row["goal_epoch"]
        if window is None:
            tally = await _counters(conn, workspace, journey_id, epoch)
        else:
            tally = await _cohort(conn, workspace, journey_id, epoch, window)
        eligible = await _eligible(conn, workspace, journey)
    goal = None
    if journey.goal is not None:
        goal = goal_metrics(journey.goal, epoch, tally.epoch_enrolled, tally.conversions)
    return JourneyMetrics(
        journey_id=journey_id,
        window=window,
        eligible=eligible,
        enrolled=tally.enrolled,
        active=tally.by_status["running"],
        in_attribution_window=tally.by_status["in_attribution_window"],
        refused={k: n for k, n in sorted(tally.refused.items()) if n},
        refused_total=sum(tally.refused.values()),
        ended={
            k: Share(count=n, percent=_pct(n, tally.enrolled))
            for k, n in sorted(tally.ended.items())
            if n
        },
        goal=goal,
        stages=_stages(journey, tally),
    )
