"""A contact as one enrollment sees it: properties, list memberships and the event counters
its journey needs, with the sequence watermark of what the state already reflects.

Pure data: safe to import from workflow code. Updating a state with an event lives in
`shared.criteria.apply_event`, next to the criteria that decide which counters exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: How many recent event ids a state remembers to drop a redelivered event.
SEEN_EVENT_IDS_LIMIT = 256


class ContactState(BaseModel):
    """What the criteria evaluator reads. Never mutated: updates return a new state."""

    model_config = ConfigDict(extra="forbid")

    properties: dict[str, Any] = Field(default_factory=dict)
    lists: list[str] = Field(
        default_factory=list, description="List memberships: a set, kept sorted and unique."
    )
    event_counts: dict[str, int] = Field(
        default_factory=dict,
        description="Counters keyed by EventLeaf.counter_key(): only those the journey needs.",
    )
    event_seq: int = Field(
        default=0,
        description="Watermark: the highest event/change sequence this state reflects.",
    )
    seen_event_ids: list[str] = Field(
        default_factory=list,
        description=f"The last {SEEN_EVENT_IDS_LIMIT} event ids applied, oldest first.",
    )

    @field_validator("lists")
    @classmethod
    def _as_sorted_set(cls, lists: list[str]) -> list[str]:
        return sorted(set(lists))

    def reflects(self, seq: int) -> bool:
        """True when a change or event with this sequence is already part of the state,
        so a signal carrying it must be ignored (no double counting)."""
        return seq <= self.event_seq

    def in_list(self, name: str) -> bool:
        return name in self.lists

    def with_lists(self, lists: list[str] | set[str]) -> ContactState:
        return self.model_copy(update={"lists": sorted(set(lists))})


class ContactEvent(BaseModel):
    """One activity of a contact, as stored in `events` and delivered as a signal."""

    model_config = ConfigDict(extra="forbid")

    id: str
    seq: int
    type: str
    target: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime
