"""Webhook SSRF (docs/reliability.md, "Security"): a workspace could point its webhook at
this machine (Postgres, Temporal), a private network or the cloud metadata address, and the
reply's first 1,000 characters came back in the enrollment log. Now such URLs are refused
when saved and again when the sender connects, and a reply's body is never kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.stack import free_port
from services.outbound import ForbiddenDestination, save_time_refusal, vetted_address
from services.providers import PermanentFailure, TransientFailure, Webhook
from shared.channels import ChannelSettings
from shared.destinations import Allowance
from shared.enrollment import Outcome
from shared.settings import Settings
from store import workspaces as workspaces_store
from tests.helpers.channels import WEBHOOK_SECRET, WebhookReceiver, put_template, webhook_receiver
from tests.helpers.enrollments import enroll
from tests.helpers.journeys import go_to, journey, send, stage
from tests.helpers.stack import running_stack
from workers.worker import build_worker

TARGETS = [
    "http://127.0.0.1:5432/",
    "http://127.0.0.1:7233/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/",
    "http://10.0.0.5/",
    "http://192.168.1.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:8000/",
    "http://localhost:8000/",
    "http://224.0.0.1/",
    "http://100.100.100.200/",  # another cloud's metadata (shared address space)
]


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A real TCP listener on loopback that records every connection it gets."""
    connections: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(200))
        writer.close()

    port = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield port, connections
    finally:
        server.close()
        await server.wait_closed()


async def test_the_api_refuses_to_save_a_webhook_that_points_inside(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, webhook_allow="") as http:
        for url in [*TARGETS, "http://user:pass@hooks.example.test/"]:
            put = await http.put(
                "/v1/settings/channels", json={"webhook": {"url": url, "secret": WEBHOOK_SECRET}}
            )
            assert put.status_code == 422, (url, put.text)
            assert put.json()["reason"] == "webhook_url_forbidden", put.text
        assert (await http.get("/v1/settings/channels")).json()["webhook"] is None

        # a name that resolves nowhere now is kept: the sender checks it when it connects
        fine = {"url": "https://hooks.example.invalid/nurture", "secret": WEBHOOK_SECRET}
        put = await http.put("/v1/settings/channels", json={"webhook": fine})
        assert put.status_code == 200, put.text

        # credentials stored before the rule are not shown back
        hidden = ChannelSettings.model_validate(
            {"webhook": {"url": "https://bob:hunter2@hooks.example.test/x", "secret": "s" * 16}}
        )
        await workspaces_store.save_channel_settings(pool, "default", hidden)
        shown = (await http.get("/v1/settings/channels")).json()["webhook"]["url"]
        assert shown == "https://hooks.example.test/x"


async def test_the_sender_refuses_at_connect_time_and_the_listener_gets_nothing(
    pool: asyncpg.Pool,
) -> None:
    webhook = Webhook(Settings(webhook_allow=""))
    async with listener() as (port, connections):
        for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"):
            with pytest.raises(PermanentFailure) as refused:
                await webhook.send(url, WEBHOOK_SECRET, "key-1", {"kind": "message"})
            assert refused.value.answer == {"reason": "webhook_url_forbidden"}
        await asyncio.sleep(0.1)
        assert connections == []

        # allowed by the operator, the same listener is reached
        allowed = Webhook(Settings(webhook_allow="127.0.0.1"))
        with pytest.raises(Exception):  # noqa: B017 - the listener speaks no HTTP
            await allowed.send(f"http://127.0.0.1:{port}/", WEBHOOK_SECRET, "k", {})
        assert len(connections) == 1


async def test_a_send_to_a_forbidden_webhook_fails_for_good_with_the_reason(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "nudge", text="Hi")
    flow = journey([stage("s", send("nudge", "sms"), go_to("success"))])
    async with listener() as (port, connections):
        url = f"http://127.0.0.1:{port}/hooks"  # saved before the rule, or by a rebinding name
        hook = ChannelSettings.model_validate({"webhook": {"url": url, "secret": WEBHOOK_SECRET}})
        await workspaces_store.save_channel_settings(pool, "default", hook)
        settings = Settings(webhook_allow="")
        async with build_worker(ts_env.client, pool, task_queue, settings, sender=True):
            ada = await enroll(ts_env.client, pool, task_queue, flow, properties={"phone": "+1"})
            view = await ada.result()
        assert connections == []
    assert view.outcome is Outcome.SUCCESS and view.failed_sends == 1
    failed = next(s for s in await ada.steps() if s["action"] == "send_message")
    assert failed["detail"]["delivery"]["reason"] == "webhook_url_forbidden", failed


