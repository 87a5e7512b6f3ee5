"""Whether a contact may enter a journey again (docs/journeys.md, "Re-entry"). Pure: the
enrolling service reads the contact's latest entry and asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.entry import Refused
from shared.journey import Journey


@dataclass(frozen=True)
class LatestEntry:
    """The contact's latest entry into the journey."""

    entry: int
    status: str
    ended_at: datetime | None


def repeats(journey: Journey) -> bool:
    """Whether a contact may enter the journey more than once."""
    return journey.reentry is not None and journey.reentry.mode == "after_exit"


def next_entry(journey: Journey, latest: LatestEntry | None, now: datetime) -> int | Refused:
    """The number of the entry to start, or why there is none: `already_enrolled` (the
    journey enters a contact once), `already_active` (its previous entry still runs the
    journey's actions), `max_entries`, or `cooldown`."""
    if latest is None:
        return 1
    rule = journey.reentry
    if rule is None or rule.mode == "never":
        return Refused("already_enrolled", "The contact was enrolled in this journey before.")
    if latest.status == "running" or latest.ended_at is None:
        return Refused(
            "already_active",
            f"Entry {latest.entry} of the contact is still in the journey; one entry runs "
            "at a time.",
        )
    if rule.max_entries is not None and latest.entry >= rule.max_entries:
        return Refused(
            "max_entries", f"The contact entered {latest.entry} times, the journey's maximum."
        )
    if rule.cooldown is not None and now < latest.ended_at + rule.cooldown:
        until = (latest.ended_at + rule.cooldown).isoformat()
        return Refused("cooldown", f"The contact may enter again from {until} (cooldown).")
    return latest.entry + 1
