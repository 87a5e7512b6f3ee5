"""The outbox (`outbox`): one row per message, task or notification, keyed for the
provider; the sender's claims and outcomes; and the frequency cap's reservations
(`marketing_sends`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from store.db import Queryable

TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"


KEEP_RESENDS = """
CASE WHEN answer ? 'resends' THEN $2::jsonb || jsonb_build_object('resends', answer->'resends')
     ELSE $2::jsonb END
"""


LOCK_CONTACT_CAP = "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 8))"


OUTBOX_DUE = """
SELECT count(*) AS due,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float AS oldest
FROM outbox WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
"""


# Fair: the workspaces with due rows (an index skip scan), each one's oldest rows, then
# taken in turns (every workspace's first, then every second, ...) until the free slots
# are filled: a flood from one workspace fills what the others leave.
SELECT_DUE = """
WITH RECURSIVE spaces(workspace) AS (
    SELECT min(workspace) FROM outbox
    WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
    UNION ALL
    SELECT (SELECT min(o.workspace) FROM outbox o
            WHERE o.status IN ('queued', 'sending') AND o.next_attempt_at <= now()
              AND o.workspace > s.workspace)
    FROM spaces s WHERE s.workspace IS NOT NULL
)
SELECT idempotency_key, workspace FROM (
    SELECT picked.idempotency_key, s.workspace, picked.next_attempt_at,
           row_number() OVER (PARTITION BY s.workspace ORDER BY picked.next_attempt_at) AS turn
    FROM spaces s CROSS JOIN LATERAL (
        SELECT o.idempotency_key, o.next_attempt_at FROM outbox o
        WHERE o.workspace = s.workspace AND o.status IN ('queued', 'sending')
          AND o.next_attempt_at <= now() AND NOT o.idempotency_key = ANY($2::text[])
        ORDER BY o.next_attempt_at LIMIT $1
    ) picked
    WHERE s.workspace IS NOT NULL
) turns
ORDER BY turn, next_attempt_at LIMIT $1
"""


SELECT_ROW = """
SELECT idempotency_key, workspace, workflow_id, journey_id, contact_id, kind, channel,
       payload, attempts
FROM outbox
WHERE idempotency_key = $1 AND status IN ('queued', 'sending') AND next_attempt_at <= now()
"""


HANDING_OVER = """
WITH prev AS (SELECT status, answer FROM outbox WHERE idempotency_key = $1 FOR UPDATE)
UPDATE outbox o
SET status = 'sending',
    answer = CASE WHEN prev.status <> 'sending' THEN prev.answer ELSE jsonb_build_object(
                 'resends', coalesce((prev.answer->>'resends')::int, 0) + 1) END
FROM prev
WHERE o.idempotency_key = $1 AND prev.status IN ('queued', 'sending')
RETURNING coalesce((o.answer->>'resends')::int, 0)
"""


DELIVERED = f"""
UPDATE outbox SET status = 'delivered', delivered_at = now(), answer = {KEEP_RESENDS},
                  attempts = attempts + 1, last_error = NULL
WHERE idempotency_key = $1
"""


FAILED = f"""
UPDATE outbox SET status = 'failed', failed_at = now(), answer = {KEEP_RESENDS},
                  last_error = $3, attempts = attempts + 1
WHERE idempotency_key = $1
"""


ATTEMPT_FAILED = """
UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                  status = CASE WHEN $3 THEN 'queued' ELSE status END,
                  next_attempt_at = now() + $4 * interval '1 second'
WHERE idempotency_key = $1
"""


RECENT_MARKETING = """
SELECT sent_at FROM marketing_sends
WHERE workspace = $1 AND contact_id = $2 AND sent_at > $3
ORDER BY sent_at DESC LIMIT $4
"""


RESERVE_MARKETING = """
INSERT INTO marketing_sends (idempotency_key, workspace, contact_id, sent_at)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""


INSERT_OUTBOX = """
INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id, kind,
                    channel, payload, status, last_error, failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $9 = 'failed' THEN now() END)
ON CONFLICT (idempotency_key) DO NOTHING
"""


STEP_OUTBOX = """
SELECT idempotency_key, kind, channel, payload, status, answer, last_error FROM outbox
WHERE workflow_id = $1
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
ORDER BY idempotency_key
"""


WITHDRAW = """
UPDATE outbox SET status = 'withdrawn', last_error = 'the enrollment ended before it was sent'
WHERE workflow_id = $1 AND status = 'queued'
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
"""


RESTORE = """
UPDATE outbox SET status = 'queued', last_error = NULL
WHERE workflow_id = $1 AND status = 'withdrawn'
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
"""


# --- the send activity (in the step's transaction, then waiting) ------------------------


