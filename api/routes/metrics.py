"""Journey metrics, served from the Postgres read models the activities keep current."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.routes.journeys import fetch_journey
from shared.journey import Journey

router = APIRouter(prefix="/v1/journeys/{journey_id}/metrics", tags=["metrics"])

ENROLLMENT_COUNTS = """
SELECT count(*) AS enrolled,
       count(*) FILTER (WHERE status = 'running') AS active
FROM enrollments WHERE workspace = $1 AND journey_id = $2
"""
ENDED_BY_OUTCOME = """
SELECT outcome, count(*) AS n FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND outcome IS NOT NULL GROUP BY outcome
"""
REFUSED_BY_REASON = """
SELECT reason, count(*) AS n FROM refusals WHERE workspace = $1 AND journey_id = $2
GROUP BY reason
"""
ELIGIBLE = """
SELECT count(DISTINCT contact_id) FROM list_members WHERE workspace = $1 AND list = ANY($2)
"""
ALL_CONTACTS = "SELECT count(*) FROM contacts WHERE workspace = $1"
CONVERSIONS = """
SELECT count(*) FROM conversions WHERE workspace = $1 AND journey_id = $2 AND goal_epoch = $3
"""
STAGES = "SELECT stage, entered, active FROM stage_stats WHERE workspace = $1 AND journey_id = $2"
PATHS = """
SELECT from_stage, to_node, count FROM stage_paths WHERE workspace = $1 AND journey_id = $2
"""


class Share(BaseModel):
    count: int
    percent: float


class PathOut(BaseModel):
    to: str
    count: int
    percent: float


class StageMetrics(BaseModel):
    key: str
    entered: int
    active: int
    paths: list[PathOut]


class GoalMetrics(BaseModel):
    conversions: int
    conversion_rate: float
    target: dict[str, float] | None
    target_met: bool | None
    remaining: float | None


class JourneyMetrics(BaseModel):
    journey_id: str
    eligible: int
    enrolled: int
    active: int
    refused: dict[str, int]
    ended: dict[str, Share]
    goal: GoalMetrics | None
    stages: list[StageMetrics]


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


@router.get("", operation_id="journey_metrics")
async def journey_metrics(
    journey_id: str, pool: PoolDep, workspace: WorkspaceDep
) -> JourneyMetrics:
    """Eligible, enrolled, active, refused, ended by outcome, goal and per-stage paths."""
    row = await fetch_journey(pool, workspace, journey_id)
    journey = Journey.model_validate(row["definition"])
    goal_epoch = await pool.fetchval(
        "SELECT goal_epoch FROM journeys WHERE workspace = $1 AND id = $2", workspace, journey_id
    )
    counts = await pool.fetchrow(ENROLLMENT_COUNTS, workspace, journey_id)
    assert counts is not None
    enrolled = counts["enrolled"]
    ended = {
        r["outcome"]: Share(count=r["n"], percent=_pct(r["n"], enrolled))
        for r in await pool.fetch(ENDED_BY_OUTCOME, workspace, journey_id)
    }
    refused = {
        r["reason"]: r["n"] for r in await pool.fetch(REFUSED_BY_REASON, workspace, journey_id)
    }
    if journey.eligible_lists:
        eligible = await pool.fetchval(ELIGIBLE, workspace, journey.eligible_lists)
    else:
        eligible = await pool.fetchval(ALL_CONTACTS, workspace)
    goal = None
    if journey.goal is not None:
        conversions = await pool.fetchval(CONVERSIONS, workspace, journey_id, goal_epoch)
        target = journey.goal.target.model_dump(exclude_none=True) if journey.goal.target else None
        rate = _pct(conversions, enrolled)
        met: bool | None = None
        remaining: float | None = None
        if target and "count" in target:
            met, remaining = conversions >= target["count"], max(0, target["count"] - conversions)
        elif target and "percent" in target:
            met, remaining = rate >= target["percent"], max(0.0, target["percent"] - rate)
        goal = GoalMetrics(
            conversions=conversions,
            conversion_rate=rate,
            target=target,
            target_met=met,
            remaining=remaining,
        )
    paths: dict[str, list[tuple[str, int]]] = {}
    for r in await pool.fetch(PATHS, workspace, journey_id):
        paths.setdefault(r["from_stage"], []).append((r["to_node"], r["count"]))
    stats = {r["stage"]: r for r in await pool.fetch(STAGES, workspace, journey_id)}
    stages = []
    for stage in journey.stages:
        stat = stats.get(stage.key)
        out = paths.get(stage.key, [])
        left = sum(n for _, n in out)
        stages.append(
            StageMetrics(
                key=stage.key,
                entered=stat["entered"] if stat else 0,
                active=stat["active"] if stat else 0,
                paths=[PathOut(to=to, count=n, percent=_pct(n, left)) for to, n in sorted(out)],
            )
        )
    return JourneyMetrics(
        journey_id=journey_id,
        eligible=eligible,
        enrolled=enrolled,
        active=counts["active"],
        refused=refused,
        ended=ended,
        goal=goal,
        stages=stages,
    )
