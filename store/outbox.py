"""outbox: statements and their functions."""

from __future__ import annotations

from typing import Any

import asyncpg

from store.db import Queryable

# from services/sender.py
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"


# from services/sender.py
KEEP_RESENDS = """
CASE WHEN answer ? 'resends' THEN $2::jsonb || jsonb_build_object('resends', answer->'resends')
     ELSE $2::jsonb END
"""


async def try_lock(conn: Queryable, key: Any) -> Any:
    return await conn.fetchval(TRY_LOCK, key)


# from workers/sending.py
LOCK_CONTACT_CAP = "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 8))"


async def lock_contact_cap(conn: Queryable, workspace: Any, contact_id: Any) -> str:
    return await conn.execute(LOCK_CONTACT_CAP, workspace, contact_id)


# from api/routes/health.py
OUTBOX_DUE = """
SELECT count(*) AS due,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float AS oldest
FROM outbox WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
"""


async def outbox_due(conn: Queryable) -> asyncpg.Record | None:
    return await conn.fetchrow(OUTBOX_DUE)


# from services/sender.py
SELECT_DUE = """
SELECT idempotency_key FROM outbox
WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
  AND NOT idempotency_key = ANY($2::text[])
ORDER BY next_attempt_at LIMIT $1
"""


# from services/sender.py
SELECT_ROW = """
SELECT idempotency_key, workspace, workflow_id, journey_id, contact_id, kind, channel,
       payload, attempts
FROM outbox
WHERE idempotency_key = $1 AND status IN ('queued', 'sending') AND next_attempt_at <= now()
"""


# from services/sender.py
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


# from services/sender.py
DELIVERED = f"""
UPDATE outbox SET status = 'delivered', delivered_at = now(), answer = {KEEP_RESENDS},
                  attempts = attempts + 1, last_error = NULL
WHERE idempotency_key = $1
"""


# from services/sender.py
FAILED = f"""
UPDATE outbox SET status = 'failed', failed_at = now(), answer = {KEEP_RESENDS},
                  last_error = $3, attempts = attempts + 1
WHERE idempotency_key = $1
"""


# from services/sender.py
ATTEMPT_FAILED = """
UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                  status = CASE WHEN $3 THEN 'queued' ELSE status END,
                  next_attempt_at = now() + $4 * interval '1 second'
WHERE idempotency_key = $1
"""


async def handing_over(conn: Queryable, key: Any) -> Any:
    return await conn.fetchval(HANDING_OVER, key)


async def delivered(conn: Queryable, key: Any, answer: Any) -> str:
    return await conn.execute(DELIVERED, key, answer)


async def select_row(conn: Queryable, key: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ROW, key)


async def select_due(conn: Queryable, free: Any, skip: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_DUE, free, skip)


async def failed(conn: Queryable, key: Any, answer: Any, arg3: Any) -> str:
    return await conn.execute(FAILED, key, answer, arg3)


async def attempt_failed(conn: Queryable, key: Any, arg2: Any, requeue: Any, delay: Any) -> str:
    return await conn.execute(ATTEMPT_FAILED, key, arg2, requeue, delay)


# from workers/sending.py
RECENT_MARKETING = """
SELECT sent_at FROM marketing_sends
WHERE workspace = $1 AND contact_id = $2 AND sent_at > $3
ORDER BY sent_at DESC LIMIT $4
"""


# from workers/sending.py
RESERVE_MARKETING = """
INSERT INTO marketing_sends (idempotency_key, workspace, contact_id, sent_at)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""


# from workers/sending.py
INSERT_OUTBOX = """
INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id, kind,
                    channel, payload, status, last_error, failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $9 = 'failed' THEN now() END)
ON CONFLICT (idempotency_key) DO NOTHING
"""


# from workers/sending.py
STEP_OUTBOX = """
SELECT idempotency_key, kind, channel, payload, status, answer, last_error FROM outbox
WHERE workflow_id = $1
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
ORDER BY idempotency_key
"""


# from workers/sending.py
WITHDRAW = """
UPDATE outbox SET status = 'withdrawn', last_error = 'the enrollment ended before it was sent'
WHERE workflow_id = $1 AND status = 'queued'
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
"""


# from workers/sending.py
RESTORE = """
UPDATE outbox SET status = 'queued', last_error = NULL
WHERE workflow_id = $1 AND status = 'withdrawn'
  AND (idempotency_key = $2 OR left(idempotency_key, length($2) + 1) = $2 || ':')
"""


async def recent_marketing(
    conn: Queryable, workspace: Any, contact_id: Any, arg3: Any, max: Any
) -> list[asyncpg.Record]:
    return await conn.fetch(RECENT_MARKETING, workspace, contact_id, arg3, max)


async def reserve_marketing(
    conn: Queryable, key: Any, workspace: Any, contact_id: Any, at: Any
) -> str:
    return await conn.execute(RESERVE_MARKETING, key, workspace, contact_id, at)


async def insert_outbox(
    conn: Queryable,
    arg1: Any,
    workspace: Any,
    workflow_id: Any,
    journey_id: Any,
    contact_id: Any,
    kind: Any,
    channel: Any,
    arg8: Any,
    status: Any,
    error: Any,
) -> str:
    return await conn.execute(
        INSERT_OUTBOX,
        arg1,
        workspace,
        workflow_id,
        journey_id,
        contact_id,
        kind,
        channel,
        arg8,
        status,
        error,
    )


async def restore(conn: Queryable, workflow_id: Any, key: Any) -> str:
    return await conn.execute(RESTORE, workflow_id, key)


async def step_outbox(conn: Queryable, workflow_id: Any, key: Any) -> list[asyncpg.Record]:
    return await conn.fetch(STEP_OUTBOX, workflow_id, key)


async def withdraw(conn: Queryable, workflow_id: Any, key: Any) -> str:
    return await conn.execute(WITHDRAW, workflow_id, key)
