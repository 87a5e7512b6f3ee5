"""The enrollment's contract: its id, the workflow input and the state it carries across
continue-as-new, the signal payloads, the step records the activities apply, and the view
the `state` query returns.

Pure pydantic: imported by the API and by workflow code alike, never does I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from shared.contact import ContactState
from shared.journey import Journey
from shared.trigger_context import TriggerContext


def workflow_id(workspace: str, journey_id: str, contact_id: str, entry: int = 1) -> str:
    """The id of a contact's entry into a journey (docs/design.md, "One enrollment per
    contact"): the first keeps the id enrollments always had; a later entry (a journey
    that may repeat) names its number in the first segment, which no contact id can alter."""
    first = "enrollment" if entry == 1 else f"enrollment#{entry}"
    return f"{first}/{workspace}/{journey_id}/{contact_id}"


class Outcome(StrEnum):
    """How an enrollment ended: an end of the journey, or an exit code."""

    SUCCESS = "success"
    FAILURE = "failure"
    GOAL_MET = "goal_met"
    SUPPRESSED = "suppressed"
    REMOVED_FROM_LIST = "removed_from_list"
    ENDED_EARLY = "ended_early"
    UNENROLLED = "unenrolled"
    LOOP_LIMIT = "loop_limit"
    JOURNEY_DEACTIVATED = "journey_deactivated"
    DELIVERY_FAILED = "delivery_failed"
    HOLDOUT = "holdout"
    """Drawn into a split's holdout: nothing more is sent; the goal is still watched."""


class Phase(StrEnum):
    RUNNING = "running"
    IN_ATTRIBUTION_WINDOW = "in_attribution_window"
    COMPLETED = "completed"


# --- signals -------------------------------------------------------------------------


class ContactChanged(BaseModel):
    """A full snapshot of the contact as of `seq`; applied only when newer than the last."""

    seq: int
    properties: dict[str, Any] = {}
    lists: list[str] = []


class Unenroll(BaseModel):
    """Ends the enrollment from outside. A reason that is an `Outcome` value (for example
    `journey_deactivated`) becomes the outcome; anything else ends it as `unenrolled`."""

    reason: str = "unenrolled"


# --- what the activities write ---------------------------------------------------------


class EnrollmentRef(BaseModel):
    """Which enrollment a step belongs to: everything a row needs besides the step."""

    workspace: str
    journey_id: str
    contact_id: str
    workflow_id: str
    goal_epoch: int = 1


class EnterStage(BaseModel):
    """Read models of a stage entry: enrollments.stage, stage_stats, the path taken."""

    kind: Literal["enter_stage"] = "enter_stage"
    stage: str
    from_stage: str | None = None


class WriteProperty(BaseModel):
    """A property of the contact written by the journey (stage value or set_property)."""

    kind: Literal["write_property"] = "write_property"
    property: str
    value: Any
    conditional: bool = False
    """Written only if the contact still holds `expected` (None: absent): the journey's
    stage writes, so that a caller's move committed first is not overwritten."""
    expected: Any = None


class EndEnrollment(BaseModel):
    """The enrollment left the journey: an end or an exit."""

    kind: Literal["end_enrollment"] = "end_enrollment"
    from_stage: str | None
    to_node: str
    """`end:success`, `end:failure:<value>` or `exit:<outcome>` (the stage_paths node)."""
    outcome: Outcome
    end_value: str | None = None
    status: Phase
    goal_met_seq: int | None = None


class AddToList(BaseModel):
    kind: Literal["add_to_list"] = "add_to_list"
    list: str


class Convert(BaseModel):
    """Count a goal conversion, if the rules of docs/design.md, "Goal conversions" allow it."""

    kind: Literal["convert"] = "convert"
    after_end: bool
    """Met inside the attribution window: another enrollment with an equal goal that is
    still running (or met it at the same moment) takes the credit instead."""
    goal_met_seq: int | None = None
    experiments: bool = False
    """The enrollment drew a split's variant: the experiment counts the goal too."""


class Complete(BaseModel):
    kind: Literal["complete"] = "complete"


class TakePath(BaseModel):
    """A branch path or split variant taken in the record's stage: its metrics node
    (`branch:<name>/<path>`, `split:<name>/<variant>`)."""

    kind: Literal["take_path"] = "take_path"
    node: str


class Assign(BaseModel):
    """The enrollment drew a split's variant (once): the experiment's read models."""

    kind: Literal["assign"] = "assign"
    split: str
    variant: str
    holdout: bool = False
    version: int
    auto_winner: bool = False
    """The split declares its winner itself: check whether one is ahead now."""


Effect = Annotated[
    EnterStage | WriteProperty | EndEnrollment | AddToList | Convert | Complete | TakePath | Assign,
    Field(discriminator="kind"),
]


class StepRecord(BaseModel):
    """One row of the enrollment log and the read-model changes that go with it. Applied
    once: the row's key (workflow_id, step_seq) decides whether the effects run."""

    step_seq: int
    at: datetime
    stage: str | None
    action: str
    result: str
    detail: dict[str, Any] = {}
    effects: list[Effect] = []


