"""Journey metrics: counters and cohorts read from the Postgres read models that the
activities and the triggers of 006_metrics.sql keep current in the transactions that
change them (`store.metrics`), shaped by `shared.metrics`.

Without a window every number is a counter read: a handful of index lookups whatever the
number of enrollments; `eligible` (the entry rule over the eligible lists' members now)
is counted at most once per `NURTURE_METRICS_ELIGIBLE_SECONDS` per journey. With
`?since=&until=` the numbers describe the cohort of contacts enrolled in that window
(refusals: those made in it), read through covering indexes.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import PoolDep, SettingsDep, WorkspaceDep
from api.ingest import JourneyIdPath
from services import audience, experiments, journeys
from shared.engagement_metrics import message_figures
from shared.journey import Journey
from shared.metrics import JourneyMetrics, Window, journey_metrics, window_of
from shared.settings import Settings
from store import metrics as metrics_store
from store import tracking as tracking_store

router = APIRouter(prefix="/v1/journeys/{journey_id}/metrics", tags=["metrics"])


@router.get("", operation_id="journey_metrics", summary="A journey's metrics")
async def get_metrics(
    journey_id: JourneyIdPath,
    request: Request,
    pool: PoolDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    since: str | None = None,
    until: str | None = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> JourneyMetrics:
    """Eligible, enrolled, active, refused by reason, ended by outcome, the goal against
    its target, per stage: entered, active now, every path out and every branch path and
    split variant taken, and every split's experiment figures. `since`/`until` (ISO-8601
    with a time zone) narrow it to the contacts enrolled in that window; `version` narrows
    the experiments to the contacts that drew on that version."""
    cache = request.app.state.eligible_cache
    window = window_of(since, until)
    async with pool.acquire() as conn:
        return await journey_metrics_of(
            conn, settings, cache, workspace, journey_id, window, version
        )


async def journey_metrics_of(
    conn: Any,
    settings: Settings,
    cache: dict[tuple[str, str, int], tuple[int, float]],
    workspace: str,
    journey_id: str,
    window: Window | None,
    version: int | None = None,
    shown: Journey | None = None,
) -> JourneyMetrics:
    """The metrics of a journey, as `GET …/metrics` answers them (the web view too, which
    may lay the stages out as an earlier version had them: `shown`)."""
    row = await journeys.get(conn, workspace, journey_id)
    journey = Journey.model_validate(row["definition"])
    epoch = row["goal_epoch"]
    if window is None:
        tally = await metrics_store.tally(conn, workspace, journey_id, epoch)
    else:
        tally = await metrics_store.cohort_tally(conn, workspace, journey_id, epoch, window)
    # counting the audience reads every member of the eligible lists: at most once per
    # NURTURE_METRICS_ELIGIBLE_SECONDS per journey version and process
    key, now = (workspace, journey_id, row["version"]), time.monotonic()
    cached = cache.get(key)
    if cached is not None and cached[1] > now:
        eligible = cached[0]
    else:
        eligible = await audience.count_matching(conn, workspace, journey)
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = (eligible, now + settings.metrics_eligible_seconds)
    bounds = (window.since, window.until) if window is not None else (None, None)
    tested = await experiments.metrics(conn, workspace, journey_id, journey, *bounds, version)
    sent = await tracking_store.performance(conn, workspace, journey_id, None)
    answer = journey_metrics(journey_id, shown or journey, epoch, tally, eligible, window)
    answer.experiments = tested
    answer.messages = [message_figures(r) for r in sent]
    return answer
