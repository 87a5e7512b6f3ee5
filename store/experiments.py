"""Experiments' read models (016_experiments.sql): who drew which variant of a split,
who met the goal, the counters per variant, and declared winners."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from store.db import Queryable

ASSIGN = """
INSERT INTO experiment_assignments
    (workflow_id, split, workspace, journey_id, version, variant, holdout, assigned_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
"""

COUNT = """
INSERT INTO experiment_stats AS s
    (workspace, journey_id, split, variant, entered, converted, counted)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace, journey_id, split, variant) DO UPDATE
SET entered = s.entered + $5, converted = s.converted + $6, counted = s.counted + $7
"""

# Marks every split the enrollment drew; each once (its first goal met).
CONVERTED = """
UPDATE experiment_assignments SET converted_at = $2, counted = $3
WHERE workflow_id = $1 AND converted_at IS NULL
RETURNING workspace, journey_id, split, variant, version
"""

STATS = """
SELECT variant, entered, converted, counted FROM experiment_stats
WHERE workspace = $1 AND journey_id = $2 AND split = $3
"""

# Per split and variant over the assignments a window (assigned_at) and a version select.
FIGURES = """
SELECT split, variant, count(*) AS entered, count(converted_at) AS converted,
       count(*) FILTER (WHERE counted) AS counted
FROM experiment_assignments
WHERE workspace = $1 AND journey_id = $2
  AND ($3::timestamptz IS NULL OR assigned_at >= $3)
  AND ($4::timestamptz IS NULL OR assigned_at < $4)
  AND ($5::int IS NULL OR version = $5)
GROUP BY 1, 2
"""

ALL_STATS = """
SELECT split, variant, entered, converted, counted FROM experiment_stats
WHERE workspace = $1 AND journey_id = $2
"""

DECLARE = """
INSERT INTO experiment_winners (workspace, journey_id, split, variant, version, figures)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
"""

WINNERS = """
SELECT split, variant, version, declared_at, figures FROM experiment_winners
WHERE workspace = $1 AND journey_id = $2 ORDER BY declared_at, split
"""


async def assign(
    conn: Queryable,
    workflow_id: str,
    split: str,
    ws: str,
    journey_id: str,
    version: int,
    variant: str,
    holdout: bool,
    at: datetime,
) -> bool:
    """Records the draw (once per enrollment and split); True when it is new."""
    done = await conn.execute(
        ASSIGN, workflow_id, split, ws, journey_id, version, variant, holdout, at
    )
    if done.endswith(" 0"):
        return False
    await conn.execute(COUNT, ws, journey_id, split, variant, 1, 0, 0)
    return True


async def converted(
    conn: Queryable, workflow_id: str, at: datetime, counted: bool
) -> list[asyncpg.Record]:
    """The enrollment met the goal: each split it drew counts it once (workspace,
    journey_id, split, variant of those marked now)."""
    rows = await conn.fetch(CONVERTED, workflow_id, at, counted)
    for r in rows:
        await conn.execute(
            COUNT, r["workspace"], r["journey_id"], r["split"], r["variant"], 0, 1, int(counted)
        )
    return rows


async def stats(conn: Queryable, ws: str, journey_id: str, split: str) -> list[asyncpg.Record]:
    return await conn.fetch(STATS, ws, journey_id, split)


async def figures(
    conn: Queryable,
    ws: str,
    journey_id: str,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
) -> list[asyncpg.Record]:
    """split, variant, entered, converted, counted: from the counters when nothing narrows
    them, else from the assignments."""
    if since is None and until is None and version is None:
        return await conn.fetch(ALL_STATS, ws, journey_id)
    return await conn.fetch(FIGURES, ws, journey_id, since, until, version)


async def declare(
    conn: Queryable, ws: str, journey_id: str, split: str, variant: str, version: int, data: Any
) -> bool:
    """Records the winner unless one was declared before; True when this declared it."""
    done = await conn.execute(DECLARE, ws, journey_id, split, variant, version, data)
    return done.endswith(" 1")


async def winners(conn: Queryable, ws: str, journey_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(WINNERS, ws, journey_id)


IS_DECLARED = """
SELECT EXISTS (SELECT 1 FROM experiment_winners
               WHERE workspace = $1 AND journey_id = $2 AND split = $3)
"""


async def is_declared(conn: Queryable, ws: str, journey_id: str, split: str) -> bool:
    return bool(await conn.fetchval(IS_DECLARED, ws, journey_id, split))
