"""The relay's queues: `change_queue` (what committed and must be routed) and `deliveries`
(what must reach an enrollment workflow, with its retries and dead letters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.contact import ContactEvent
from shared.routing import Change, Delivery, OpenEnrollment
from store.db import Queryable

COLUMNS = """
d.id, d.kind, d.contact_id, d.journey_id, d.workflow_id, e.id AS event_id,
e.idempotency_key AS event_idempotency_key, e.type AS event_type,
d.attempts, d.last_error, d.queued_at, d.failed_at
"""


# Fair claims: the workspaces with work (an index skip scan, one probe per workspace),
# then each one's oldest rows, at most an equal share of the batch each. Within a
# workspace the order is the queue's, so a contact's changes stay in order. A claimed
# change is leased (`routed` deletes it); each comes with its contact's open enrollments
# (what routing reads next), as of the claim (enrollments_by_contact is partial on
# status <> 'completed': the same predicate uses it), and with the keys of its
# workspace's active journeys that an event starts (journeys_event_triggered answers
# it; usually none). The same statement removes what the relay delivered since its last
# claim ($3, $4: id and generation, as `delete_done`), so a delivery costs no statement
# of its own; and the changes the relay routed and signalled itself ($5: ids, still
# leased to it, so no claim takes them meanwhile). An event's change comes with the
# event, as its signal carries it.
def open_enrollments(row: str) -> str:
    """The SQL of `open_enrollments`: the open enrollments of the contact of `row` (a
    table alias with `workspace` and `contact_id`), as a JSON array of `OpenEnrollment`s."""
    return f"""(SELECT coalesce(jsonb_agg(to_jsonb(e)), '[]'::jsonb) FROM (
            SELECT workspace, contact_id, journey_id, journey_version, workflow_id, status,
                   stage, end_value
            FROM enrollments en
            WHERE en.workspace = {row}.workspace AND en.contact_id = {row}.contact_id
              AND en.status <> 'completed'
        ) e) AS open_enrollments"""


CLAIM_CHANGES = """
WITH RECURSIVE spaces(workspace) AS (
    SELECT min(workspace) FROM change_queue WHERE leased_until IS NULL OR leased_until < now()
    UNION ALL
    SELECT (SELECT min(q.workspace) FROM change_queue q
            WHERE q.workspace > s.workspace
              AND (q.leased_until IS NULL OR q.leased_until < now()))
    FROM spaces s WHERE s.workspace IS NOT NULL
), share AS (
    SELECT greatest(1, ceil($1::numeric / greatest(count(*), 1)))::int AS n
    FROM spaces WHERE workspace IS NOT NULL
), delivered AS (
    DELETE FROM deliveries d USING unnest($3::bigint[], $4::int[]) AS x(id, generation)
    WHERE d.id = x.id AND d.generation = x.generation
), signalled AS (
    DELETE FROM change_queue WHERE id = ANY($5::bigint[])
), claimed AS (
    UPDATE change_queue SET leased_until = now() + $2 * interval '1 second' WHERE id IN (
        SELECT picked.id FROM spaces s CROSS JOIN share CROSS JOIN LATERAL (
            SELECT q.id FROM change_queue q
            WHERE q.workspace = s.workspace
              AND (q.leased_until IS NULL OR q.leased_until < now())
              AND q.id <> ALL($5::bigint[])
            ORDER BY q.id LIMIT share.n FOR UPDATE SKIP LOCKED
        ) picked
        WHERE s.workspace IS NOT NULL
    )
    RETURNING id, workspace, contact_id, kind, seq, name, changed, created
), triggering AS (
    SELECT j.workspace, jsonb_agg(jsonb_build_array(j.id, j.version, j.goal_epoch)) AS keys
    FROM journeys j
    WHERE j.workspace IN (SELECT workspace FROM claimed) AND j.status = 'active'
      AND (j.definition -> 'trigger') ? 'event'
    GROUP BY j.workspace
)
SELECT claimed.*, share.n AS share, {open_enrollments},
       coalesce(triggering.keys, '[]'::jsonb) AS event_journeys,
       ev.id AS event_id, ev.type AS event_type, ev.target AS event_target,
       ev.properties AS event_properties, ev.occurred_at AS event_occurred_at
FROM claimed CROSS JOIN share LEFT JOIN triggering ON triggering.workspace = claimed.workspace
LEFT JOIN events ev
  ON claimed.kind = 'event' AND ev.workspace = claimed.workspace AND ev.seq = claimed.seq
