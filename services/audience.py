"""A journey's audience: the contacts activation would enroll, read in pages by contact
id, and a preview of who would be refused and why (docs/design.md, "Entry and refusals" and
"Journey life cycle"). Used by the API process (preview) and the worker (activation pages).

"Eligible" is the list/stage rule the triggers use (`shared.entry.enters`): in one of
the journey's eligible lists (any contact when it names none), with the stage property at
any stage's value, or empty with `enroll_empty_stage`. A journey entered by trigger
(`goal_achieved_in`) has no audience to activate. Does I/O: never imported by workflows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.entry import refusal_for, stage_values
from shared.journey import Journey
from store import contacts as contacts_store
from store.db import Queryable

PREVIEW_PAGE_SIZE = 1000


def bulk_enrolls(journey: Journey) -> bool:
    """Whether activation enrolls the audience (a trigger journey is entered by trigger)."""
    return journey.trigger is None


def _rule(journey: Journey) -> tuple[list[str], str, list[str], bool]:
    return (
        sorted(set(journey.eligible_lists)),
        journey.stage_property,
        stage_values(journey),
        journey.enroll_empty_stage,
    )


async def count_eligible(conn: Queryable, workspace: str, journey: Journey) -> int:
    """How many contacts activation would enroll (none for a journey entered by trigger)."""
    if not bulk_enrolls(journey):
        return 0
    return await count_matching(conn, workspace, journey)


async def count_matching(conn: Queryable, workspace: str, journey: Journey) -> int:
    """Contacts that meet the list and stage-value rule now, whatever enters the journey:
    the metrics' `eligible` (docs/metrics.md)."""
    return await contacts_store.count_eligible(conn, workspace, _rule(journey))


async def eligible_page(
    conn: Queryable, workspace: str, journey: Journey, after: str, limit: int
) -> list[str]:
    """The ids of the next `limit` eligible contacts after `after`, in id order."""
    if not bulk_enrolls(journey):
        return []
    return await contacts_store.eligible_page(conn, workspace, _rule(journey), after, limit)


@dataclass
class Preview:
    eligible: int = 0
    would_enroll: int = 0
    refused: Counter[str] = field(default_factory=Counter)


async def preview(conn: Queryable, workspace: str, journey_id: str, journey: Journey) -> Preview:
    """What activating would do now: every eligible contact, classified as activation
    would (already in the journey first, then the refusals of docs/design.md, "Entry and
    refusals", in order),
    from a few queries per thousand contacts. Enrolls nobody, records nothing."""
    result = Preview()
    if not bulk_enrolls(journey):
        return result
    after = ""
    while True:
        page = await contacts_store.preview_page(
            conn, workspace, _rule(journey), journey_id, journey, after, PREVIEW_PAGE_SIZE
        )
        if not page:
            return result
        for _, state in page:
            result.eligible += 1
            if state is None:
                result.refused["already_enrolled"] += 1
                continue
            refusal = refusal_for(journey, state)
            if refusal is None:
                result.would_enroll += 1
            else:
                result.refused[refusal.reason] += 1
        after = page[-1][0]
