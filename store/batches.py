"""Activation and unenroll batches (`journey_batches`): their rows and progress."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.activation import BatchKind
from store.db import Queryable

BATCH_COLUMNS = """
journey_id, batch, kind, workflow_id, journey_version, status, total, processed, done, skipped,
rate, requested_by, stop_reason, started_at, updated_at, finished_at
"""

SELECT_PROGRESS = """
SELECT status, total, processed, done, skipped, cursor, stop_reason, started_at
FROM journey_batches WHERE workspace = $1 AND journey_id = $2 AND batch = $3
"""


LOCK_BATCH = SELECT_PROGRESS + " FOR UPDATE"


SET_TOTAL = """
UPDATE journey_batches SET total = $4, updated_at = now()
WHERE workspace = $1 AND journey_id = $2 AND batch = $3 AND total IS NULL
"""


ADVANCE = """
UPDATE journey_batches
SET cursor = $4, processed = processed + $5, done = done + $6, skipped = $7, updated_at = now()
WHERE workspace = $1 AND journey_id = $2 AND batch = $3
RETURNING status, total, processed, done, skipped, cursor, stop_reason
"""


FINISH = """
UPDATE journey_batches
SET status = $4, stop_reason = coalesce(stop_reason, $5), finished_at = now(), updated_at = now()
WHERE workspace = $1 AND journey_id = $2 AND batch = $3 AND status = 'running'
"""


BatchKey = tuple[str, str, int]
"""(workspace, journey id, batch number)."""


async def finish(conn: Queryable, key: BatchKey, status: str, reason: str | None) -> str:
    """Ends a running batch with `status`; the first stop reason recorded stays."""
    return await conn.execute(FINISH, *key, status, reason)


async def progress(conn: Queryable, key: BatchKey) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_PROGRESS, *key)


async def set_total(conn: Queryable, key: BatchKey, total: int) -> str:
    return await conn.execute(SET_TOTAL, *key, total)


async def lock_batch(conn: Queryable, key: BatchKey) -> asyncpg.Record | None:
    """The batch's progress, its row locked until the transaction ends."""
    return await conn.fetchrow(LOCK_BATCH, *key)


async def advance(
    conn: Queryable, key: BatchKey, cursor: str, processed: int, done: int, skipped: dict[str, int]
) -> asyncpg.Record | None:
    """Moves the cursor past a chunk and adds up what it did; the new progress."""
    return await conn.fetchrow(ADVANCE, *key, cursor, processed, done, skipped)


NEXT_BATCH = """
SELECT coalesce(max(batch), 0) + 1 FROM journey_batches WHERE workspace = $1 AND journey_id = $2
"""


INSERT_BATCH = """
INSERT INTO journey_batches (workspace, journey_id, batch, kind, workflow_id, journey_version,
                             total, rate, requested_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


SELECT_LATEST = f"""
SELECT {BATCH_COLUMNS} FROM journey_batches
WHERE workspace = $1 AND journey_id = $2 AND kind = $3 ORDER BY batch DESC LIMIT 1
"""


SELECT_BATCH = f"""
SELECT {BATCH_COLUMNS} FROM journey_batches WHERE workspace = $1 AND journey_id = $2 AND batch = $3
"""


STOP_ACTIVATIONS = """
UPDATE journey_batches
SET status = 'stopped', stop_reason = $3, finished_at = now(), updated_at = now()
WHERE workspace = $1 AND journey_id = $2 AND kind = 'activate' AND status = 'running'
"""


async def next_number(conn: Queryable, workspace: str, journey_id: str) -> int:
    return int(await conn.fetchval(NEXT_BATCH, workspace, journey_id))


async def insert_batch(
    conn: Queryable,
    workspace: Any,
    id: Any,
    number: Any,
    value: Any,
    workflow_id: Any,
    version: Any,
    total: Any,
    activation_rate: Any,
    requested_by: Any,
) -> str:
    return await conn.execute(
        INSERT_BATCH,
        workspace,
        id,
        number,
        value,
        workflow_id,
        version,
        total,
        activation_rate,
        requested_by,
    )


async def batch(
    conn: Queryable, workspace: str, journey_id: str, number: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BATCH, workspace, journey_id, number)


async def stop_activations(conn: Queryable, workspace: Any, journey_id: Any, reason: Any) -> str:
    return await conn.execute(STOP_ACTIVATIONS, workspace, journey_id, reason)


async def latest(
    conn: Queryable, workspace: str, journey_id: str, kind: BatchKind
) -> asyncpg.Record | None:
    """The journey's most recent batch of `kind`."""
    return await conn.fetchrow(SELECT_LATEST, workspace, journey_id, kind.value)