""".format(open_enrollments=open_enrollments("claimed"))


# A routing pass's end: its changes leave the queue, and the deliveries it routed are
# queued, leased at once to the relay that queued them (it delivers them in the same pass,
# without claiming them) and returned as a claim returns them.
ROUTED = """
WITH routed AS (
    DELETE FROM change_queue WHERE id = ANY($8::bigint[])
), queued AS (
    INSERT INTO deliveries AS d (workspace, contact_id, journey_id, workflow_id, kind, seq,
                                 next_attempt_at)
    SELECT w, c, j, wf, k, s, now() + $7 * interval '1 second'
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        AS x(w, c, j, wf, k, s)
    ON CONFLICT (workflow_id, kind, seq) DO UPDATE
    SET generation = d.generation + 1, next_attempt_at = excluded.next_attempt_at,
        failed_at = NULL
    RETURNING id, workspace, contact_id, journey_id, workflow_id, kind, seq, generation, attempts
)
SELECT queued.*, ev.id AS event_id, ev.type AS event_type, ev.target AS event_target,
       ev.properties AS event_properties, ev.occurred_at AS event_occurred_at
FROM queued
LEFT JOIN events ev
  ON queued.kind = 'event' AND ev.workspace = queued.workspace AND ev.seq = queued.seq
"""


async def claim_changes(
    conn: Queryable, limit: int, lease: float = 60.0
) -> tuple[list[Change], bool]:
    """Leases the oldest queued changes for `lease` seconds, an equal share of `limit` per
    workspace with changes (skipping rows another relay holds), in queue order; and
    whether more may be queued (a workspace took its whole share)."""
    claim = await claim_routable(conn, limit, lease)
    return claim.changes, claim.more


@dataclass(frozen=True, slots=True)
class Claim:
    """A routing pass's claim: the changes (in queue order), whether more may be queued,
    the open enrollments of their contacts (running or inside their attribution window)
    and, per workspace, the (journey id, version, goal epoch) of the active journeys an
    event starts."""

    changes: list[Change]
    more: bool
    enrollments: list[OpenEnrollment]
    event_journeys: dict[str, list[tuple[str, int, int]]]
    events: dict[tuple[str, int], ContactEvent]
    """Each event change's event, by (workspace, seq)."""

    @classmethod
    def joined(cls, claims: Sequence[Claim]) -> Claim:
        """One claim of several (changes handed over one request at a time), in queue
        order; what they read later wins (an enrollment, a workspace's journeys)."""
        enrollments = {e.workflow_id: e for c in claims for e in c.enrollments}
        return cls(
            sorted((change for c in claims for change in c.changes), key=lambda c: c.id),
            any(c.more for c in claims),
            list(enrollments.values()),
            {w: keys for c in claims for w, keys in c.event_journeys.items()},
            {key: event for c in claims for key, event in c.events.items()},
        )


async def claim_routable(
    conn: Queryable,
    limit: int,
    lease: float,
    delivered: Sequence[tuple[int, int]] = (),
    signalled: Sequence[int] = (),
) -> Claim:
    """`claim_changes`, with what routing reads next, in the same statement; which also
    deletes the `delivered` rows (id, generation) as `delete_done` does, and the
    `signalled` changes (ids) as `delete_signalled` does."""
    rows = sorted(
        await conn.fetch(
            CLAIM_CHANGES,
            limit,
            lease,
            [i for i, _ in delivered],
            [g for _, g in delivered],
            list(signalled),
        ),
        key=lambda r: r["id"],
    )
    return claim_of(rows, filled(rows))


def claim_of(rows: Sequence[Any], more: bool) -> Claim:
    """A claim from rows with `CLAIM_CHANGES`'s columns (a change each, with its contact's
    open enrollments, its workspace's event-started journeys and, for an event, the
    event), in queue order."""
    enrollments = {
        e["workflow_id"]: OpenEnrollment.from_row(e) for r in rows for e in r["open_enrollments"]
    }
    event_journeys = {
        r["workspace"]: [(k[0], k[1], k[2]) for k in r["event_journeys"]] for r in rows
    }
    events = {
        (r["workspace"], r["seq"]): event
        for r in rows
        if r["kind"] == "event" and (event := claimed_event(dict(r))) is not None
    }
    return Claim(
        [Change.from_row(r) for r in rows],
        more,
        list(enrollments.values()),
        event_journeys,
        events,
    )


