"""Enrollments, their log and their refusals (`enrollments`, `enrollment_steps`, `refusals`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.enrollment import EnrollmentRef, StepRecord
from store.db import Queryable

SELECT_STATUSES = "SELECT workflow_id, status FROM enrollments WHERE workflow_id = ANY($1::text[])"


async def select_statuses(conn: Queryable, ids: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_STATUSES, ids)


INSERT_ENROLLMENT = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                         goal_epoch, stage)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
"""


INSERT_ENTRY = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                         goal_epoch, stage, entry, trigger_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
"""


# The contact's latest entry, and whether its workflow may never have started.
LATEST_ENTRY = """
SELECT e.entry, e.status, e.ended_at, e.workflow_id, e.trigger_key,
       e.status = 'running' AND NOT EXISTS (
           SELECT 1 FROM enrollment_steps s WHERE s.workflow_id = e.workflow_id
       ) AS unstarted
FROM enrollments e
WHERE e.workspace = $1 AND e.journey_id = $2 AND e.contact_id = $3
ORDER BY e.entry DESC LIMIT 1
"""


ENTERED_BY = """
SELECT workflow_id FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND trigger_key = $3
"""


async def insert_entry(
    conn: Queryable,
    workspace: str,
    journey_id: str,
    contact_id: str,
    wf_id: str,
    version: int,
    goal_epoch: int,
    stage: str,
    entry: int,
    trigger_key: str | None,
) -> bool:
    """Inserts an entry; False when another has its number, its trigger event, or runs."""
    done = await conn.execute(
        INSERT_ENTRY, workspace, journey_id, contact_id, wf_id, version, goal_epoch, stage,
        entry, trigger_key,
    )  # fmt: skip
    return done.endswith(" 1")


async def latest_entry(
    conn: Queryable, workspace: str, journey_id: str, contact_id: str
) -> asyncpg.Record | None:
    """entry, status, ended_at, workflow_id, trigger_key, unstarted."""
    return await conn.fetchrow(LATEST_ENTRY, workspace, journey_id, contact_id)


async def entered_by(conn: Queryable, workspace: str, journey_id: str, key: str) -> str | None:
    """The workflow id of the entry this trigger event started, if any."""
    found: str | None = await conn.fetchval(ENTERED_BY, workspace, journey_id, key)
    return found


DELETE_ENROLLMENT = "DELETE FROM enrollments WHERE workflow_id = $1"


INSERT_REFUSAL = """
INSERT INTO refusals (workspace, journey_id, contact_id, reason, explanation, once)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace, journey_id, contact_id, reason) WHERE once DO NOTHING
"""


INSERT_ENROLLMENTS = """
INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                         goal_epoch, stage)
SELECT $1, $2, contact_id, workflow_id, $3, $4, stage
FROM unnest($6::text[], $7::text[], $5::text[]) AS new (contact_id, workflow_id, stage)
ORDER BY contact_id
ON CONFLICT DO NOTHING
RETURNING contact_id
"""


INSERT_REFUSALS = """
INSERT INTO refusals (workspace, journey_id, contact_id, reason, explanation)
SELECT $1, $2, contact_id, reason, explanation
FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS r (contact_id, reason, explanation)
"""


async def insert_enrollment(
    conn: Queryable,
    workspace: Any,
    id: Any,
    contact_id: Any,
    wf_id: Any,
    version: Any,
    goal_epoch: Any,
    start_stage: Any,
) -> str:
    return await conn.execute(
        INSERT_ENROLLMENT, workspace, id, contact_id, wf_id, version, goal_epoch, start_stage
    )


NEVER_STARTED = """
SELECT e.workflow_id FROM enrollments e
WHERE e.workflow_id = ANY($1::text[]) AND e.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM enrollment_steps s WHERE s.workflow_id = e.workflow_id)
"""


async def never_started(conn: Queryable, workflow_ids: list[str]) -> list[str]:
    """Of these enrollments, those whose workflow has logged nothing yet: its start may
    never have happened (starting again is safe: Temporal rejects a second start)."""
    if not workflow_ids:
        return []
    return [r[0] for r in await conn.fetch(NEVER_STARTED, workflow_ids)]


async def insert_refusal(
    conn: Queryable,
    workspace: Any,
    id: Any,
    contact_id: Any,
    reason: Any,
    explanation: Any,
    refuse_once: Any,
) -> str:
    return await conn.execute(
        INSERT_REFUSAL, workspace, id, contact_id, reason, explanation, refuse_once
    )


async def delete_enrollment(conn: Queryable, wf_id: Any) -> str:
    return await conn.execute(DELETE_ENROLLMENT, wf_id)


async def insert_enrollments(
    conn: Queryable,
    workspace: Any,
    id: Any,
    version: Any,
    goal_epoch: Any,
    stages: list[str],
    candidates: list[str],
    ids: list[str],
) -> list[asyncpg.Record]:
    """Enrollment rows for `candidates` (workflow `ids`, entering `stages`), each once
    ever; returns the contact ids that were new."""
    return await conn.fetch(
        INSERT_ENROLLMENTS, workspace, id, version, goal_epoch, stages, candidates, ids
    )


async def insert_refusals(
    conn: Queryable,
    workspace: str,
    journey_id: str,
    contact_ids: list[str],
    reasons: list[str],
    explanations: list[dict[str, Any] | None],
) -> None:
    """One refusal row per contact (activation: each contact refused once per page)."""
    await conn.execute(INSERT_REFUSALS, workspace, journey_id, contact_ids, reasons, explanations)


SELECT_ENROLLMENT_STATUS = """
SELECT status FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
ORDER BY entry DESC LIMIT 1
"""


async def status_of(
    conn: Queryable, workspace: str, journey_id: str, contact_id: str
) -> str | None:
    """The status of the contact's latest entry, None if it never entered the journey."""
    status: str | None = await conn.fetchval(
        SELECT_ENROLLMENT_STATUS, workspace, journey_id, contact_id
    )
    return status


