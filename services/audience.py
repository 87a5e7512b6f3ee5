"""A journey's audience: the contacts activation would enroll, read in pages by contact
id, and a preview of who would be refused and why (DESIGN §3.2, §3.8).

"Eligible" is the list/stage rule the triggers use (`shared.entry.enters`): in one of
the journey's eligible lists (any contact when it names none), with the stage property at
the start stage's value, or empty with `enroll_empty_stage`. A journey entered by trigger
(`goal_achieved_in`) has no audience to activate. Does I/O: never imported by workflows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.contact import ContactEvent, ContactState
from shared.criteria import apply_event
from shared.entry import refusal_for, start_value
from shared.journey import Journey
from store.db import Queryable

# $1 workspace, $2 eligible lists, $3 stage property, $4 start value, $5 enroll_empty_stage
_ELIGIBLE = """
c.workspace = $1
AND (cardinality($2::text[]) = 0 OR EXISTS (
    SELECT 1 FROM list_members m
    WHERE m.workspace = c.workspace AND m.contact_id = c.id AND m.list = ANY($2::text[])))
AND CASE WHEN coalesce(c.properties -> $3::text, 'null') IN ('null'::jsonb, '""'::jsonb)
         THEN $5::boolean
         ELSE coalesce(c.properties -> $3 = to_jsonb($4::text), false) END
"""
COUNT_ELIGIBLE = f"SELECT count(*) FROM contacts c WHERE {_ELIGIBLE}"
ELIGIBLE_PAGE = f"""
SELECT c.id FROM contacts c WHERE {_ELIGIBLE} AND c.id > $6 ORDER BY c.id LIMIT $7
"""
# The preview reads what the refusal checks need, a page at a time.
PREVIEW_PAGE = f"""
SELECT c.id, c.properties,
       ARRAY(SELECT m.list FROM list_members m
             WHERE m.workspace = c.workspace AND m.contact_id = c.id) AS lists,
       EXISTS (SELECT 1 FROM enrollments e
               WHERE e.workspace = c.workspace AND e.journey_id = $8 AND e.contact_id = c.id)
           AS enrolled
FROM contacts c WHERE {_ELIGIBLE} AND c.id > $6 ORDER BY c.id LIMIT $7
"""
PREVIEW_EVENTS = """
SELECT contact_id, seq, id, type, target, properties, occurred_at FROM events
WHERE workspace = $1 AND contact_id = ANY($2::text[]) AND type = ANY($3::text[])
ORDER BY contact_id, seq
"""

PREVIEW_PAGE_SIZE = 1000


def bulk_enrolls(journey: Journey) -> bool:
    """Whether activation enrolls the audience (a trigger journey is entered by trigger)."""
    return journey.trigger is None


def _rule(journey: Journey) -> tuple[list[str], str, str | None, bool]:
    return (
        sorted(set(journey.eligible_lists)),
        journey.stage_property,
        start_value(journey),
        journey.enroll_empty_stage,
    )


async def count_eligible(conn: Queryable, workspace: str, journey: Journey) -> int:
    if not bulk_enrolls(journey):
        return 0
    return int(await conn.fetchval(COUNT_ELIGIBLE, workspace, *_rule(journey)) or 0)


async def eligible_page(
    conn: Queryable, workspace: str, journey: Journey, after: str, limit: int
) -> list[str]:
    """The ids of the next `limit` eligible contacts after `after`, in id order."""
    if not bulk_enrolls(journey):
        return []
    rows = await conn.fetch(ELIGIBLE_PAGE, workspace, *_rule(journey), after, limit)
    return [r["id"] for r in rows]


@dataclass
class Preview:
    eligible: int = 0
    would_enroll: int = 0
    refused: Counter[str] = field(default_factory=Counter)


async def preview(conn: Queryable, workspace: str, journey_id: str, journey: Journey) -> Preview:
    """What activating would do now: every eligible contact, classified as activation
    would (already in the journey first, then the refusals of DESIGN §3.2 in order),
    from a few queries per thousand contacts. Enrolls nobody, records nothing."""
    result = Preview()
    if not bulk_enrolls(journey):
        return result
    event_types = sorted({leaf.event for leaf in journey.counted_event_leaves()})
    after = ""
    while True:
        rows = await conn.fetch(
            PREVIEW_PAGE, workspace, *_rule(journey), after, PREVIEW_PAGE_SIZE, journey_id
        )
        if not rows:
            return result
        events: dict[str, list[Any]] = {}
        if event_types:
            ids = [r["id"] for r in rows]
            for e in await conn.fetch(PREVIEW_EVENTS, workspace, ids, event_types):
                events.setdefault(e["contact_id"], []).append(e)
        for row in rows:
            result.eligible += 1
            if row["enrolled"]:
                result.refused["already_enrolled"] += 1
                continue
            state = ContactState(properties=row["properties"], lists=list(row["lists"]))
            for e in events.get(row["id"], ()):
                fields = {k: v for k, v in dict(e).items() if k != "contact_id"}
                state = apply_event(state, ContactEvent(**fields), journey)
            refusal = refusal_for(journey, state)
            if refusal is None:
                result.would_enroll += 1
            else:
                result.refused[refusal.reason] += 1
        after = rows[-1]["id"]
