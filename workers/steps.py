"""What the workflow asks the activities to do: activity names and their requests.

Pure pydantic, so the workflow can import it without pulling in any I/O library; the
activities in `workers.activities` implement these names.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.enrollment import EnrollmentRef, StepRecord
from shared.journey import CreateTask, SendMessage, SendNotification

SEND_MESSAGE = "send_message"
CREATE_TASK = "create_task"
SET_PROPERTY = "set_property"
SEND_NOTIFICATION = "send_notification"
RECORD_STEPS = "record_steps"


class StepRequest(BaseModel):
    """Every activity writes the pending log records first, then its own step, all in one
    transaction: a retry finds the rows and neither writes nor counts anything twice."""

    enrollment: EnrollmentRef
    pending: list[StepRecord] = []
    step: StepRecord | None = None


class SendMessageRequest(StepRequest):
    action: SendMessage
    properties: dict[str, Any] = {}


class CreateTaskRequest(StepRequest):
    action: CreateTask
    properties: dict[str, Any] = {}


class SendNotificationRequest(StepRequest):
    action: SendNotification
    properties: dict[str, Any] = {}


class StepResult(BaseModel):
    applied: list[int] = []
    """Step sequence numbers written by this call (a retry returns fewer or none)."""
    contact_seq: int | None = None
    """Sequence of the contact row after the journey's own property writes, if any."""