async def test_the_log_keeps_the_status_line_never_the_reply_body(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "nudge", text="Hi")
    flow = journey([stage("s", send("nudge", "sms"), go_to("success"))])
    secret_reply = (200, '{"internal": "' + "x" * 5000 + '"}')
    receiver = WebhookReceiver(script=[secret_reply])
    async with (
        webhook_receiver(pool, receiver),
        build_worker(ts_env.client, pool, task_queue, sender=True),
    ):
        ada = await enroll(ts_env.client, pool, task_queue, flow, properties={"phone": "+1"})
        await ada.result()
    sent = next(s for s in await ada.steps() if s["action"] == "send_message")
    assert sent["detail"]["delivery"]["channels"]["sms"]["answer"] == {
        "status": 200,
        "reason": "OK",
    }
    stored = await pool.fetchval("SELECT answer::text FROM outbox WHERE channel = 'sms'")
    assert "internal" not in stored


async def test_a_name_that_rebinds_between_check_and_connect_cannot_pass() -> None:
    """The resolver answers a public address first and loopback afterwards (DNS
    rebinding): each check sees every address, and the address returned is the one
    checked, which the request then goes to."""
    answers = [["93.184.215.14"], ["127.0.0.1"], ["93.184.215.14", "10.0.0.7"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers.pop(0)

    none = Allowance()
    url = "https://hooks.rebind.example/x"
    assert await vetted_address(url, none, rebinding) == "93.184.215.14"
    with pytest.raises(ForbiddenDestination, match=r"127\.0\.0\.1 is this machine"):
        await vetted_address(url, none, rebinding)
    with pytest.raises(ForbiddenDestination, match=r"10\.0\.0\.7"):
        await vetted_address(url, none, rebinding)
    assert asked == ["hooks.rebind.example"] * 3

    async def metadata(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    refusal = await save_time_refusal("http://metadata.example/", none, metadata)
    assert refusal is not None and "link-local" in refusal
    assert (
        await save_time_refusal(
            "http://metadata.example/", Allowance.parse("metadata.example"), metadata
        )
        is None
    )


@asynccontextmanager
async def raw_receiver(answer: bytes, trickle: bool) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP receiver written by hand: it answers `answer` whole, or one byte at
    a time every 0.2 s (`trickle`); records how many bytes it managed to write."""
    written: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sent = 0
        try:
            if trickle:
                for byte in answer:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    sent += 1
                    await asyncio.sleep(0.2)
            else:
                for start in range(0, len(answer), 65536):
                    writer.write(answer[start : start + 65536])
                    await writer.drain()
                    sent += len(answer[start : start + 65536])
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            written.append(sent)
            writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/hook", written
    finally:
        server.close()


async def test_a_trickling_receiver_is_cut_off_at_the_deadline() -> None:
    webhook = Webhook(Settings(webhook_allow="127.0.0.1", webhook_deadline=1.0))
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with raw_receiver(answer, trickle=True) as (url, written):
        with pytest.raises(TransientFailure, match="deadline") as cut:
            await webhook.send(url, WEBHOOK_SECRET, "k", {})
        assert cut.value.maybe_delivered  # it may have the message: retried with its key
        await asyncio.sleep(0.5)
    assert written and written[0] < len(answer)


async def test_a_huge_reply_is_never_read() -> None:
    body = b"x" * (64 * 1024 * 1024)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    webhook = Webhook(Settings(webhook_allow="127.0.0.1"))
    async with raw_receiver(head + body, trickle=False) as (url, written):
        answer = await webhook.send(url, WEBHOOK_SECRET, "k", {})
        assert answer == {"status": 200, "reason": "OK"}
        for _ in range(50):
            if written:
                break
            await asyncio.sleep(0.1)
    assert written and written[0] < len(head + body)  # the connection closed mid-body
