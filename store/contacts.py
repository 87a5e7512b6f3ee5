"""Contacts and list memberships (`contacts`, `list_members`), and a contact's state as a
journey sees it (properties, lists, the journey's events counted) with its watermark."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.contact import ContactEvent, ContactState
from shared.criteria import apply_event
from shared.enrollment import ContactChanged
from shared.journey import Journey
from store.db import Queryable, pairs

SELECT_CONTACT = "SELECT id, properties, seq FROM contacts WHERE workspace = $1 AND id = $2"

SELECT_LISTS = (
    "SELECT list FROM list_members WHERE workspace = $1 AND contact_id = $2 ORDER BY list"
)

# $3: the properties to set; $4: the properties to remove. Only a real change moves seq.
UPSERT_CONTACT = """
INSERT INTO contacts AS c (workspace, id, properties) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (workspace, id) DO UPDATE
SET properties = (c.properties || $3::jsonb) - $4::text[],
    seq = nextval('change_seq'), updated_at = now()
WHERE (c.properties || $3::jsonb) - $4::text[] IS DISTINCT FROM c.properties
"""

BUMP_SEQ = """
UPDATE contacts SET seq = nextval('change_seq'), updated_at = now()
WHERE workspace = $1 AND id = ANY($2::text[])
"""

LOCK_OR_CREATE = """
INSERT INTO contacts AS c (workspace, id)
SELECT $1, id FROM unnest($2::text[]) AS id ORDER BY id
ON CONFLICT (workspace, id) DO UPDATE SET updated_at = c.updated_at
"""

LOCK_EXISTING = """
SELECT id FROM contacts WHERE workspace = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE
"""

ADD_MEMBERS = """
INSERT INTO list_members (workspace, list, contact_id)
SELECT $1, $2, id FROM unnest($3::text[]) AS id
ON CONFLICT DO NOTHING
RETURNING contact_id
"""

REMOVE_MEMBERS = """
DELETE FROM list_members WHERE workspace = $1 AND list = $2 AND contact_id = ANY($3::text[])
RETURNING contact_id
"""

SELECT_MEMBERS = """
SELECT contact_id FROM list_members
WHERE workspace = $1 AND list = $2 AND contact_id > $3
ORDER BY contact_id LIMIT $4
"""

SELECT_PROPERTIES = "SELECT properties FROM contacts WHERE workspace = $1 AND id = $2"

WRITE_PROPERTY = """
INSERT INTO contacts AS c (workspace, id, properties)
VALUES ($1, $2, jsonb_build_object($3::text, $4::jsonb))
ON CONFLICT (workspace, id) DO UPDATE
SET properties = c.properties || jsonb_build_object($3::text, $4::jsonb),
    seq = nextval('change_seq'), updated_at = now()
