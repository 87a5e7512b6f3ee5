"""What a routing pass's claim does besides claiming (real Postgres): it deletes what the
relay delivered since its last claim, unless a newer change renewed the row, and the
changes it signalled itself; it brings each event change's event, and the keys of the
active journeys an event starts in each claimed workspace."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from store import changes as changes_store
from store import events as events_store


async def _delivery(pool: asyncpg.Pool, workflow_id: str) -> tuple[int, int]:
    row = await pool.fetchrow(
        "INSERT INTO deliveries (workspace, contact_id, journey_id, workflow_id, kind, seq)"
        " VALUES ('w', 'ada', 'j', $1, 'event', 1) RETURNING id, generation",
        workflow_id,
    )
    assert row is not None
    return row["id"], row["generation"]


async def test_a_claim_deletes_what_was_delivered_unless_a_newer_change_renewed_it(
    pool: asyncpg.Pool,
) -> None:
    delivered = await _delivery(pool, "wf-delivered")
    renewed = await _delivery(pool, "wf-renewed")
    await _delivery(pool, "wf-untouched")
    # a newer change joined this row after its signal went out: it must be signalled again
    await pool.execute(
        "UPDATE deliveries SET generation = generation + 1 WHERE id = $1", renewed[0]
    )

    async with pool.acquire() as conn:
        claim = await changes_store.claim_routable(conn, 10, 10, [delivered, renewed])

    assert claim.changes == []  # nothing queued: the deletes ran all the same
    left = {r["workflow_id"] for r in await pool.fetch("SELECT workflow_id FROM deliveries")}
    assert left == {"wf-renewed", "wf-untouched"}


async def test_a_claim_brings_the_keys_of_the_journeys_an_event_starts(
    pool: asyncpg.Pool,
) -> None:
    journeys = [
        # workspace, id, status, definition
        ("w", "on-signup", "active", {"trigger": {"event": {"type": "signed_up"}}}),
        ("w", "by-list", "active", {"trigger": {"list": "vip"}}),
        ("w", "no-trigger", "active", {}),
        ("w", "paused", "inactive", {"trigger": {"event": {"type": "signed_up"}}}),
        ("other", "elsewhere", "active", {"trigger": {"event": {"type": "signed_up"}}}),
    ]
    for workspace, journey_id, status, definition in journeys:
        await pool.execute(
            "INSERT INTO journeys (workspace, id, name, owner, status, definition, version,"
            " goal_epoch) VALUES ($1, $2, $2, 'o', $3, $4, 3, 2)",
            workspace,
            journey_id,
            status,
            definition,
        )
    await pool.execute(
        "INSERT INTO change_queue (workspace, contact_id, kind, name)"
        " VALUES ('w', 'ada', 'event', 'signed_up'), ('w', 'bob', 'event', 'signed_up'),"
        " ('quiet', 'cy', 'event', 'signed_up')"
    )

    async with pool.acquire() as conn:
        claim = await changes_store.claim_routable(conn, 10, 10)

    assert len(claim.changes) == 3
    assert claim.event_journeys == {"w": [("on-signup", 3, 2)], "quiet": []}


async def test_a_claim_deletes_the_changes_signalled_and_brings_each_events_event(
    pool: asyncpg.Pool,
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    new = [
        events_store.NewEvent(f"evt-{i}", f"k{i}", "ada", "purchase", "plan", {"n": i}, at)
        for i in range(3)
    ]
    await events_store.append(pool, "w", new)
    async with pool.acquire() as conn:
        first = await changes_store.claim_routable(conn, 10, 10)
    events = [c for c in first.changes if c.kind == "event"]
    assert [
        (e.id, e.type, e.target, e.properties, e.occurred_at)
        for e in (first.events[("w", c.seq)] for c in events if c.seq is not None)
    ] == [(f"evt-{i}", "purchase", "plan", {"n": i}, at) for i in range(3)]
    assert len(first.events) == 3  # the contact's own change carries none
    # all but the last event were signalled; every lease has run out, yet the next claim
    # deletes those instead of taking them again, and takes the last one
    await pool.execute("UPDATE change_queue SET leased_until = now() - interval '1 second'")
    signalled = [c.id for c in first.changes if c is not events[-1]]

    async with pool.acquire() as conn:
        second = await changes_store.claim_routable(conn, 10, 10, signalled=signalled)

    assert [c.id for c in second.changes] == [events[-1].id]
    assert await pool.fetchval("SELECT count(*) FROM change_queue") == 1
