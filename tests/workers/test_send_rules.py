"""When a message may go out: quiet hours (a durable wait until the window opens), the
frequency cap across journeys (atomic in Postgres), unsubscribes. On the time-skipping
server, so days pass in moments."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from services.sender import Sender
from shared.channels import ChannelSettings
from shared.enrollment import EnrollmentRef, Outcome, StepRecord, Unenroll
from shared.journey import SendMessage
from store import workspaces as workspaces_store
from tests.helpers.channels import (
    WebhookReceiver,
    mailbox,
    put_template,
    smtp_sink,
    webhook_receiver,
)
from tests.helpers.enrollments import Enrollment, enroll, until_state
from tests.helpers.journeys import go_to, journey, send, stage
from tests.helpers.stack import eventually
from workers.activities import JourneyActivities
from workers.steps import SendMessageRequest
from workers.worker import build_worker

TOKYO = ZoneInfo("Asia/Tokyo")


async def _deliveries(enrollment: Enrollment) -> list[tuple[str, dict]]:
    return [
        (s["result"], s["detail"].get("delivery", {}))
        for s in await enrollment.steps()
        if s["action"] == "send_message"
    ]


async def test_a_send_outside_the_window_waits_until_it_opens(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "welcome", subject="Hi", text="Hello {{ contact.first_name }}")
    # a one-hour window opening three hours from now, in the contact's (Tokyo) time
    opens_local = (datetime.now(UTC) + timedelta(hours=3)).astimezone(TOKYO)
    start = opens_local.replace(second=0, microsecond=0)
    window = {"start": f"{start:%H:%M}", "end": f"{start + timedelta(hours=1):%H:%M}"}
    flow = journey(
        [stage("welcome", send("welcome", "email"), go_to("success"))],
        delivery={"send_window": window},
    )
    props = {"email": "ada@example.test", "timezone": "Asia/Tokyo", "first_name": "Ada"}
    async with (
        smtp_sink(pool) as settings,
        build_worker(ts_env.client, pool, task_queue, settings, sender=True),
    ):
        ada = await enroll(ts_env.client, pool, task_queue, flow, properties=props)
        bob = await enroll(
            ts_env.client,
            pool,
            task_queue,
            flow,
            contact_id="bob",
            journey_id=ada.journey_id,
            properties={**props, "email": "bob@example.test"},
        )

        async def bob_waits() -> None:
            assert [r for r, _ in await _deliveries(bob)] == ["deferred"]

        await eventually(bob_waits)
        await bob.signal("unenroll", Unenroll())
        assert (await bob.result()).outcome is Outcome.UNENROLLED
        assert (await ada.result()).outcome is Outcome.SUCCESS

    (deferred, waited), (sent, _) = await _deliveries(ada)
    assert (deferred, sent) == ("deferred", "sent")
    assert waited["reason"] == "send_window" and "Asia/Tokyo" in waited["message"]
    until = datetime.fromisoformat(waited["until"])
    assert until.astimezone(TOKYO).strftime("%H:%M") == window["start"]
    sent_at = next(s["at"] for s in await ada.steps() if s["result"] == "sent")
    assert until <= sent_at < until + timedelta(hours=1)
    # bob left during the wait: no email for him, nothing after the exit
    assert [m["rcpt_to"] for m in await mailbox(pool)] == [["ada@example.test"]]
    assert [a for a, _ in await bob.actions()][-1] == "exit"


async def test_the_frequency_cap_holds_across_two_concurrent_journeys(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A cap of one marketing message per day: two journeys race for the same contact;
    one sends, the other waits a (skipped) day; a third journey set to skip is skipped.
    Time is skipped only on purpose (`ts_env.sleep`): while two workflows race, the
    server's automatic skipping would also expire their running workflow tasks."""
    await put_template(pool, "promo", subject="Deal", text="A deal for you")
    cap = {"frequency_cap": {"max": 1, "per": "P1D"}}
    await workspaces_store.save_channel_settings(
        pool, "default", ChannelSettings.model_validate(cap)
    )
    flow = journey([stage("promo", send("promo", "email"), go_to("success"))])
    skipping = journey(
        [stage("promo", send("promo", "email"), go_to("success"))],
        delivery={"when_capped": "skip"},
    )
    props = {"email": "ada@example.test"}
    client = ts_env.client
    async with (
        smtp_sink(pool) as settings,
        build_worker(client, pool, task_queue, settings, sender=True),
    ):
        with ts_env.auto_time_skipping_disabled():
            pair = await asyncio.gather(
                enroll(client, pool, task_queue, flow, properties=props),
                enroll(client, pool, task_queue, flow, properties=props),
            )

            async def both_decided() -> None:
                results = sorted([[r for r, _ in await _deliveries(e)] for e in pair])
                assert results == [["deferred"], ["sent"]]
                # the end is logged by the step after the send: not there at once
                ended = [(await e.actions())[-1] == ("end", "success") for e in pair]
                assert sorted(ended) == [False, True]

            await eventually(both_decided)
            sent_first = [e for e in pair if (await e.actions())[-1] == ("end", "success")]
            waiting = [e for e in pair if e not in sent_first]
            assert len(sent_first) == 1 and len(waiting) == 1, "one sends, one waits"
            [(_, waited)] = await _deliveries(waiting[0])
            first_at = await pool.fetchval("SELECT sent_at FROM marketing_sends")
            assert datetime.fromisoformat(waited["until"]) == first_at + timedelta(days=1)
            await until_state(waiting[0], lambda v: v.waiting_until is not None)
            assert len(await mailbox(pool)) == 1

            await ts_env.sleep(timedelta(days=1, minutes=1))
            assert (await waiting[0].result()).outcome is Outcome.SUCCESS
            assert (await sent_first[0].result()).outcome is Outcome.SUCCESS
            third = await enroll(client, pool, task_queue, skipping, properties=props)
            assert (await third.result()).outcome is Outcome.SUCCESS

    sends = await pool.fetch("SELECT sent_at FROM marketing_sends ORDER BY sent_at")
    assert len(sends) == 2
    assert sends[1]["sent_at"] - sends[0]["sent_at"] >= timedelta(days=1)
    assert len(await mailbox(pool)) == 2
    assert [r for r, _ in await _deliveries(waiting[0])] == ["deferred", "sent"]
    assert waited["reason"] == "frequency_cap" and "frequency cap" in waited["message"]
    [(result, skipped)] = await _deliveries(third)
    assert result == "skipped" and skipped["reason"] == "frequency_cap"
    assert "frequency cap" in skipped["message"]


