"""Fair sharing between workspaces (docs/reliability.md, "Security"): the relay's two
queues and the sender's outbox are claimed a share per workspace, so one queued behind
another workspace's flood is in the very next batch (real Postgres)."""

from __future__ import annotations

from collections import Counter

import asyncpg

from store import changes as changes_store
from store import outbox as outbox_store


async def test_changes_are_claimed_a_share_per_workspace_in_queue_order(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(
        "INSERT INTO change_queue (workspace, contact_id, kind, name)"
        " SELECT 'flood', 'c' || i, 'event', 'viewed' FROM generate_series(1, 500) AS i"
    )
    await pool.execute(
        "INSERT INTO change_queue (workspace, contact_id, kind, name)"
        " VALUES ('quiet', 'q1', 'event', 'paid'), ('quiet', 'q1', 'event', 'renewed')"
    )
    async with pool.acquire() as conn, conn.transaction():
        claimed, more = await changes_store.claim_changes(conn, 100)
    assert more  # the flood took its whole share: more of it waits
    by_workspace = Counter(c.workspace for c in claimed)
    assert by_workspace == {"flood": 50, "quiet": 2}
    quiet = [c.name for c in claimed if c.workspace == "quiet"]
    assert quiet == ["paid", "renewed"]  # a workspace's own order is kept
    flood = [int(c.contact[1][1:]) for c in claimed if c.workspace == "flood"]
    assert flood == list(range(1, 51))

    # alone, a workspace gets the whole batch
    async with pool.acquire() as conn, conn.transaction():
        claimed, more = await changes_store.claim_changes(conn, 100)
    assert len(claimed) == 100 and more
    async with pool.acquire() as conn, conn.transaction():
        claimed, more = await changes_store.claim_changes(conn, 1000)
    assert len(claimed) == 350 and not more  # the rest, and nothing left behind


async def test_deliveries_are_claimed_a_share_per_workspace(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO deliveries (workspace, contact_id, journey_id, workflow_id, kind, seq)"
        " SELECT 'flood', 'c' || i, 'j', 'wf' || i, 'event', i FROM generate_series(1, 300) i"
    )
    await pool.execute(
        "INSERT INTO deliveries (workspace, contact_id, journey_id, workflow_id, kind, seq)"
        " VALUES ('quiet', 'q1', 'j', 'wq', 'event', 1)"
    )
    rows = await changes_store.claim_due(pool, 64, 60)
    assert Counter(r["workspace"] for r in rows) == {"flood": 32, "quiet": 1}
    assert changes_store.filled(rows)  # the flood took its share: more may be due
    rest = await changes_store.claim_due(pool, 1000, 60)
    assert len(rest) == 268 and not changes_store.filled(rest)


async def test_the_sender_takes_each_workspace_in_turn(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id,"
        " kind, payload, status, next_attempt_at)"
        " SELECT 'f' || i, 'flood', 'wf' || i, 'j', 'c' || i, 'message', '{}', 'queued',"
        "        now() - interval '1 hour' + i * interval '1 second'"
        " FROM generate_series(1, 200) AS i"
    )
    await pool.execute(
        "INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id,"
        " kind, payload, status) VALUES ('q1', 'quiet', 'wq', 'j', 'q', 'message', '{}',"
        " 'queued')"
    )
    keys = [key for key, _ in await outbox_store.due(pool, 16, [])]
    assert keys[:2] == ["f1", "q1"]  # each workspace's oldest first, in turns
    assert keys[2:] == [f"f{i}" for i in range(2, 16)]  # the flood fills what is left