RECORD_OUTCOME = """
UPDATE enrollment_steps
SET result = coalesce($3, result), detail = detail || jsonb_build_object('delivery', $4::jsonb)
WHERE workflow_id = $1 AND step_seq = $2
"""


SELECT_OUTCOME = """
SELECT detail -> 'delivery' FROM enrollment_steps WHERE workflow_id = $1 AND step_seq = $2
"""


async def recorded_outcome(conn: Queryable, workflow_id: str, step_seq: int) -> Any:
    """What `record_outcome` kept for the step, None if nothing yet."""
    return await conn.fetchval(SELECT_OUTCOME, workflow_id, step_seq)


async def record_outcome(
    conn: Queryable, workflow_id: str, step_seq: int, result: str | None, outcome: dict[str, Any]
) -> None:
    """Keeps what became of a step's messages on its log row (and its result, if given)."""
    await conn.execute(RECORD_OUTCOME, workflow_id, step_seq, result, outcome)


EXISTING_ENROLLMENTS = """
SELECT contact_id, workflow_id, status, enrolled_at >= $4 AS since_batch FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND contact_id = ANY($3::text[])
"""


REFUSED_SINCE = """
SELECT DISTINCT ON (contact_id) contact_id, reason FROM refusals
WHERE workspace = $1 AND journey_id = $2 AND contact_id = ANY($3::text[]) AND refused_at >= $4
ORDER BY contact_id, refused_at DESC
"""


DELETE_ORPHAN = "DELETE FROM enrollments WHERE workflow_id = $1 AND status = 'running'"


RUNNING_PAGE = """
SELECT contact_id, workflow_id FROM enrollments
WHERE workspace = $1 AND journey_id = $2 AND contact_id > $3 AND status = ANY($4::text[])
  AND enrolled_at < $5
ORDER BY contact_id LIMIT $6
"""


STILL_OPEN = """
SELECT workflow_id FROM enrollments WHERE workflow_id = ANY($1::text[]) AND status = ANY($2::text[])
"""


async def running_page(
    conn: Queryable,
    workspace: Any,
    journey_id: Any,
    cursor: Any,
    statuses: Any,
    started_at: Any,
    page_size: Any,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        RUNNING_PAGE, workspace, journey_id, cursor, statuses, started_at, page_size
    )


async def delete_orphan(conn: Queryable, workflow_id: Any) -> str:
    return await conn.execute(DELETE_ORPHAN, workflow_id)


async def still_open(conn: Queryable, ids: Any, statuses: Any) -> list[asyncpg.Record]:
    return await conn.fetch(STILL_OPEN, ids, statuses)


