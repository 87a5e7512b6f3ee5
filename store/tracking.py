"""Tracked emails and their opens, clicks and unsubscribes (018_tracking.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from store.db import Queryable

TRACK = """
INSERT INTO tracked_messages (id, idempotency_key, workspace, journey_id, contact_id,
                              workflow_id, stage, template, marketing, links)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""

# The message, when its email was handed over, and this kind's last hit (any class).
MESSAGE = """
SELECT m.*, o.delivered_at,
       (SELECT max(h.last_at) FROM tracked_hits h
        WHERE h.message_id = m.id AND h.kind = $2) AS last_at,
       (SELECT h.last_link FROM tracked_hits h
        WHERE h.message_id = m.id AND h.kind = $2 ORDER BY h.last_at DESC LIMIT 1) AS last_link
FROM tracked_messages m LEFT JOIN outbox o ON o.idempotency_key = m.idempotency_key
WHERE m.id = $1
"""

HIT = """
INSERT INTO tracked_hits AS h (message_id, kind, human, first_at, last_at, last_link)
VALUES ($1, $2, $3, $4, $4, $5)
ON CONFLICT (message_id, kind, human)
DO UPDATE SET hits = h.hits + 1, last_at = $4, last_link = $5
RETURNING (xmax = 0) AS first,
          NOT EXISTS (SELECT 1 FROM tracked_hits o
                      WHERE o.message_id = $1 AND o.kind = $2 AND o.human <> $3) AS first_any
"""


async def track(
    conn: Queryable,
    message: bytes,
    key: str,
    workspace: str,
    journey_id: str,
    contact_id: str,
    workflow_id: str,
    stage: str | None,
    template: str,
    marketing: bool,
    links: list[str],
) -> None:
    await conn.execute(
        TRACK, message, key, workspace, journey_id, contact_id, workflow_id, stage, template,
        marketing, links,
    )  # fmt: skip


async def message(conn: Queryable, message_id: bytes, kind: str) -> asyncpg.Record | None:
    return await conn.fetchrow(MESSAGE, message_id, kind)


async def hit(
    conn: Queryable, message_id: bytes, kind: str, human: bool, at: datetime, link: int | None
) -> tuple[bool, bool]:
    """Counts a hit; (first of its class, first of any class)."""
    row: Any = await conn.fetchrow(HIT, message_id, kind, human, at, link)
    return bool(row["first"]), bool(row["first"] and row["first_any"])


# Per message of a journey (stage, template, the enrollment's split variant if any): its
# sends, and the tracked emails' unique opens, clicks and unsubscribes, people and
# machines apart, and how many of its contacts the journey counted as conversions.
PERFORMANCE = """
SELECT o.payload->>'stage' AS stage, o.payload->>'template' AS template,
       (SELECT string_agg(a.variant, ',' ORDER BY a.split) FROM experiment_assignments a
        WHERE a.workflow_id = o.workflow_id) AS variant,
       o.journey_id,
       count(*) AS sent,
       count(*) FILTER (WHERE o.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE o.status = 'failed') AS failed,
       count(h.o_human) AS opens_human, count(h.o_machine) AS opens_machine,
       count(h.c_human) AS clicks_human, count(h.c_machine) AS clicks_machine,
       count(h.u) AS unsubscribes,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM conversions c WHERE c.workspace = o.workspace
             AND c.journey_id = o.journey_id AND c.contact_id = o.contact_id)) AS conversions
FROM outbox o
LEFT JOIN tracked_messages m ON m.idempotency_key = o.idempotency_key
LEFT JOIN LATERAL (
    SELECT bool_or(kind = 'o' AND human) OR NULL AS o_human,
           bool_or(kind = 'o' AND NOT human) OR NULL AS o_machine,
           bool_or(kind = 'c' AND human) OR NULL AS c_human,
           bool_or(kind = 'c' AND NOT human) OR NULL AS c_machine,
           bool_or(kind = 'u') OR NULL AS u
    FROM tracked_hits WHERE message_id = m.id
) h ON true
WHERE o.workspace = $1 AND o.kind = 'message'
  AND ($2::text IS NULL OR o.journey_id = $2)
  AND ($3::text IS NULL OR o.payload->>'template' = $3)
GROUP BY 1, 2, 3, 4
ORDER BY 4, 1, 2, 3
"""


async def performance(
    conn: Queryable, workspace: str, journey_id: str | None, template: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(PERFORMANCE, workspace, journey_id, template)
