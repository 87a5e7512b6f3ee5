"""An enrollment that ends leaves no message queued behind it (real Postgres): when its
outcome is first set, its outbox rows the sender has not begun are withdrawn; what the
sender has begun, and other enrollments' rows, are left alone."""

from __future__ import annotations

import asyncpg


async def _enrollment(pool: asyncpg.Pool, workflow_id: str, contact_id: str) -> None:
    await pool.execute(
        "INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,"
        " journey_version) VALUES ('w', 'j', $1, $2, 1)",
        contact_id,
        workflow_id,
    )


async def _message(pool: asyncpg.Pool, key: str, workflow_id: str, status: str) -> None:
    await pool.execute(
        "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id,"
        " kind, payload, status) VALUES ($1, 'w', $2, 'j', 'c', 'message', '{}', $3)",
        key,
        workflow_id,
        status,
    )


async def _statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT idempotency_key, status FROM outbox")
    return {r["idempotency_key"]: r["status"] for r in rows}


async def test_an_ending_enrollment_withdraws_what_the_sender_has_not_begun(
    pool: asyncpg.Pool,
) -> None:
    await _enrollment(pool, "wf-ada", "ada")
    await _enrollment(pool, "wf-bob", "bob")
    await _message(pool, "wf-ada:2", "wf-ada", "queued")
    await _message(pool, "wf-ada:1", "wf-ada", "sending")
    await _message(pool, "wf-bob:2", "wf-bob", "queued")

    await pool.execute("UPDATE enrollments SET stage = 'b' WHERE workflow_id = 'wf-ada'")
    assert (await _statuses(pool))["wf-ada:2"] == "queued"  # still running: nothing moves

    await pool.execute("UPDATE enrollments SET outcome = 'goal_met' WHERE workflow_id = 'wf-ada'")
    assert await _statuses(pool) == {
        "wf-ada:2": "withdrawn",
        "wf-ada:1": "sending",  # the sender has begun: its hand-over finishes
        "wf-bob:2": "queued",  # another enrollment's
    }
    reason = await pool.fetchval("SELECT last_error FROM outbox WHERE idempotency_key = 'wf-ada:2'")
    assert reason == "the enrollment ended before it was sent"


async def test_only_the_end_itself_withdraws(pool: asyncpg.Pool) -> None:
    """A later change of an ended enrollment (its attribution window closing) withdraws
    nothing: the row queued after the end is a probe for it."""
    await _enrollment(pool, "wf-cy", "cy")
    await pool.execute("UPDATE enrollments SET outcome = 'success' WHERE workflow_id = 'wf-cy'")
    await _message(pool, "wf-cy:3", "wf-cy", "queued")
    await pool.execute("UPDATE enrollments SET status = 'completed' WHERE workflow_id = 'wf-cy'")
    assert await _statuses(pool) == {"wf-cy:3": "queued"}
