"""Journeys and their versions (`journeys`, `journey_versions`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import asyncpg

from store.db import Queryable

WORKSPACE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nurture.journeys:' || $1))"

JOURNEY_COLUMNS = """
id, name, owner, status, version, ever_active, goal_epoch, definition, created_at, updated_at
"""

SELECT_JOURNEY = f"SELECT {JOURNEY_COLUMNS} FROM journeys WHERE workspace = $1 AND id = $2"

# $2, $3: the (created_at, id) the page starts after; NULL for the first page
SELECT_JOURNEYS = f"""
SELECT {JOURNEY_COLUMNS} FROM journeys
WHERE workspace = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id LIMIT $4
"""

SELECT_ACTIVE_JOURNEYS = f"""
SELECT workspace, {JOURNEY_COLUMNS} FROM journeys
WHERE workspace = ANY($1::text[]) AND status = 'active'
"""

INSERT_JOURNEY = """
INSERT INTO journeys (workspace, id, name, owner, definition) VALUES ($1, $2, $3, $4, $5)
"""

INSERT_VERSION = """
INSERT INTO journey_versions (workspace, journey_id, version, definition, changed_by, changes)
VALUES ($1, $2, $3, $4, $5, $6)
"""

UPDATE_DEFINITION = """
UPDATE journeys SET name = $3, owner = $4, definition = $5, version = $6, goal_epoch = $7,
                    updated_at = now()
WHERE workspace = $1 AND id = $2
"""

SET_STATUS = """
UPDATE journeys SET status = $3, ever_active = ever_active OR $3 = 'active', updated_at = now()
WHERE workspace = $1 AND id = $2
"""

DELETE_JOURNEY = "DELETE FROM journeys WHERE workspace = $1 AND id = $2"

DELETE_VERSIONS = "DELETE FROM journey_versions WHERE workspace = $1 AND journey_id = $2"

COUNT_BY_OWNER = """
SELECT count(*) FROM journeys WHERE workspace = $1 AND owner = $2 AND id <> $3
"""

COUNT_IN_WORKSPACE = "SELECT count(*) FROM journeys WHERE workspace = $1 AND id <> $2"

ACTIVE_AUDIENCES = """
SELECT id, definition -> 'eligible_lists' AS lists, definition ->> 'stage_property' AS property
FROM journeys WHERE workspace = $1 AND status = 'active' AND id <> $2
ORDER BY id
"""

SELECT_VERSIONS = """
SELECT v.version, v.changed_by, v.changed_at, v.changes,
       count(e.contact_id) AS enrolled,
       count(e.contact_id) FILTER (WHERE e.status <> 'completed') AS open
FROM journey_versions v
LEFT JOIN enrollments e
       ON e.workspace = v.workspace AND e.journey_id = v.journey_id
      AND e.journey_version = v.version
WHERE v.workspace = $1 AND v.journey_id = $2
GROUP BY v.version, v.changed_by, v.changed_at, v.changes
ORDER BY v.version
"""

SELECT_VERSION = """
SELECT version, changed_by, changed_at, changes, definition FROM journey_versions
WHERE workspace = $1 AND journey_id = $2 AND version = $3
"""

VERSIONS_BY_KEY = """
SELECT workspace, journey_id, version, definition FROM journey_versions
WHERE (workspace, journey_id, version) IN (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
)
"""


async def lock_workspace(conn: Queryable, workspace: str) -> None:
    """Serialises the workspace's journey limit checks until the transaction ends."""
    await conn.execute(WORKSPACE_LOCK, workspace)


async def journey(
    conn: Queryable, workspace: str, journey_id: str, lock: Literal["", "update", "share"] = ""
) -> asyncpg.Record | None:
    """The journey's row (JOURNEY_COLUMNS), locked FOR UPDATE or FOR SHARE when asked."""
    suffix = {"": "", "update": " FOR UPDATE", "share": " FOR SHARE"}[lock]
    return await conn.fetchrow(SELECT_JOURNEY + suffix, workspace, journey_id)