RETURNING seq
"""

ADD_MEMBER = """
INSERT INTO list_members (workspace, list, contact_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""

TOUCH_CONTACT = """
INSERT INTO contacts AS c (workspace, id) VALUES ($1, $2)
ON CONFLICT (workspace, id) DO UPDATE SET seq = nextval('change_seq'), updated_at = now()
RETURNING seq
"""

SELECT_SNAPSHOTS = """
SELECT c.workspace, c.id, c.seq, c.properties,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id ORDER BY m.list) AS lists
FROM contacts c
WHERE (c.workspace, c.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""

SELECT_CONTACTS = """
SELECT c.workspace, c.id, c.properties,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists
FROM contacts c
WHERE (c.workspace, c.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""

# What journey_state's watermark would be now: equal means nothing changed since.
SELECT_WATERMARK = """
SELECT greatest(
    (SELECT seq FROM contacts WHERE workspace = $1 AND id = $2),
    (SELECT coalesce(max(seq), 0) FROM events WHERE workspace = $1 AND contact_id = $2)
)
"""

SNAPSHOT_CONTACTS = """
SELECT c.id, c.properties, c.seq,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists,
       (SELECT coalesce(max(e.seq), 0) FROM events e
        WHERE e.workspace = c.workspace AND e.contact_id = c.id) AS last_event
FROM contacts c WHERE c.workspace = $1 AND c.id = ANY($2::text[])
"""

CONTACT_EVENTS = """
SELECT seq, id, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND contact_id = $2 AND type = ANY($3::text[]) ORDER BY seq
"""

LAST_EVENT_SEQ = """
SELECT coalesce(max(seq), 0) FROM events WHERE workspace = $1 AND contact_id = $2
"""

CONTACTS_EVENTS = """
SELECT contact_id, seq, id, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND contact_id = ANY($2::text[]) AND type = ANY($3::text[])
ORDER BY contact_id, seq
"""

SELECT_WATERMARKS = """
SELECT c.id, greatest(c.seq, (SELECT coalesce(max(e.seq), 0) FROM events e
                              WHERE e.workspace = c.workspace AND e.contact_id = c.id))
       AS watermark
FROM contacts c WHERE c.workspace = $1 AND c.id = ANY($2::text[])
"""

# $1 workspace, $2 eligible lists, $3 stage property, $4 the stages' values,
# $5 enroll_empty_stage. With lists, the members drive (index lookups into contacts); an
# OR between "no lists" and the membership test would make Postgres scan every contact.
_IN_LISTS = """
c.workspace = $1
AND c.id IN (SELECT m.contact_id FROM list_members m
             WHERE m.workspace = $1 AND m.list = ANY($2::text[]))
"""
_ANY_CONTACT = "c.workspace = $1 AND cardinality($2::text[]) = 0"
_STAGE_RULE = """
AND CASE WHEN coalesce(c.properties -> $3::text, 'null') IN ('null'::jsonb, '""'::jsonb)
         THEN $5::boolean
         ELSE jsonb_typeof(c.properties -> $3::text) = 'string'
              AND (c.properties ->> $3::text) = ANY($4::text[]) END
"""


def _eligible(lists: list[str], query: str) -> str:
    return query.format(eligible=(_IN_LISTS if lists else _ANY_CONTACT) + _STAGE_RULE)


COUNT_ELIGIBLE = "SELECT count(*) FROM contacts c WHERE {eligible}"

ELIGIBLE_PAGE = """
SELECT c.id FROM contacts c WHERE {eligible} AND c.id > $6 ORDER BY c.id LIMIT $7
"""

# The preview reads what the refusal checks need, a page at a time.
PREVIEW_PAGE = """
SELECT c.id, c.properties,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists,
       EXISTS (SELECT 1 FROM enrollments e
               WHERE e.workspace = c.workspace AND e.journey_id = $8 AND e.contact_id = c.id)
           AS enrolled
FROM contacts c WHERE {eligible} AND c.id > $6 ORDER BY c.id LIMIT $7
"""


# --- the caller's writes --------------------------------------------------------------


async def contact(conn: Queryable, workspace: str, contact_id: str) -> asyncpg.Record | None:
    """id, properties, seq."""
    return await conn.fetchrow(SELECT_CONTACT, workspace, contact_id)


async def lists_of(conn: Queryable, workspace: str, contact_id: str) -> list[str]:
    """The lists the contact is in, by name."""
    return [r["list"] for r in await conn.fetch(SELECT_LISTS, workspace, contact_id)]


async def upsert(
    conn: Queryable, workspace: str, contact_id: str, to_set: dict[str, Any], to_remove: list[str]
) -> str:
    """Sets and removes properties; only a real change draws a new sequence number."""
    return await conn.execute(UPSERT_CONTACT, workspace, contact_id, to_set, to_remove)


async def bump(conn: Queryable, workspace: str, contact_ids: list[str]) -> None:
    """Draws a new sequence number for each contact (its lists changed)."""
    await conn.execute(BUMP_SEQ, workspace, contact_ids)


async def lock(
    conn: Queryable, workspace: str, contact_ids: list[str], *, create: bool
) -> set[str]:
    """Takes the row lock of each contact, in the order given (callers sort, so two batches
    never deadlock), creating the missing ones when `create`. Returns the ids that exist."""
    if create:
        await conn.execute(LOCK_OR_CREATE, workspace, contact_ids)
        return set(contact_ids)
    return {r["id"] for r in await conn.fetch(LOCK_EXISTING, workspace, contact_ids)}


async def add_members(
    conn: Queryable, workspace: str, list_name: str, contact_ids: list[str]
) -> list[str]:
    """Adds contacts to a list; returns those that were not members."""
    rows = await conn.fetch(ADD_MEMBERS, workspace, list_name, contact_ids)
    return [r["contact_id"] for r in rows]


async def remove_members(
    conn: Queryable, workspace: str, list_name: str, contact_ids: list[str]
) -> list[str]:
    """Removes contacts from a list; returns those that were members."""
    rows = await conn.fetch(REMOVE_MEMBERS, workspace, list_name, contact_ids)
    return [r["contact_id"] for r in rows]


async def members(
    conn: Queryable, workspace: str, list_name: str, after: str, limit: int
) -> list[str]:
    """A page of a list's members, in id order after `after`."""
    rows = await conn.fetch(SELECT_MEMBERS, workspace, list_name, after, limit)
    return [r["contact_id"] for r in rows]


# --- the journey's writes (in the step's transaction) ---------------------------------


async def properties(conn: Queryable, workspace: str, contact_id: str) -> dict[str, Any] | None:
    """The contact's properties as they are now, None if there is no such contact."""
    found = await conn.fetchval(SELECT_PROPERTIES, workspace, contact_id)
    return dict(found) if found is not None else None


async def write_property(
    conn: Queryable, workspace: str, contact_id: str, name: str, value: Any
) -> int:
    """Sets one property; the contact's new sequence number."""
    seq: int = await conn.fetchval(WRITE_PROPERTY, workspace, contact_id, name, value)
    return seq


async def join_list(conn: Queryable, workspace: str, list_name: str, contact_id: str) -> int:
    """Adds the contact to a list; the contact's new sequence number."""
    await conn.execute(ADD_MEMBER, workspace, list_name, contact_id)
    seq: int = await conn.fetchval(TOUCH_CONTACT, workspace, contact_id)
    return seq


# --- reads for the relay --------------------------------------------------------------


async def snapshots(
    conn: Queryable, contacts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ContactChanged]:
    """Each (workspace, contact id) as it is now, as a `contact_changed` signal carries it."""
    workspaces, ids = pairs(contacts)
    if not ids:
        return {}
    return {
        (c["workspace"], c["id"]): ContactChanged(
            seq=c["seq"], properties=c["properties"], lists=list(c["lists"])
        )
        for c in await conn.fetch(SELECT_SNAPSHOTS, workspaces, ids)
    }


async def views(
    conn: Queryable, contacts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[dict[str, Any], frozenset[str]]]:
    """(properties, lists) of each (workspace, contact id): what the entry rules read."""
    workspaces, ids = pairs(contacts)
    if not ids:
        return {}
    rows = await conn.fetch(SELECT_CONTACTS, workspaces, ids)
    return {(r["workspace"], r["id"]): (r["properties"], frozenset(r["lists"])) for r in rows}


# --- a contact's state as a journey sees it -------------------------------------------


async def journey_state(
    conn: Queryable, workspace: str, contact_id: str, journey: Journey
) -> ContactState | None:
    """The contact as the journey sees it, with the watermark of what it already reflects.
    For a watermark to be exact, run it in one snapshot (`snapshot_state`)."""
    row = await conn.fetchrow(SELECT_CONTACT, workspace, contact_id)
    if row is None:
        return None
    lists = sorted(await lists_of(conn, workspace, contact_id))
    state = ContactState(properties=row["properties"], lists=lists, event_seq=row["seq"])
    for event in await conn.fetch(
        CONTACT_EVENTS, workspace, contact_id, sorted(journey.event_types())
    ):
        state = apply_event(state, ContactEvent(**dict(event)), journey)
    last_event = await conn.fetchval(LAST_EVENT_SEQ, workspace, contact_id)
    return state.model_copy(update={"event_seq": max(row["seq"], last_event)})


async def snapshot_state(
    conn: asyncpg.Connection | PoolConnectionProxy,
    workspace: str,
    contact_id: str,
    journey: Journey,
) -> ContactState | None:
    """`journey_state` in one repeatable-read snapshot: the contact row, its lists and
    its events as of one instant, so the watermark covers exactly what the state holds
    (every writer takes the contact's row lock before it draws a sequence number, so a
    change the snapshot misses has a higher sequence than any it holds)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await journey_state(conn, workspace, contact_id, journey)


async def watermark(conn: Queryable, workspace: str, contact_id: str) -> int | None:
    """What `journey_state`'s watermark would be now: equal means nothing changed since."""
    found: int | None = await conn.fetchval(SELECT_WATERMARK, workspace, contact_id)
    return found


async def snapshot_states(
    conn: asyncpg.Connection | PoolConnectionProxy,
    workspace: str,
    contact_ids: Sequence[str],
    journey: Journey,
) -> dict[str, ContactState]:
    """`snapshot_state` of many contacts, in one snapshot and two queries; a contact that
    does not exist is missing from the result."""
    event_types = sorted(journey.event_types())
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(SNAPSHOT_CONTACTS, workspace, list(contact_ids))
        events = await _events_of(conn, workspace, list(contact_ids), event_types)
    states: dict[str, ContactState] = {}
    for row in rows:
        state = ContactState(
            properties=row["properties"], lists=sorted(row["lists"]), event_seq=row["seq"]
        )
        for event in events.get(row["id"], ()):
            state = apply_event(state, event, journey)
        states[row["id"]] = state.model_copy(
            update={"event_seq": max(row["seq"], row["last_event"])}
        )
    return states


async def watermarks(conn: Queryable, workspace: str, contact_ids: list[str]) -> dict[str, int]:
    """`watermark` of many contacts."""
    rows = await conn.fetch(SELECT_WATERMARKS, workspace, contact_ids)
    return {r["id"]: r["watermark"] for r in rows}


async def _events_of(
    conn: Queryable, workspace: str, contact_ids: list[str], event_types: list[str]
) -> dict[str, list[ContactEvent]]:
    """The contacts' events of the given types, per contact in sequence order."""
    events: dict[str, list[ContactEvent]] = {}
    if not event_types or not contact_ids:
        return events
    for row in await conn.fetch(CONTACTS_EVENTS, workspace, contact_ids, event_types):
        fields = {k: v for k, v in dict(row).items() if k != "contact_id"}
        events.setdefault(row["contact_id"], []).append(ContactEvent(**fields))
    return events


# --- a journey's audience ---------------------------------------------------------------

AudienceRule = tuple[list[str], str, list[str], bool]
"""(eligible lists, stage property, the stages' values, enroll_empty_stage)."""


async def count_eligible(conn: Queryable, workspace: str, rule: AudienceRule) -> int:
    return int(await conn.fetchval(_eligible(rule[0], COUNT_ELIGIBLE), workspace, *rule) or 0)


async def eligible_page(
    conn: Queryable, workspace: str, rule: AudienceRule, after: str, limit: int
) -> list[str]:
    """The ids of the next `limit` eligible contacts after `after`, in id order."""
    return [
        r["id"]
        for r in await conn.fetch(_eligible(rule[0], ELIGIBLE_PAGE), workspace, *rule, after, limit)
    ]


async def preview_page(
    conn: Queryable,
    workspace: str,
    rule: AudienceRule,
    journey_id: str,
    journey: Journey,
    after: str,
    limit: int,
) -> list[tuple[str, ContactState | None]]:
    """The next eligible contacts after `after`, each with its state as the refusal checks
    read it (the goal's events counted), or None when it is in the journey already."""
    rows = await conn.fetch(
        _eligible(rule[0], PREVIEW_PAGE), workspace, *rule, after, limit, journey_id
    )
    event_types = sorted({leaf.event for leaf in journey.counted_event_leaves()})
    events = await _events_of(conn, workspace, [r["id"] for r in rows], event_types)
    page: list[tuple[str, ContactState | None]] = []
    for row in rows:
        if row["enrolled"]:
            page.append((row["id"], None))
            continue
        state = ContactState(properties=row["properties"], lists=list(row["lists"]))
        for event in events.get(row["id"], ()):
            state = apply_event(state, event, journey)
        page.append((row["id"], state))
    return page
