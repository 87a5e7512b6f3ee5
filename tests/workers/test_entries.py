"""An entry started by an event, on the time-skipping server: the journey it runs is bound
to the event (`match_trigger` became `where`), so only the same cart's purchase answers
its `wait_for_event`; its log says which event started it."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from temporalio.testing import WorkflowEnvironment

from shared.contact import ContactEvent
from shared.enrollment import Outcome
from shared.trigger_context import TriggerContext, bind
from tests.helpers.enrollments import enroll, until_state, waiting
from tests.helpers.journeys import journey, send, stage
from workers.worker import build_worker

SAME_CART = {"type": "purchase", "match_trigger": ["cart_id"]}
CART = journey(
    [
        stage(
            "reminder",
            send("cart-reminder"),
            {"type": "wait_for_event", "event": SAME_CART, "timeout": "P1D",
             "on_event": {"go_to": "success"}, "on_timeout": {"go_to": "failure:churned"}},
        )
    ],
    trigger={"event": {"type": "cart_abandoned"}},
)  # fmt: skip


def _purchase(seq: int, cart: str) -> ContactEvent:
    return ContactEvent(
        id=f"buy-{cart}",
        seq=seq,
        type="purchase",
        properties={"cart_id": cart},
        occurred_at=datetime(2026, 11, 29, tzinfo=UTC),
    )


async def test_an_entry_started_by_an_event_waits_for_the_same_carts_purchase(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    abandoned = ContactEvent(
        id="evt-cart",
        seq=1,
        type="cart_abandoned",
        properties={"cart_id": "c1", "items": ["mug"]},
        occurred_at=datetime(2026, 11, 29, tzinfo=UTC),
    )
    context = TriggerContext.of(abandoned, "k1")
    bound = bind(CART, context)
    assert bound.stages[0].actions[1].event.where == {"cart_id": "c1"}  # type: ignore[union-attr]
    async with build_worker(ts_env.client, pool, task_queue):
        enrollment = await enroll(
            ts_env.client, pool, task_queue, bound, contact_id="cart-owner", trigger=context,
            entered_by="event cart_abandoned (k1)",
        )  # fmt: skip
        await until_state(enrollment, waiting)
        seq = enrollment.watermark + 1
        await enrollment.signal("contact_event", _purchase(seq, "c2"))
        view = await until_state(enrollment, lambda v: v.contact_seq == seq)
        # another cart's purchase was heard, and does not answer the wait
        assert waiting(view) and view.outcome is None
        await enrollment.signal("contact_event", _purchase(enrollment.watermark + 2, "c1"))
        view = await enrollment.result()
    assert view.outcome is Outcome.SUCCESS
    steps = await enrollment.steps()
    assert steps[0]["detail"]["reason"] == "event cart_abandoned (k1)"
    waited = next(r for r in steps if r["action"] == "wait_for_event")
    assert waited["result"] == "event"
