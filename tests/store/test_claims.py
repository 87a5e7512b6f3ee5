"""What a routing pass's claim does besides claiming (real Postgres): it deletes what the
relay delivered since its last claim, unless a newer change renewed the row, and the
changes it signalled itself; it brings each event change's event, and the keys of the
active journeys an event starts in each claimed workspace."""

from __future__ import annotations

import asyncio
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


async def test_events_handed_off_are_leased_to_their_writer_and_announced_to_no_relay(
    pool: asyncpg.Pool,
) -> None:
    """`hand_off` queues the events' changes leased to the caller, with what a claim brings,
    and no notification: another relay's claim skips them until the lease runs out, while
    an event appended the usual way is announced and claimed at once."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    await pool.execute("INSERT INTO contacts (workspace, id) VALUES ('w', 'ada'), ('w', 'bob')")
    await pool.execute(
        "INSERT INTO enrollments (workspace, contact_id, journey_id, journey_version,"
        " workflow_id, status) VALUES ('w', 'ada', 'j', 1, 'wf-ada', 'running')"
    )
    await pool.execute("DELETE FROM change_queue")  # the new contacts' own changes
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(*_: object) -> None:
        heard.put_nowait("change")

    async with pool.acquire() as listener:
        await listener.add_listener("nurture_changes", hear)
        handed_event = events_store.NewEvent("evt-h", "kh", "ada", "purchase", None, {}, at)
        rows = await events_store.hand_off(pool, "w", [handed_event], lease=1.0)
        # appended after the hand-off committed: its notification is the first one heard
        appended = events_store.NewEvent("evt-a", "ka", "bob", "purchase", None, {}, at)
        await events_store.append(pool, "w", [appended])
        assert await asyncio.wait_for(heard.get(), 10) == "change"
        await asyncio.sleep(0.2)  # a second notification would have followed the first
        await listener.remove_listener("nurture_changes", hear)
        assert heard.empty()

    handed = changes_store.claim_of(rows, False)
    assert [(r["event_id"], r["idempotency_key"], r["contact_id"]) for r in rows] == [
        ("evt-h", "kh", "ada")
    ]
    assert [(c.kind, c.contact_id, c.name) for c in handed.changes] == [
        ("event", "ada", "purchase")
    ]
    assert [e.workflow_id for e in handed.enrollments] == ["wf-ada"]
    assert handed.events[("w", rows[0]["seq"])].id == "evt-h"
    assert await pool.fetchval("SELECT handed_off FROM events WHERE id = 'evt-h'") is True

    async with pool.acquire() as conn:
        claim = await changes_store.claim_routable(conn, 10, 10)
    assert [(c.kind, c.contact_id) for c in claim.changes] == [("event", "bob")]
    # the writer died without routing it: once the lease runs out, a claim takes it
    later = await _claim_after(pool, handed.changes[0].id)
    assert [(c.kind, c.contact_id) for c in later.changes] == [("event", "ada")]


async def _claim_after(pool: asyncpg.Pool, change_id: int) -> changes_store.Claim:
    """The claim that takes `change_id` once its lease has run out."""
    while True:
        async with pool.acquire() as conn:
            claim = await changes_store.claim_routable(conn, 10, 10)
        if change_id in {c.id for c in claim.changes}:
            return claim
        await asyncio.sleep(0.1)
