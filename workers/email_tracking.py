"""Tracking an email as the send activity queues it (docs/channels.md, "Tracking"): the
open pixel, click-tracked links, the unsubscribe link and headers, and the row the
tracking endpoints read. In the step's transaction, keyed by the outbox row's idempotency
key, so a retried activity writes the same message the same way once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import tracking
from shared.enrollment import EnrollmentRef, StepRecord
from shared.journey import DeliveryOptions, SendMessage
from shared.settings import Settings
from store import tracking as tracking_store
from store.db import Queryable


@dataclass(frozen=True)
class Plan:
    message: bytes
    unsubscribe_url: str


class EmailTracking:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.tracking_secret
        self.base = settings.public_url
        self.mailto = settings.unsubscribe_mailto
        self.text_links = settings.track_text_links

    def plan(self, key: str, action: SendMessage, delivery: DeliveryOptions) -> Plan | None:
        """None when tracking is off: no secret, or the journey or message says so."""
        wanted = action.tracking if action.tracking is not None else delivery.tracking
        if not self.secret or not wanted:
            return None
        message = tracking.message_id(self.secret, key)
        return Plan(message, tracking.unsubscribe_url(self.secret, self.base, message))

    async def apply(
        self,
        conn: Queryable,
        plan: Plan,
        content: dict[str, Any],
        key: str,
        ref: EnrollmentRef,
        step: StepRecord,
        action: SendMessage,
    ) -> dict[str, Any]:
        """The content to queue: HTML tracked, the unsubscribe headers of a marketing
        message; and the tracked message's row."""
        assert self.secret is not None
        links: list[str] = []
        if content.get("html"):
            done = tracking.track_html(
                self.secret, self.base, plan.message, content["html"], skip=plan.unsubscribe_url
            )
            content = {**content, "html": done.html}
            links = done.links
        if self.text_links and content.get("text"):
            text = tracking.track_text(
                self.secret, self.base, plan.message, content["text"], links,
                skip=plan.unsubscribe_url,
            )  # fmt: skip
            content = {**content, "text": text}
        if action.marketing:
            targets = [plan.unsubscribe_url] + ([f"mailto:{self.mailto}"] if self.mailto else [])
            content = {**content, "list_unsubscribe": targets}
        await tracking_store.track(
            conn, plan.message, key, ref.workspace, ref.journey_id, ref.contact_id,
            ref.workflow_id, step.stage, action.template, action.marketing, links,
        )  # fmt: skip
        return content