async def delete_signalled(conn: Queryable, ids: Sequence[int]) -> None:
    """Removes changes the relay routed and signalled itself (it holds their lease)."""
    await conn.execute("DELETE FROM change_queue WHERE id = ANY($1::bigint[])", list(ids))


def filled(rows: list[Any]) -> bool:
    """Whether a workspace's claim took its whole share (each row carries `share`): then
    more of its rows may be waiting, and the caller claims again at once."""
    taken: dict[str, int] = {}
    for row in rows:
        taken[row["workspace"]] = taken.get(row["workspace"], 0) + 1
        if taken[row["workspace"]] >= row["share"]:
            return True
    return False


async def routed(
    conn: Queryable, changes: list[Change], deliveries: list[Delivery], lease: float
) -> list[dict[str, Any]]:
    """Deletes the routed `changes` from the queue and queues their `deliveries` (a pending
    one with the same key is renewed instead), leased to the caller for `lease` seconds, in
    one statement; the deliveries as `claim_due` returns them."""
    # in key order, so that two relays inserting overlapping rows never deadlock
    deliveries = sorted(deliveries, key=lambda d: (d.workflow_id, d.kind, d.seq))
    rows = await conn.fetch(
        ROUTED,
        [d.workspace for d in deliveries],
        [d.contact_id for d in deliveries],
        [d.journey_id for d in deliveries],
        [d.workflow_id for d in deliveries],
        [d.kind for d in deliveries],
        [d.seq for d in deliveries],
        lease,
        [c.id for c in changes],
    )
    return [dict(r) for r in rows]


CLAIM_DUE = """
WITH RECURSIVE spaces(workspace) AS (
    SELECT min(workspace) FROM deliveries WHERE failed_at IS NULL AND next_attempt_at <= now()
    UNION ALL
    SELECT (SELECT min(q.workspace) FROM deliveries q
            WHERE q.failed_at IS NULL AND q.next_attempt_at <= now()
              AND q.workspace > s.workspace)
    FROM spaces s WHERE s.workspace IS NOT NULL
), share AS (
    SELECT greatest(1, ceil($1::numeric / greatest(count(*), 1)))::int AS n
    FROM spaces WHERE workspace IS NOT NULL
)
, claimed AS (
    UPDATE deliveries d SET next_attempt_at = now() + $2 * interval '1 second'
    WHERE id IN (
        SELECT picked.id FROM spaces s CROSS JOIN share CROSS JOIN LATERAL (
            SELECT q.id FROM deliveries q
            WHERE q.workspace = s.workspace AND q.failed_at IS NULL
              AND q.next_attempt_at <= now()
            ORDER BY q.next_attempt_at, q.id LIMIT share.n FOR UPDATE SKIP LOCKED
        ) picked
        WHERE s.workspace IS NOT NULL
    )
    RETURNING id, workspace, contact_id, journey_id, workflow_id, kind, seq, generation, attempts
)
SELECT claimed.*, share.n AS share, ev.id AS event_id, ev.type AS event_type,
       ev.target AS event_target, ev.properties AS event_properties,
       ev.occurred_at AS event_occurred_at
FROM claimed CROSS JOIN share
LEFT JOIN events ev
  ON claimed.kind = 'event' AND ev.workspace = claimed.workspace AND ev.seq = claimed.seq
"""


DELETE_DONE = """
DELETE FROM deliveries d USING unnest($1::bigint[], $2::int[]) AS x(id, generation)
WHERE d.id = x.id AND d.generation = x.generation
"""


RETRY_LATER = """
UPDATE deliveries d
SET attempts = d.attempts + x.counted, last_error = x.error,
    next_attempt_at = now() + x.delay * interval '1 second'
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::int[]) AS x(id, error, delay, counted)
WHERE d.id = x.id
"""


GIVE_UP = """
UPDATE deliveries d SET failed_at = now(), last_error = x.error
FROM unnest($1::bigint[], $2::text[]) AS x(id, error) WHERE d.id = x.id
"""


async def claim_due(conn: Queryable, limit: int, lease: float) -> list[dict[str, Any]]:
    """Due deliveries, leased to the caller for `lease` seconds; each row carries the
    workspace's `share` of the claim (`filled` tells whether to claim again at once) and,
    for an event's delivery, the event (`event_id`, `event_type`, ...: `claimed_event`)."""
    return [dict(r) for r in await conn.fetch(CLAIM_DUE, limit, lease)]


