"""The read models the metrics read, and the journey's conversions. Stage entries, paths
and dated stage moves are written with the log records (020_record_steps.sql)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg

from shared.metrics import Tally
from shared.metrics import Window as MetricsWindow
from store.db import Queryable

# The window's bounds are inclusive of `since` and exclusive of `until`; NULL is open.
IN_WINDOW = "($3::timestamptz IS NULL OR {col} >= $3) AND ($4::timestamptz IS NULL OR {col} < $4)"


INSERT_CONVERSION = """
INSERT INTO conversions (workspace, journey_id, contact_id, goal_epoch, converted_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""


LATEST_CONVERSION = """
SELECT max(converted_at) FROM conversions
WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
"""


async def converted_at(
    conn: Queryable, workspace: str, journey_id: str, contact_id: str
) -> datetime | None:
    """When the journey last counted the contact as a conversion, None if it never did."""
    found: datetime | None = await conn.fetchval(
        LATEST_CONVERSION, workspace, journey_id, contact_id
    )
    return found


async def insert_conversion(
    conn: Queryable, workspace: Any, journey_id: Any, contact_id: Any, goal_epoch: Any, at: Any
) -> str:
    return await conn.execute(INSERT_CONVERSION, workspace, journey_id, contact_id, goal_epoch, at)


COUNTERS = "SELECT key, n FROM journey_counters WHERE workspace = $1 AND journey_id = $2"


LIST_MEMBERS = """
SELECT coalesce(sum(members), 0) FROM list_counters WHERE workspace = $1 AND list = $2
"""


STAGES = "SELECT stage, entered, active FROM stage_stats WHERE workspace = $1 AND journey_id = $2"


PATHS = """
SELECT from_stage, to_node, count FROM stage_paths WHERE workspace = $1 AND journey_id = $2
"""


COHORT_MOVES = f"""
SELECT from_stage, to_node, count(*) AS n FROM stage_moves
WHERE workspace = $1 AND journey_id = $2 AND {IN_WINDOW.format(col="enrolled_at")}
GROUP BY 1, 2
"""


COHORT = f"""
SELECT status, outcome, stage, goal_epoch, count(*) AS n FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND {IN_WINDOW.format(col="enrolled_at")}
GROUP BY 1, 2, 3, 4
"""


COHORT_CONVERSIONS = f"""
SELECT count(*) FROM enrollments e
JOIN conversions c ON c.workspace = e.workspace AND c.journey_id = e.journey_id
                  AND c.contact_id = e.contact_id AND c.goal_epoch = $5
WHERE e.workspace = $1 AND e.journey_id = $2 AND {IN_WINDOW.format(col="e.enrolled_at")}
"""


COHORT_PROFILES = f"""
SELECT count(DISTINCT contact_id) AS profiles,
       count(DISTINCT contact_id) FILTER (WHERE goal_epoch = $5) AS epoch_profiles
FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND {IN_WINDOW.format(col="enrolled_at")}
"""


COHORT_REFUSALS = f"""
SELECT reason, count(*) AS n FROM refusals
WHERE workspace = $1 AND journey_id = $2 AND {IN_WINDOW.format(col="refused_at")}
GROUP BY 1
"""


Window = tuple[str, str, datetime | None, datetime | None]
"""(workspace, journey id, since, until): a cohort of enrollment dates; None is open."""


async def counters(conn: Queryable, workspace: str, journey_id: str) -> list[asyncpg.Record]:
    """key, n: the journey's counters (enrolled, refused:<reason>, ended:<outcome>, ...)."""
    return await conn.fetch(COUNTERS, workspace, journey_id)


async def stages(conn: Queryable, workspace: str, journey_id: str) -> list[asyncpg.Record]:
    """stage, entered, active."""
    return await conn.fetch(STAGES, workspace, journey_id)


async def paths(conn: Queryable, workspace: str, journey_id: str) -> list[asyncpg.Record]:
    """from_stage, to_node, count."""
    return await conn.fetch(PATHS, workspace, journey_id)


async def cohort(conn: Queryable, window: Window) -> list[asyncpg.Record]:
    """status, outcome, stage, goal_epoch, n: the cohort's enrollments, grouped."""
    return await conn.fetch(COHORT, *window)


async def cohort_conversions(conn: Queryable, window: Window, epoch: int) -> int:
    return int(await conn.fetchval(COHORT_CONVERSIONS, *window, epoch))


async def cohort_refusals(conn: Queryable, window: Window) -> list[asyncpg.Record]:
    """reason, n."""
    return await conn.fetch(COHORT_REFUSALS, *window)


async def cohort_moves(conn: Queryable, window: Window) -> list[asyncpg.Record]:
    """from_stage, to_node, n."""
    return await conn.fetch(COHORT_MOVES, *window)


async def list_size(conn: Queryable, workspace: str, list_name: str) -> int:
    """Members of one list (from its counters)."""
    return int(await conn.fetchval(LIST_MEMBERS, workspace, list_name))


# --- tallies for shared.metrics ----------------------------------------------------------


async def tally(conn: Queryable, workspace: str, journey_id: str, epoch: int) -> Tally:
    """The journey's counters: a handful of index lookups whatever its size."""
    tally = Tally()
    for key, n in await counters(conn, workspace, journey_id):
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
        elif key == "profiles":
            tally.profiles = n
        elif key == f"epoch:{epoch}:profiles":
            tally.epoch_profiles = n
        elif key == f"epoch:{epoch}:conversions":
            tally.conversions = n
    for r in await stages(conn, workspace, journey_id):
        tally.entered[r["stage"]], tally.active[r["stage"]] = r["entered"], r["active"]
    for r in await paths(conn, workspace, journey_id):
        tally.paths.setdefault(r["from_stage"], Counter())[r["to_node"]] = r["count"]
    return tally


async def cohort_tally(
    conn: Queryable, workspace: str, journey_id: str, epoch: int, window: MetricsWindow
) -> Tally:
    """The tally of the contacts enrolled in `window` (refusals: made in it)."""
    tally = Tally()
    bounds = (workspace, journey_id, window.since, window.until)
    for r in await cohort(conn, bounds):
        n = r["n"]
        tally.enrolled += n
        tally.by_status[r["status"]] += n
        if r["outcome"] is not None:
            tally.ended[r["outcome"]] += n
        if r["goal_epoch"] == epoch:
            tally.epoch_enrolled += n
        if r["status"] == "running" and r["stage"] is not None:
            tally.active[r["stage"]] += n
    tally.conversions = await cohort_conversions(conn, bounds, epoch)
    profiles = await conn.fetchrow(COHORT_PROFILES, *bounds, epoch)
    if profiles is not None:
        tally.profiles, tally.epoch_profiles = profiles["profiles"], profiles["epoch_profiles"]
    for r in await cohort_refusals(conn, bounds):
        tally.refused[r["reason"]] = r["n"]
    for r in await cohort_moves(conn, bounds):
        tally.entered[r["to_node"]] += r["n"]
        if r["from_stage"] is not None:
            tally.paths.setdefault(r["from_stage"], Counter())[r["to_node"]] += r["n"]
    return tally