# --- the workflow's state ----------------------------------------------------------------


class Leaving(BaseModel):
    """Why the enrollment is leaving the journey: reached an end or met an exit rule."""

    outcome: Outcome
    to_node: str
    reason: str
    end_value: str | None = None
    add_to_list: str | None = None
    explanation: dict[str, Any] | None = None
    goal_met_seq: int | None = None


class HeldValue(BaseModel):
    """A snapshot's value of a property the journey was writing at the time: whether it
    predates the write or overrides it is known only once the write's sequence is."""

    seq: int
    value: Any = None
    present: bool = False


class OwnWrite(BaseModel):
    """A property the journey wrote itself; `seq` is None until the write is committed.
    A contact snapshot older than the write must not undo it (nor count as a caller move)."""

    value: Any
    seq: int | None = None
    held: HeldValue | None = None
    """The newest snapshot value seen while `seq` was None (settled when it is known)."""


class EnrollmentState(BaseModel):
    """Everything the workflow knows, in one model: carried whole across continue-as-new."""

    phase: Phase = Phase.RUNNING
    contact: ContactState
    snapshot_seq: int = 0
    """Sequence of the newest contact snapshot applied (the watermark for contact_changed)."""
    event_watermark: int = 0
    """Events at or below this sequence were already counted in the starting snapshot."""
    own_writes: dict[str, OwnWrite] = {}

    stage: str | None = None
    action_index: int = 0
    stage_entries: int = 0
    step_seq: int = 0
    marketing_sent: bool = False
    assignments: dict[str, str] = {}
    """Split name → the variant this enrollment drew (kept if it comes back to the split)."""
    failed_sends: int = 0
    """Messages, tasks and notifications that failed for good (the log says why)."""

    unenroll: Unenroll | None = None
    stage_move: str | None = None
    stage_move_reason: str | None = None
    leaving: Leaving | None = None
    wait_until: datetime | None = None
    event_arrived: bool = False

    outcome: Outcome | None = None
    end_value: str | None = None
    explanation: dict[str, Any] | None = None
    exit_reason: str | None = None
    ended_at: datetime | None = None
    window_until: datetime | None = None
    goal_met_in_window: bool = False
    window_closed_early: str | None = None

    pending: list[StepRecord] = []
    """Log records not yet written: they ride along with the next activity."""


BEHAVIOUR = 1
"""The workflow behaviour a new run starts with (`EnrollmentInput.behaviour`). 0: runs
started before the field existed, which decide by `workflow.patched` markers; 1: sends
wait for windows and caps and a refused delivery skips or ends, a caller's stage value
that raced the journey's own write applies (no marker is written for either)."""


class EnrollmentInput(BaseModel):
    workspace: str
    journey_id: str
    journey_version: int
    journey: Journey
    contact_id: str
    contact: ContactState
    goal_epoch: int = 1
    max_stage_entries: int = 100
    entry_stage: str | None = None
    """The stage the enrollment begins in: the one whose value the contact's stage property
    held (None: the start stage, as every run before this field existed)."""
    entered_by: str | None = None
    """What enrolled the contact, in words, for the log's first step (a trigger: the
    conversion in the other journey); None: "enrolled"."""
    carried: EnrollmentState | None = None
    """Set by continue-as-new: the previous run's whole state."""
    behaviour: int = 0
    """`BEHAVIOUR` for new runs; 0 in histories from before it (they replay by markers)."""
    entry: int = 1
    """Which entry of the contact into the journey this is (journeys that may repeat)."""
    trigger: TriggerContext | None = None
    """The event that started the entry (an event-triggered journey): `{{ trigger.* }}`."""
    forced: dict[str, str] = {}
    """Split name → the variant to take (simulations that force a path)."""
    winners: dict[str, str] = {}
    """Split name → the winner declared before this enrollment started (auto splits send
    new contacts down the winner's path)."""
    continue_as_new_after: int | None = Field(default=None, ge=20)
    """History length that triggers continue-as-new (tests); None: when Temporal suggests."""

    def ref(self, workflow_id: str) -> EnrollmentRef:
        """What every step row of this enrollment names."""
        return EnrollmentRef(
            workspace=self.workspace,
            journey_id=self.journey_id,
            contact_id=self.contact_id,
            workflow_id=workflow_id,
            goal_epoch=self.goal_epoch,
        )

    def first_state(self) -> EnrollmentState:
        """The state of a new enrollment: the contact as loaded, its watermarks."""
        return EnrollmentState(
            contact=self.contact,
            snapshot_seq=self.contact.event_seq,
            event_watermark=self.contact.event_seq,
        )


class EnrollmentView(BaseModel):
    """The `state` query: where the contact is and what happens next, in words."""

    phase: Phase
    stage: str | None
    next_action: str | None
    details: str
    stage_entries: int
    step_seq: int
    outcome: Outcome | None
    end_value: str | None
    reason: str | None
    explanation: dict[str, Any] | None
    marketing_sent: bool
    waiting_until: datetime | None
    window_until: datetime | None
    contact_seq: int
    pending_steps: int
    failed_sends: int = 0
    """Sends that failed for good; each step's log (and activity result) says why."""