def claimed_event(row: dict[str, Any]) -> ContactEvent | None:
    """The event a claimed delivery carries, as its `contact_event` signal has it; None if
    the row is no event's (or the event is gone, which cannot happen: events are kept)."""
    if row["event_id"] is None:
        return None
    return ContactEvent(
        id=row["event_id"],
        seq=row["seq"],
        type=row["event_type"],
        target=row["event_target"],
        properties=row["event_properties"],
        occurred_at=row["event_occurred_at"],
    )


async def delete_done(conn: Queryable, done: list[tuple[int, int]]) -> None:
    """Removes delivered rows (id, generation), unless a newer change renewed them."""
    await conn.execute(DELETE_DONE, [i for i, _ in done], [g for _, g in done])


async def retry_later(conn: Queryable, retry: list[tuple[int, str, float, int]]) -> None:
    """Reschedules rows (id, error, delay in seconds, 1 if the attempt counts)."""
    await conn.execute(
        RETRY_LATER,
        [r[0] for r in retry],
        [r[1] for r in retry],
        [r[2] for r in retry],
        [r[3] for r in retry],
    )


async def give_up(conn: Queryable, failed: list[tuple[int, str]]) -> None:
    """Parks rows (id, error) as dead letters."""
    await conn.execute(GIVE_UP, [i for i, _ in failed], [e for _, e in failed])


SELECT_DEAD = f"""
SELECT {COLUMNS}
FROM deliveries d
LEFT JOIN events e ON d.kind = 'event' AND e.workspace = d.workspace AND e.seq = d.seq
WHERE d.workspace = $1 AND d.failed_at IS NOT NULL
  AND ($2::text IS NULL OR d.journey_id = $2) AND ($3::text IS NULL OR d.contact_id = $3)
ORDER BY d.failed_at DESC, d.id DESC LIMIT $4
"""


REQUEUE = f"""
WITH requeued AS (
    UPDATE deliveries SET failed_at = NULL, attempts = 0, next_attempt_at = now()
    WHERE workspace = $1 AND id = $2 AND failed_at IS NOT NULL
    RETURNING *
)
SELECT {COLUMNS}
FROM requeued d
LEFT JOIN events e ON d.kind = 'event' AND e.workspace = d.workspace AND e.seq = d.seq
"""


CHANGES_CHANNEL = "nurture_changes"
"""What the relay LISTENs on; committed changes NOTIFY it (migration 003)."""

DELIVERIES_QUEUED = "deliveries"
"""The payload of a NOTIFY for deliveries queued directly (a backfill, a dead letter sent
again), not by the relay's routing: the relay then claims deliveries on its next pass."""


# The events of the last while that an event trigger names, as entry deliveries the relay
# hands to `services.triggers` like any other (the filter's target and where, and the
# entry rules, are checked there; each entry is keyed by its event).
BACKFILL = """
WITH queued AS (
    INSERT INTO deliveries AS d (workspace, contact_id, journey_id, workflow_id, kind, seq)
    SELECT e.workspace, e.contact_id, $2,
           'enrollment/' || e.workspace || '/' || $2 || '/' || e.contact_id,
           'enter_on_event', e.seq
    FROM events e
    WHERE e.workspace = $1 AND e.type = $3 AND e.occurred_at >= $4
    ORDER BY e.seq
    LIMIT $5
    ON CONFLICT (workflow_id, kind, seq) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM queued
"""


async def backfill(
    conn: Queryable, workspace: str, journey_id: str, event_type: str, since: Any, limit: int
) -> int:
    """Queues an entry delivery for each `event_type` event since `since` (at most
    `limit`); returns how many, and wakes the relay."""
    queued = int(await conn.fetchval(BACKFILL, workspace, journey_id, event_type, since, limit))
    await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, DELIVERIES_QUEUED)
    return queued


async def requeue_dead_letter(
    conn: Queryable, workspace: str, dead_letter_id: int
) -> asyncpg.Record | None:
    """A dead letter back in the relay's queue (attempts reset), and the relay woken; None
    if there is no such dead letter in the workspace."""
    row = await conn.fetchrow(REQUEUE, workspace, dead_letter_id)
    if row is not None:
        await conn.execute(f"NOTIFY {CHANGES_CHANNEL}, '{DELIVERIES_QUEUED}'")
    return row


async def dead_letters(
    conn: Queryable, workspace: Any, journey_id: Any, contact_id: Any, limit: Any
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_DEAD, workspace, journey_id, contact_id, limit)
