"""Delivery for real: email to an aiosmtpd SMTP server, SMS/tasks/notifications to an HTTP
webhook served by the test, exactly once and with the idempotency key on the wire. The
activities queue and wait; a sender (services/sender.py) next to them hands over."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from cli.mail_sink import Mailbox
from cli.stack import free_port
from services.sender import Sender
from shared.enrollment import EnrollmentRef, Outcome, StepRecord
from shared.journey import SendMessage
from shared.settings import Settings
from tests.helpers.channels import (
    WebhookReceiver,
    email_request,
    mailbox,
    put_template,
    smtp_sink,
    webhook_receiver,
)
from tests.helpers.enrollments import enroll
from tests.helpers.journeys import go_to, journey, send, stage
from workers.activities import JourneyActivities
from workers.steps import SendMessageRequest
from workers.worker import build_worker

NAME = "{{ contact.first_name }}"
WELCOME = {
    "subject": 'Welcome, {{ contact.first_name | default("there") }}',
    "html": "<p>Hi {{ contact.first_name }} {{ contact.company }}</p>",
    "text": "Hi {{ contact.first_name | default('there') }}, welcome aboard.",
}


async def test_email_goes_out_rendered_with_the_idempotency_key(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "welcome", **WELCOME)
    flow = journey([stage("welcome", send("welcome", "email"), go_to("success"))])
    async with (
        smtp_sink(pool) as settings,
        build_worker(ts_env.client, pool, task_queue, settings, sender=True),
    ):
        ada = await enroll(
            ts_env.client,
            pool,
            task_queue,
            flow,
            properties={"email": "ada@example.test", "first_name": "Ada", "company": "<Acme>"},
        )
        anon = await enroll(
            ts_env.client,
            pool,
            task_queue,
            flow,
            contact_id="anon",
            journey_id=ada.journey_id,
            properties={"email": "anon@example.test"},
        )
        assert (await ada.result()).outcome is Outcome.SUCCESS
        assert (await anon.result()).outcome is Outcome.SUCCESS

    mails = {m["rcpt_to"][0]: m for m in await mailbox(pool)}
    assert set(mails) == {"ada@example.test", "anon@example.test"}
    mail = mails["ada@example.test"]
    assert mail["subject"] == "Welcome, Ada"
    assert mail["text"].strip() == "Hi Ada, welcome aboard."
    assert mail["html"].strip() == "<p>Hi Ada &lt;Acme&gt;</p>"  # html is autoescaped
    assert mail["mail_from"] == "journeys@acme.test"
    assert mails["anon@example.test"]["subject"] == "Welcome, there"

    [row] = await ada.outbox()
    key = row["idempotency_key"]
    assert key == f"{ada.workflow_id}:2:email"
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    assert mail["idempotency_key"] == key
    assert mail["headers"]["X-Nurture-Idempotency-Key"] == key
    assert mail["message_id"] == f"<{key.replace(':', '%3A')}@acme.test>"
    assert ("send_message", "sent") in await ada.actions()


async def test_webhook_500_is_retried_and_each_channel_delivered_once(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """email + sms: the webhook fails once with 500, so the sender tries the SMS again
    after a backoff while the activity waits; the email it had already delivered is not
    sent again, the SMS goes out on the retry."""
    await put_template(pool, "nudge", subject="Still there?", text="Hi {{ contact.first_name }}!")
    flow = journey([stage("nudge", send("nudge", "email", "sms"), go_to("success"))])
    receiver = WebhookReceiver(script=[(500, '{"error": "busy"}')])
    async with (
        smtp_sink(pool) as settings,
        webhook_receiver(pool, receiver),
        build_worker(ts_env.client, pool, task_queue, settings, sender=True),
    ):
        ada = await enroll(
            ts_env.client,
            pool,
            task_queue,
            flow,
            properties={"email": "ada@example.test", "phone": "+15550100", "first_name": "Ada"},
        )
        assert (await ada.result()).outcome is Outcome.SUCCESS

    assert len(await mailbox(pool)) == 1
    assert len(receiver.received) == 2  # the 500, then the retry
    first, second = receiver.received
    sms_key = f"{ada.workflow_id}:2:sms"
    for request in receiver.received:
        assert request.headers["idempotency-key"] == sms_key
        assert request.headers["x-nurture-idempotency-key"] == sms_key
        assert request.signature_valid()
        assert request.path == "/hooks/nurture"
    assert not first.signature_valid("another-secret-of-16+chars")
    body = second.body
    assert body["kind"] == "message" and body["channel"] == "sms"
    assert body["to"] == "+15550100" and body["text"] == "Hi Ada!"
    assert body["idempotency_key"] == sms_key and body["contact_id"] == "ada"
    statuses = {r["channel"]: (r["status"], r["attempts"]) for r in await ada.outbox()}
    assert statuses == {"email": ("delivered", 1), "sms": ("delivered", 2)}


async def test_a_retried_activity_after_delivery_sends_nothing(pool: asyncpg.Pool) -> None:
    """The same activity request run twice (what Temporal does after a worker crash)."""
    await put_template(pool, "welcome", **WELCOME)
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ('default', 'ada', $1)",
        {"email": "ada@example.test", "first_name": "Ada"},
    )
    ref = EnrollmentRef(
        workspace="default", journey_id="jrn_x", contact_id="ada", workflow_id="enrollment/x"
    )
    step = StepRecord(
        step_seq=1,
        at="2026-01-05T10:00:00Z",  # type: ignore[arg-type]
        stage="s",
        action="send_message",
        result="queued",
    )
    request = SendMessageRequest(
        enrollment=ref,
        step=step,
        action=SendMessage(channels=["email"], template="welcome", marketing=True),
    )
    async with smtp_sink(pool) as settings, Sender(pool, settings).running():
        activities = JourneyActivities(pool, settings)
        env = ActivityEnvironment()
        first = await env.run(activities.send_message, request)
        again = await env.run(activities.send_message, request)
    assert first.send is not None and first.send.status == "sent"
    assert again.send is not None and again.send.status == "sent"
    assert first.applied == [1] and again.applied == []
    assert len(await mailbox(pool)) == 1


async def test_a_refused_delivery_skips_or_ends_as_the_journey_says(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "nudge", text="Hi {{ contact.first_name }}")
    task = {"type": "create_task", "title": "Call " + NAME, "assign_to": "owner"}
    note = {"type": "send_notification", "to": ["team:sales"], "message": NAME}
    stages = [stage("s", send("nudge", "sms"), task, note, go_to("success"))]
    skipping = journey(stages)
    ending = journey(stages, delivery={"on_failure": "end"})
    refusal = (400, '{"error": "invalid number"}')
    receiver = WebhookReceiver(script=[refusal])
    props = {"phone": "+1555", "first_name": "Ada"}
    async with (
        webhook_receiver(pool, receiver),
        build_worker(ts_env.client, pool, task_queue, sender=True),
    ):
        skip = await enroll(ts_env.client, pool, task_queue, skipping, properties=props)
        view = await skip.result()
        assert view.outcome is Outcome.SUCCESS
        assert view.failed_sends == 1  # the `state` query counts it
        receiver.script.append(refusal)
        end = await enroll(ts_env.client, pool, task_queue, ending, properties=props)
        view = await end.result()
        assert view.outcome is Outcome.DELIVERY_FAILED
        assert view.failed_sends == 1

    # skipped: logged with the provider's status line (never its body), then the task and
    # notification went out
    steps = await skip.steps()
    failed = next(s for s in steps if s["action"] == "send_message")
    assert failed["result"] == "failed"
    answer = failed["detail"]["delivery"]["channels"]["sms"]["answer"]
    assert answer == {"status": 400, "reason": "Bad Request"}
    assert [(a, r) for a, r in await skip.actions() if a != "enter_stage"] == [
        ("send_message", "failed"),
        ("create_task", "sent"),
        ("send_notification", "sent"),
        ("go_to", "jumped"),
        ("end", "success"),
    ]
    kinds = [
        (r.body["kind"], r.body.get("title") or r.body.get("message")) for r in receiver.received
    ]
    assert kinds[:3] == [("message", None), ("task", "Call Ada"), ("notification", "Ada")]
    assert all(r.signature_valid() for r in receiver.received)

    # ended: nothing after the refused message; the exit says why
    assert [a for a, _ in await end.actions()] == ["enter_stage", "send_message", "exit"]
    refused = (await end.steps())[1]
    assert refused["result"] == "failed"
    assert refused["detail"]["delivery"]["channels"]["sms"]["answer"]["status"] == 400
    exit_row = (await end.steps())[-1]
    assert exit_row["result"] == "delivery_failed"
    assert "the webhook answered 400" in exit_row["detail"]["reason"]
    assert (await end.row())["outcome"] == "delivery_failed"
    assert len(receiver.received) == 4


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_credentials_come_from_the_worker_settings(pool: asyncpg.Pool) -> None:
    """An SMTP server that requires AUTH: the settings' credentials log in and the email
    goes out; with a wrong password the sender keeps it queued and the activity fails
    retryably, saying why; nothing is sent."""

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"journeys",
            b"right-password",
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 on failure

    loop = asyncio.get_running_loop()
    port = free_port()
    server = await loop.create_server(
        lambda: SMTP(
            Mailbox(pool),
            hostname="relay.test",
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticator,
        ),
        "127.0.0.1",
        port,
    )
    await _ada_and_welcome(pool)

    def settings(password: str) -> Settings:
        return Settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_username="journeys",
            smtp_password=password,
            smtp_from="journeys@acme.test",
            send_wait_seconds=2,
        )

    env = ActivityEnvironment()
    try:
        wrong = JourneyActivities(pool, settings("wrong-password"))
        async with Sender(pool, settings("wrong-password")).running():
            with pytest.raises(ApplicationError) as refused:
                await env.run(wrong.send_message, email_request("enrollment/wrong"))
        assert not refused.value.non_retryable and "authentication" in str(refused.value)
        right = JourneyActivities(pool, settings("right-password"))
        async with Sender(pool, settings("right-password")).running():
            sent = await env.run(right.send_message, email_request("enrollment/right"))
    finally:
        server.close()
        await server.wait_closed()
    assert sent.send is not None and sent.send.status == "sent"
    [mail] = await mailbox(pool)
    assert mail["idempotency_key"] == "enrollment/right:1:email"
    [kept] = await pool.fetch(
        "SELECT status, attempts, last_error FROM outbox WHERE workflow_id = 'enrollment/wrong'"
    )
    assert kept["status"] == "queued" and kept["attempts"] >= 1
    assert "authentication" in kept["last_error"]


async def _ada_and_welcome(pool: asyncpg.Pool) -> None:
    await put_template(pool, "welcome", **WELCOME)
    await pool.execute(
        "INSERT INTO contacts (workspace, id, properties) VALUES ('default', 'ada', $1)",
        {"email": "ada@example.test", "first_name": "Ada"},
    )


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl command (the test's own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_smtp_over_starttls_and_tls_trusts_the_configured_ca(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`NURTURE_SMTP_SECURITY=starttls` to a server that refuses mail before STARTTLS,
    `tls` to a server that speaks only TLS: both deliver when `NURTURE_SMTP_CA_FILE` names
    the server's CA; without it the certificate is not trusted and nothing is sent (the
    activity fails retryably, for an operator to fix)."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    starttls_port, tls_port = free_port(), free_port()
    servers = [
        await loop.create_server(
            lambda: SMTP(
                Mailbox(pool), hostname="relay.test", tls_context=context, require_starttls=True
            ),
            "127.0.0.1",
            starttls_port,
        ),
        await loop.create_server(
            lambda: SMTP(Mailbox(pool), hostname="relay.test"),
            "127.0.0.1",
            tls_port,
            ssl=context,
        ),
    ]
    await _ada_and_welcome(pool)

    def settings(security: str, port: int, ca: Path | None) -> Settings:
        return Settings.model_validate(
            {
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_security": security,
                "smtp_ca_file": str(ca) if ca else None,
                "smtp_from": "journeys@acme.test",
                "send_wait_seconds": 2,
            }
        )

    env = ActivityEnvironment()
    try:
        untrusted = settings("starttls", starttls_port, None)
        async with Sender(pool, untrusted).running():
            with pytest.raises(ApplicationError) as refused:
                await env.run(
                    JourneyActivities(pool, untrusted).send_message,
                    email_request("enrollment/untrusted"),
                )
        assert not refused.value.non_retryable
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        for security, port in (("starttls", starttls_port), ("tls", tls_port)):
            trusted = settings(security, port, cert)
            async with Sender(pool, trusted).running():
                sent = await env.run(
                    JourneyActivities(pool, trusted).send_message,
                    email_request(f"enrollment/{security}"),
                )
            assert sent.send is not None and sent.send.status == "sent", sent.send
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
    keys = sorted(m["idempotency_key"] for m in await mailbox(pool))
    assert keys == ["enrollment/starttls:1:email", "enrollment/tls:1:email"]


async def test_an_address_list_or_a_header_in_a_property_sends_nothing_and_says_why(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A property that would add recipients (`a@x, b@y`) or headers (a line break, raw or
    encoded, rendered into the subject) fails the step for good: nothing reaches SMTP."""
    await put_template(pool, "welcome", **WELCOME)
    flow = journey([stage("welcome", send("welcome", "email"), go_to("success"))])
    evil = {
        "two": {"email": "a@example.test, b@example.test"},
        "named": {"email": "Ada <ada@example.test>"},
        "raw": {"email": "c@example.test", "first_name": "x\r\nBcc: evil@example.test"},
        "encoded": {
            "email": "d@example.test",
            "first_name": "=?utf-8?q?x=0D=0ABcc:_evil@example.test?=",
        },
    }
    async with (
        smtp_sink(pool) as settings,
        build_worker(ts_env.client, pool, task_queue, settings, sender=True),
    ):
        enrolled = {}
        journey_id = None
        for contact_id, properties in evil.items():
            enrolled[contact_id] = await enroll(
                ts_env.client,
                pool,
                task_queue,
                flow,
                contact_id=contact_id,
                journey_id=journey_id,
                properties=properties,
            )
            journey_id = enrolled[contact_id].journey_id
        for enrollment in enrolled.values():
            assert (await enrollment.result()).outcome is Outcome.SUCCESS  # on_failure: skip
    assert await mailbox(pool) == []
    reasons = {}
    for contact_id, enrollment in enrolled.items():
        step = next(r for r in await enrollment.steps() if r["action"] == "send_message")
        reasons[contact_id] = (step["result"], step["detail"]["delivery"]["reason"])
    assert reasons == {
        "two": ("failed", "invalid_address"),
        "named": ("failed", "invalid_address"),
        "raw": ("failed", "invalid_header"),
        "encoded": ("failed", "invalid_header"),
    }
