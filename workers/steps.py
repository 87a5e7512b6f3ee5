"""What the workflow asks the activities to do: activity names and their requests.

Pure pydantic, so the workflow can import it without pulling in any I/O library; the
activities in `workers.activities` implement these names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from shared.enrollment import EnrollmentRef, StepRecord
from shared.journey import CreateTask, DeliveryOptions, SendMessage, SendNotification

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
    trigger: dict[str, Any] | None = None
    """The event that started the entry, for `{{ trigger.* }}` in templates."""
    delivery: DeliveryOptions = DeliveryOptions()
    """The journey's send window and what to do when capped."""


class CreateTaskRequest(StepRequest):
    action: CreateTask
    properties: dict[str, Any] = {}
    trigger: dict[str, Any] | None = None


class SendNotificationRequest(StepRequest):
    action: SendNotification
    properties: dict[str, Any] = {}
    trigger: dict[str, Any] | None = None


SendStatus = Literal["sending", "sent", "queued", "skipped", "deferred", "failed"]


class SendOutcome(BaseModel):
    """What became of a message, task or notification (recorded on its log row, so a
    retried activity answers the same)."""

    status: SendStatus
    """`sent`: delivered (or, per channel, kept where none is configured); `queued`: no
    channel configured, kept in the outbox; `skipped`: not sent (unsubscribed, capped);
    `deferred`: not yet, try again at `until`; `failed`: a provider refused for good."""
    reason: str | None = None
    """`unsubscribed`, `frequency_cap`, `send_window`, `provider_refused`, ..."""
    message: str | None = None
    """In words, for the enrollment log."""
    until: datetime | None = None
    channels: dict[str, Any] = {}
    """Per channel (or kind): its status and the provider's answer."""


class StepResult(BaseModel):
    applied: list[int] = []
    """Step sequence numbers written by this call (a retry returns fewer or none)."""
    contact_seq: int | None = None
    """Sequence of the contact row after the journey's own property writes, if any."""
    refused_writes: list[str] = []
    """Properties whose conditional write found a caller's value and left it (the last
    write of each property in the request decides)."""
    send: SendOutcome | None = None
    """Messages, tasks and notifications: what became of them."""