async def queue(
    conn: Queryable,
    key: str,
    workspace: str,
    workflow_id: str,
    journey_id: str,
    contact_id: str,
    kind: str,
    channel: str | None,
    payload: dict[str, Any],
    status: str,
    error: str | None,
) -> None:
    """One row, once per key: `queued` for the sender, or already `kept`/`failed`."""
    await conn.execute(
        INSERT_OUTBOX,
        key,
        workspace,
        workflow_id,
        journey_id,
        contact_id,
        kind,
        channel,
        payload,
        status,
        error,
    )


async def step_rows(conn: Queryable, workflow_id: str, step_key: str) -> list[asyncpg.Record]:
    """The rows of one step (its key, or its key and a channel), in key order."""
    return await conn.fetch(STEP_OUTBOX, workflow_id, step_key)


async def withdraw(conn: Queryable, workflow_id: str, step_key: str) -> None:
    """The step's rows the sender has not begun are never sent (an exit)."""
    await conn.execute(WITHDRAW, workflow_id, step_key)


async def restore(conn: Queryable, workflow_id: str, step_key: str) -> None:
    """Rows withdrawn by a cancelled attempt are queued again (a retried attempt)."""
    await conn.execute(RESTORE, workflow_id, step_key)


async def lock_contact_cap(conn: Queryable, workspace: str, contact_id: str) -> None:
    """Serialises the contact's frequency cap reservations until the transaction ends."""
    await conn.execute(LOCK_CONTACT_CAP, workspace, contact_id)


async def recent_marketing(
    conn: Queryable, workspace: str, contact_id: str, since: datetime, limit: int
) -> list[datetime]:
    """When the contact's latest marketing messages since `since` went out, newest first."""
    rows = await conn.fetch(RECENT_MARKETING, workspace, contact_id, since, limit)
    return [r["sent_at"] for r in rows]


async def reserve_marketing(
    conn: Queryable, key: str, workspace: str, contact_id: str, at: datetime
) -> None:
    await conn.execute(RESERVE_MARKETING, key, workspace, contact_id, at)


# --- the sender -------------------------------------------------------------------------


async def due(conn: Queryable, limit: int, skip: list[str]) -> list[tuple[str, str]]:
    """(key, workspace) of rows due for a hand-over, other than `skip`: each workspace's
    oldest in turns."""
    return [(r[0], r[1]) for r in await conn.fetch(SELECT_DUE, limit, skip)]


async def try_lock(conn: Queryable, key: str) -> bool:
    """Takes the row's session advisory lock if no other sender holds it (released when
    the connection goes back to the pool)."""
    taken = bool(await conn.fetchval(TRY_LOCK, key))
    if taken and (mark := getattr(conn, "took_session_lock", None)) is not None:
        mark()
    return taken


async def row(conn: Queryable, key: str) -> asyncpg.Record | None:
    """The row, if it is still due."""
    return await conn.fetchrow(SELECT_ROW, key)


async def handing_over(conn: Queryable, key: str) -> int | None:
    """Marks the row `sending`; the resends counted so far, None if it is no longer due."""
    resends: int | None = await conn.fetchval(HANDING_OVER, key)
    return resends


async def delivered(conn: Queryable, key: str, answer: dict[str, Any]) -> None:
    await conn.execute(DELIVERED, key, answer)


async def failed(conn: Queryable, key: str, answer: dict[str, Any] | None, error: str) -> None:
    """The provider refused for good."""
    await conn.execute(FAILED, key, answer, error)


async def attempt_failed(
    conn: Queryable, key: str, error: str, requeue: bool, delay: float
) -> None:
    """A transient failure: try again after `delay` seconds."""
    await conn.execute(ATTEMPT_FAILED, key, error, requeue, delay)


async def due_summary(conn: Queryable) -> asyncpg.Record | None:
    """due, oldest: how many rows wait for a sender, and the oldest's wait in seconds."""
    return await conn.fetchrow(OUTBOX_DUE)


# --- what the API lists -----------------------------------------------------------------

# $5, $6: the (created_at, idempotency_key) the page starts after, newest first
SELECT_OF_KIND = """
SELECT idempotency_key, journey_id, contact_id, workflow_id, payload, status, attempts,
       last_error, created_at, delivered_at, failed_at
FROM outbox
WHERE workspace = $1 AND kind = $2
  AND ($3::text IS NULL OR journey_id = $3) AND ($4::text IS NULL OR contact_id = $4)
  AND ($5::timestamptz IS NULL OR (created_at, idempotency_key) < ($5, $6))
ORDER BY created_at DESC, idempotency_key DESC LIMIT $7
"""


async def of_kind(
    conn: Queryable,
    workspace: str,
    kind: str,
    journey_id: str | None,
    contact_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the tasks (`task`) or notifications (`notification`) the journeys
    produced, newest first, with their delivery state."""
    since, key = after if after is not None else (None, None)
    return await conn.fetch(
        SELECT_OF_KIND, workspace, kind, journey_id, contact_id, since, key, limit
    )