async def test_the_frequency_cap_check_and_reservation_are_atomic(pool: asyncpg.Pool) -> None:
    """Twelve send_message activities for one contact at once, each on its own Postgres
    connection (as twelve journeys' activities would be): exactly the cap's three pass."""
    await put_template(pool, "promo", subject="Deal", text="A deal for you")
    cap = {"frequency_cap": {"max": 3, "per": "P7D"}}
    await workspaces_store.save_channel_settings(
        pool, "default", ChannelSettings.model_validate(cap)
    )
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ('default', 'ada', $1)",
        {"email": "ada@example.test"},
    )
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

    def request(n: int) -> SendMessageRequest:
        ref = EnrollmentRef(
            workspace="default",
            journey_id=f"jrn_{n}",
            contact_id="ada",
            workflow_id=f"enrollment/default/jrn_{n}/ada",
        )
        step = StepRecord(step_seq=1, at=at, stage="s", action="send_message", result="queued")
        action = SendMessage(channels=["email"], template="promo", marketing=True)
        return SendMessageRequest(enrollment=ref, step=step, action=action)

    async with smtp_sink(pool) as settings, Sender(pool, settings).running():
        activities = JourneyActivities(pool, settings)
        env = ActivityEnvironment()
        results = await asyncio.gather(
            *(env.run(activities.send_message, request(n)) for n in range(12))
        )
    statuses = sorted(r.send.status for r in results if r.send is not None)
    assert statuses == ["deferred"] * 9 + ["sent"] * 3
    assert await pool.fetchval("SELECT count(*) FROM marketing_sends") == 3
    assert len(await mailbox(pool)) == 3


async def test_unsubscribed_contacts_get_no_marketing(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "news", subject="News", text="News for {{ contact.first_name }}")
    flow = journey(
        [
            stage(
                "news",
                send("news", "email", "sms"),
                send("news", "sms", marketing=False),
                go_to("success"),
            )
        ]
    )
    receiver = WebhookReceiver()
    base = {"email": "x@example.test", "phone": "+1555", "first_name": "X"}
    async with (
        smtp_sink(pool) as settings,
        webhook_receiver(pool, receiver),
        build_worker(ts_env.client, pool, task_queue, settings, sender=True),
    ):
        email_only = await enroll(
            ts_env.client, pool, task_queue, flow, properties={**base, "unsubscribed_email": True}
        )
        everything = await enroll(
            ts_env.client,
            pool,
            task_queue,
            flow,
            contact_id="bob",
            journey_id=email_only.journey_id,
            properties={**base, "unsubscribed": "true"},
        )
        await email_only.result()
        await everything.result()

    assert await mailbox(pool) == []
    marketing, transactional = await _deliveries(email_only)
    assert marketing[0] == "sent"
    assert marketing[1]["channels"]["email"] == {
        "status": "unsubscribed",
        "by": "unsubscribed_email",
    }
    assert transactional[0] == "sent"
    (skipped, why), (sent, _) = await _deliveries(everything)
    assert (skipped, sent) == ("skipped", "sent")
    assert why["reason"] == "unsubscribed" and "unsubscribed" in why["message"]
    # ada: marketing sms + transactional sms; bob: only the transactional sms
    by_contact = sorted((r.body["contact_id"], r.body["marketing"]) for r in receiver.received)
    assert by_contact == [("ada", False), ("ada", True), ("bob", False)]
