"""Simulating a journey for one contact (docs/testing.md): what a caller sends and what it
gets back. Pure pydantic: the API, the CLI and `services.simulation` share it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.journey import Duration

MAX_TIMELINE = 200
MAX_HORIZON = timedelta(days=400)


class SimulatedContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default="simulated-contact", min_length=1, max_length=256)
    properties: dict[str, Any] = {}
    lists: list[str] = Field(default=[], max_length=100)


class TimelineEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=256)
    target: str | None = Field(default=None, max_length=256)
    properties: dict[str, Any] = {}


class Moment(BaseModel):
    """Something that happens to the contact `at` an offset from the enrollment: an event,
    properties set (`set`, null removes), a list joined or left."""

    model_config = ConfigDict(extra="forbid")

    at: Duration
    event: TimelineEvent | None = None
    set: dict[str, Any] | None = None
    join: str | None = Field(default=None, min_length=1, max_length=256)
    leave: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_thing(self) -> Moment:
        given = [x for x in (self.event, self.set, self.join, self.leave) if x is not None]
        if len(given) != 1:
            raise ValueError("a moment is exactly one of event, set, join or leave")
        if not timedelta(0) <= self.at <= MAX_HORIZON:
            raise ValueError(f"at must be between PT0S and P{MAX_HORIZON.days}D")
        return self


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: SimulatedContact = SimulatedContact()
    timeline: list[Moment] = Field(default=[], max_length=MAX_TIMELINE)
    force: dict[str, str] = Field(default={}, max_length=20)
    """Split name → the variant this contact takes."""
    horizon: Duration = Field(default=timedelta(days=120))
    """How far the simulation may run before it stops and reports where the contact is."""


class SimulationRun(SimulationRequest):
    """`POST /v1/journeys/simulate`: a definition not yet saved."""

    journey: dict[str, Any]


class SimulatedStep(BaseModel):
    step_seq: int
    at: datetime
    offset: str
    """From the enrollment, as an ISO-8601 duration."""
    stage: str | None
    action: str
    result: str
    detail: dict[str, Any] = {}


class SimulatedMessage(BaseModel):
    at: datetime
    offset: str
    kind: str
    """`message`, `task` or `notification`."""
    channel: str | None = None
    template: str | None = None
    content: dict[str, Any] = {}
    """The rendered parts (subject, text, html) or the task's / notification's fields."""


class SimulationResult(BaseModel):
    outcome: str | None
    """None: still in the journey when the horizon was reached."""
    finished: bool
    stage: str | None
    explanation: dict[str, Any] | None = None
    reason: str | None = None
    converted: bool
    """Whether the goal would count as a conversion (a marketing message was sent, and the
    goal met while enrolled or inside the attribution window, not by a holdout or a
    suppressed contact)."""
    steps: list[SimulatedStep]
    messages: list[SimulatedMessage]
    decisions: list[dict[str, Any]]
    """Branch paths and split variants taken, with why."""
    simulated: str
    """How much time the simulation covered, as an ISO-8601 duration."""
    contact: dict[str, Any]
    """The contact as the journey left it (its own property writes and lists applied)."""