async def existing_enrollments(
    conn: Queryable, workspace: str, journey_id: str, contact_ids: list[str], since: datetime
) -> list[asyncpg.Record]:
    """contact_id, workflow_id, status, since_batch (enrolled at or after `since`)."""
    return await conn.fetch(EXISTING_ENROLLMENTS, workspace, journey_id, contact_ids, since)


async def refused_since(
    conn: Queryable, workspace: str, journey_id: str, contact_ids: list[str], since: datetime
) -> dict[str, str]:
    """The latest refusal reason of each contact refused at or after `since`."""
    rows = await conn.fetch(REFUSED_SINCE, workspace, journey_id, contact_ids, since)
    return {r["contact_id"]: r["reason"] for r in rows}


RECORDED_WRITES = """
SELECT contact_seq, refused_writes FROM enrollment_steps WHERE workflow_id = $1 AND step_seq = $2
"""


RECORD_WRITES = """
UPDATE enrollment_steps SET contact_seq = $3, refused_writes = $4
WHERE workflow_id = $1 AND step_seq = $2
"""


MARKETING_SENT = "UPDATE enrollments SET marketing_sent = true WHERE workflow_id = $1"


# Other enrollments of the same contact that could take the credit for a goal met after
# this one ended (docs/design.md, "Goal conversions"): still running, or left with goal_met at
# the same change.
SELECT_RIVALS = """
SELECT e.journey_id, v.definition
FROM enrollments e
JOIN journey_versions v
  ON v.workspace = e.workspace AND v.journey_id = e.journey_id AND v.version = e.journey_version
WHERE e.workspace = $1 AND e.contact_id = $2 AND e.journey_id <> $3
  AND (e.status = 'running' OR (e.outcome = 'goal_met' AND e.goal_met_seq = $4))
"""


SELECT_OWN_GOAL = """
SELECT v.definition FROM enrollments e
JOIN journey_versions v
  ON v.workspace = e.workspace AND v.journey_id = e.journey_id AND v.version = e.journey_version
WHERE e.workflow_id = $1
"""


RECORD_STEPS = "SELECT * FROM nurture_record_steps($1, $2, $3, $4, $5)"


@dataclass(frozen=True)
class Recorded:
    """What `record_steps` did: the step numbers it inserted, and the enrollment's
    `marketing_sent` and `outcome` after it (what decides whether a goal met counts)."""

    steps: frozenset[int]
    found: bool
    """The enrollment's row exists (it always does, unless deleted under a running run)."""
    marketing_sent: bool
    outcome: str | None
    writes: dict[int, Written] = field(default_factory=dict)
    """The stage writes it made, by step number."""


@dataclass(frozen=True)
class Written:
    """What a record's stage writes came to: the contact's sequence after them (None: none
    was written), and the properties whose write was refused."""

    seq: int | None
    refused: list[str]


async def record_steps(
    conn: Queryable, ref: EnrollmentRef, records: Sequence[StepRecord]
) -> Recorded:
    """Inserts the log records that are new, moves the read models their stage entries,
    ends, completion and paths change, and makes their stage writes (020_record_steps.sql,
    021_stage_writes_with_their_record.sql), in one statement. Only the records inserted
    now may run their other effects."""
    rows = [r.model_dump(mode="json") for r in records]
    row = await conn.fetchrow(
        RECORD_STEPS, ref.workflow_id, ref.workspace, ref.journey_id, ref.contact_id, rows
    )
    assert row is not None  # a function call returns its one row
    sent = row["sent_marketing"]  # NOT NULL in the table: NULL here means no row
    writes = {int(step): Written(w["seq"], list(w["refused"])) for step, w in row["writes"].items()}
    return Recorded(
        frozenset(row["steps"] or ()), sent is not None, bool(sent), row["ended_as"], writes
    )


async def select_own_goal(conn: Queryable, workflow_id: Any) -> Any:
    return await conn.fetchval(SELECT_OWN_GOAL, workflow_id)


async def select_rivals(
    conn: Queryable, workspace: Any, contact_id: Any, journey_id: Any, goal_met_seq: Any
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_RIVALS, workspace, contact_id, journey_id, goal_met_seq)


async def record_writes(
    conn: Queryable, workflow_id: Any, step_seq: Any, seq: Any, refused: Any
) -> str:
    return await conn.execute(RECORD_WRITES, workflow_id, step_seq, seq, refused)