async def journeys(
    conn: Queryable, workspace: str, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """A page of the workspace's journeys, oldest first, after (created_at, id)."""
    since, after_id = after if after is not None else (None, None)
    return await conn.fetch(SELECT_JOURNEYS, workspace, since, after_id, limit)


SELECT_EVENT_TRIGGERED = f"""
SELECT workspace, {JOURNEY_COLUMNS} FROM journeys
WHERE workspace = ANY($1::text[]) AND status = 'active' AND (definition -> 'trigger') ? 'event'
"""


async def active_journeys(
    conn: Queryable, workspaces: list[str], event_triggered: bool = False
) -> list[asyncpg.Record]:
    """The active journeys of these workspaces (with a `workspace` column); only those an
    event starts with `event_triggered` (a partial index answers it)."""
    query = SELECT_EVENT_TRIGGERED if event_triggered else SELECT_ACTIVE_JOURNEYS
    return await conn.fetch(query, workspaces)


async def insert_journey(
    conn: Queryable, workspace: str, journey_id: str, name: str, owner: str, definition: Any
) -> None:
    await conn.execute(INSERT_JOURNEY, workspace, journey_id, name, owner, definition)


async def insert_version(
    conn: Queryable,
    workspace: str,
    journey_id: str,
    version: int,
    definition: Any,
    changed_by: str,
    changes: list[dict[str, Any]],
) -> None:
    await conn.execute(
        INSERT_VERSION, workspace, journey_id, version, definition, changed_by, changes
    )


async def update_definition(
    conn: Queryable,
    workspace: str,
    journey_id: str,
    name: str,
    owner: str,
    definition: Any,
    version: int,
    goal_epoch: int,
) -> None:
    await conn.execute(
        UPDATE_DEFINITION, workspace, journey_id, name, owner, definition, version, goal_epoch
    )


async def set_status(conn: Queryable, workspace: str, journey_id: str, status: str) -> None:
    await conn.execute(SET_STATUS, workspace, journey_id, status)


async def delete(conn: Queryable, workspace: str, journey_id: str) -> None:
    """Deletes the journey and its versions."""
    await conn.execute(DELETE_VERSIONS, workspace, journey_id)
    await conn.execute(DELETE_JOURNEY, workspace, journey_id)


async def count_by_owner(conn: Queryable, workspace: str, owner: str, journey_id: str) -> int:
    """The owner's journeys other than `journey_id`."""
    return int(await conn.fetchval(COUNT_BY_OWNER, workspace, owner, journey_id))


async def count_in_workspace(conn: Queryable, workspace: str, journey_id: str) -> int:
    """The workspace's journeys other than `journey_id`."""
    return int(await conn.fetchval(COUNT_IN_WORKSPACE, workspace, journey_id))


async def active_audiences(
    conn: Queryable, workspace: str, journey_id: str
) -> list[asyncpg.Record]:
    """id, lists, property of the workspace's other active journeys."""
    return await conn.fetch(ACTIVE_AUDIENCES, workspace, journey_id)


async def version_history(conn: Queryable, workspace: str, journey_id: str) -> list[asyncpg.Record]:
    """Every version with who saved it, when, its changes and its enrollments."""
    return await conn.fetch(SELECT_VERSIONS, workspace, journey_id)


async def version(
    conn: Queryable, workspace: str, journey_id: str, number: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_VERSION, workspace, journey_id, number)


async def versions(
    conn: Queryable, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], Any]:
    """The definitions of (workspace, journey id, version) keys, in one query."""
    keys = list(keys)
    if not keys:
        return {}
    rows = await conn.fetch(
        VERSIONS_BY_KEY, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
    )
    return {(r["workspace"], r["journey_id"], r["version"]): r["definition"] for r in rows}


VERSION_NUMBERS = """
SELECT version FROM journey_versions WHERE workspace = $1 AND journey_id = $2 ORDER BY version
"""


async def version_numbers(conn: Queryable, workspace: str, journey_id: str) -> list[int]:
    """The journey's version numbers (without the counts `version_history` reads)."""
    return [r["version"] for r in await conn.fetch(VERSION_NUMBERS, workspace, journey_id)]