async def recorded_writes(
    conn: Queryable, workflow_id: Any, step_seq: Any
) -> asyncpg.Record | None:
    return await conn.fetchrow(RECORDED_WRITES, workflow_id, step_seq)


async def marketing_sent(conn: Queryable, workflow_id: Any) -> str:
    return await conn.execute(MARKETING_SENT, workflow_id)


COUNT_OPEN = """
SELECT count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status = 'in_attribution_window') AS in_window
FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND status <> 'completed'
"""


async def count_open(conn: Queryable, workspace: Any, journey_id: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(COUNT_OPEN, workspace, journey_id)


SELECT_ACTIVE = """
SELECT journey_id, workflow_id, status, stage FROM enrollments
WHERE workspace = $1 AND contact_id = $2 AND status <> 'completed' ORDER BY journey_id
"""


async def select_active(conn: Queryable, workspace: Any, contact_id: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ACTIVE, workspace, contact_id)


SELECT_ENROLLMENT = """
SELECT contact_id, entry, workflow_id, journey_version, status, stage, outcome, end_value,
       enrolled_at, ended_at, completed_at
FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
  AND ($4::int IS NULL OR entry = $4)
ORDER BY entry DESC LIMIT 1
"""


SELECT_ENTRIES = """
SELECT entry, workflow_id, journey_version, status, outcome, enrolled_at, ended_at
FROM enrollments WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3
ORDER BY entry
"""


async def entries(
    conn: Queryable, workspace: str, journey_id: str, contact_id: str
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ENTRIES, workspace, journey_id, contact_id)


SELECT_STEPS = """
SELECT step_seq, at, stage, action, result, detail FROM enrollment_steps
WHERE workflow_id = $1 ORDER BY step_seq
"""


SELECT_REFUSALS = """
SELECT reason, explanation, refused_at FROM refusals
WHERE workspace = $1 AND journey_id = $2 AND contact_id = $3 ORDER BY refused_at
"""


# converted: a conversion counted for the enrollment's goal epoch
SELECT_PAGE = """
SELECT e.contact_id, e.entry, e.workflow_id, e.journey_version, e.status, e.stage,
       e.outcome, e.end_value, e.enrolled_at, e.ended_at, e.completed_at,
       EXISTS (SELECT 1 FROM conversions c
               WHERE c.workspace = e.workspace AND c.journey_id = e.journey_id
                 AND c.contact_id = e.contact_id AND c.goal_epoch = e.goal_epoch) AS converted
FROM enrollments e
WHERE e.workspace = $1 AND e.journey_id = $2 AND (e.contact_id, e.entry) > ($3, $8::int)
  AND ($4::text IS NULL OR e.status = $4) AND ($5::text IS NULL OR e.outcome = $5)
  AND ($7::boolean IS NULL OR EXISTS (
        SELECT 1 FROM conversions c
        WHERE c.workspace = e.workspace AND c.journey_id = e.journey_id
          AND c.contact_id = e.contact_id AND c.goal_epoch = e.goal_epoch) = $7)
  AND ($9::text IS NULL OR e.stage = $9)
ORDER BY e.contact_id, e.entry LIMIT $6
"""


async def select_page(
    conn: Queryable,
    workspace: str,
    journey_id: str,
    after: str,
    status: str | None,
    outcome: str | None,
    limit: int,
    converted: bool | None = None,
    after_entry: int = 2**31 - 1,
    stage: str | None = None,
) -> list[asyncpg.Record]:
    """A page of the journey's enrollments (entries) by contact id and entry number, after
    (`after`, `after_entry`), filtered by status, outcome and whether a conversion was
    counted (None: any)."""
    return await conn.fetch(
        SELECT_PAGE,
        workspace,
        journey_id,
        after,
        status,
        outcome,
        limit,
        converted,
        after_entry,
        stage,
    )


async def enrollment(
    conn: Queryable, workspace: str, journey_id: str, contact_id: str, entry: int | None = None
) -> asyncpg.Record | None:
    """The contact's latest entry into the journey (or entry number `entry`)."""
    return await conn.fetchrow(SELECT_ENROLLMENT, workspace, journey_id, contact_id, entry)


async def select_refusals(
    conn: Queryable, workspace: Any, journey_id: Any, contact_id: Any
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_REFUSALS, workspace, journey_id, contact_id)


async def select_steps(conn: Queryable, workflow_id: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_STEPS, workflow_id)
