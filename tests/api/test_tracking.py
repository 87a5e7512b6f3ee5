"""Email engagement measured by nurture, end to end on the real servers: the email the dev
SMTP sink receives carries the open pixel, rewritten links and the one-click unsubscribe
headers; the pixel and a link from that HTML record an open and a click (the link
redirects to the original URL), an engagement goal ("clicked a message of this journey")
exits the contact with a conversion, a forged token or a link the message did not have
gets 404 and records nothing, an open right after delivery is a machine's, and the
one-click POST unsubscribes so that the next marketing email is skipped."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from shared import tracking
from tests.helpers.channels import smtp_sink
from tests.helpers.lifecycle import create
from tests.helpers.stack import eventually, running_stack

SECRET = "tracking-secret-of-the-test"
PERSON = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15"}
PRICING = "https://shop.example.test/pricing?plan=pro&ref=mail"
WELCOME = {
    "subject": "Welcome",
    "text": "Hi! Pricing: " + PRICING,
    "html": f'<html><body><p>Hi!</p><a href="{PRICING.replace("&", "&amp;")}">Pricing</a>'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
}
SECOND = {"subject": "Second", "html": "<html><body><p>Again</p></body></html>"}
JOURNEY = {
    "name": "Tracked welcome",
    "owner": "marketing@acme.test",
    "stage_property": "tracked_stage",
    "start_stage": "welcome",
    "enroll_empty_stage": True,
    "stages": [
        {"key": "welcome", "value": "welcome", "actions": [
            {"type": "send_message", "channels": ["email"], "template": "welcome",
             "marketing": True},
            {"type": "wait_for_event", "event": {"type": "go_on"}, "timeout": "P1D",
             "on_event": {"go_to": "second"}},
        ]},
        {"key": "second", "value": "second", "actions": [
            {"type": "send_message", "channels": ["email"], "template": "second",
             "marketing": True},
            {"type": "wait_for_event", "event": {"type": "never"}, "timeout": "P1D"},
        ]},
    ],
    "ends": {"success": {"value": "customer"}},
    "goal": {"criteria": {"engagement": "clicked", "in_journey": True}},
}  # fmt: skip


def _path(url: str) -> str:
    return urlsplit(url).path


async def _mail(http: httpx.AsyncClient, to: str, subject: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def arrived() -> None:
        messages = (await http.get("/v1/messages", params={"to": to})).json()
        matching = [m for m in messages if m["subject"] == subject]
        assert matching, messages
        found.update(matching[0])

    await eventually(arrived)
    return found


async def _counts(pool: asyncpg.Pool) -> tuple[int, int]:
    hits = await pool.fetchval("SELECT coalesce(sum(hits), 0) FROM tracked_hits")
    events = await pool.fetchval("SELECT count(*) FROM events WHERE type LIKE 'email_%'")
    return int(hits), int(events)


async def test_opens_clicks_and_one_click_unsubscribe_are_measured_by_nurture(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        smtp_sink(pool) as smtp,
        running_stack(
            pool, dev_env.client, task_queue, dev_mailbox=True, tracking_secret=SECRET,
            public_url="https://track.example.test", machine_seconds=2.0,
            **smtp.model_dump(include={"smtp_host", "smtp_port", "smtp_security", "smtp_from"}),
        ) as http,
    ):  # fmt: skip
        for name, body in (("welcome", WELCOME), ("second", SECOND)):
            assert (await http.put(f"/v1/templates/{name}", json=body)).status_code == 200
        journey_id = await create(http, JOURNEY)
        activated = await http.post(f"/v1/journeys/{journey_id}/activate")
        assert activated.status_code == 200, activated.text
        for contact in ("ada", "bob"):
            person = {"properties": {"email": f"{contact}@example.test"}}
            assert (await http.put(f"/v1/contacts/{contact}", json=person)).status_code == 200

        # 1. what the sink received: the pixel, tracked links, the unsubscribe headers
        mail = await _mail(http, "ada@example.test", "Welcome")
        html = mail["html"]
        pixels = re.findall(r'<img src="(https://track\.example\.test/t/o/[^"]+)"', html)
        links = re.findall(r'href="(https://track\.example\.test/t/c/[^"]+)"', html)
        assert len(pixels) == 1 and len(links) == 1, html
        assert "shop.example.test" not in html  # the original URL is not in the message
        unsubscribe = re.search(r'href="(https://track\.example\.test/t/u/[^"]+)"', html)
        assert unsubscribe is not None
        headers = mail["headers"]
        assert headers["List-Unsubscribe"] == f"<{unsubscribe.group(1)}>"
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # 2. the pixel fetched at once: an open, and a machine's (within 2 s of delivery)
        opened = await http.get(_path(pixels[0]), headers=PERSON)
        assert (opened.status_code, opened.headers["content-type"]) == (200, "image/gif")
        row = await pool.fetchrow(
            "SELECT properties FROM events WHERE type = 'email_opened' AND contact_id = 'ada'"
        )
        assert row is not None and row["properties"]["machine"] is True
        assert row["properties"]["journey_id"] == journey_id

        # 3. forged, altered, or a link the message did not have: 404, nothing recorded
        before = await _counts(pool)
        token = _path(links[0]).rsplit("/", 1)[1]
        altered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        message, _ = tracking.read(SECRET, token, tracking.CLICK) or (b"", 0)
        elsewhere = tracking.token(SECRET, message, tracking.CLICK, 7)
        for bad in (f"/t/c/{altered}", f"/t/c/{elsewhere}", f"/t/o/{token}", "/t/c/x" * 3):
            got = await http.get(bad, headers=PERSON)
            assert got.status_code == 404, (bad, got.text)
        assert await _counts(pool) == before

        # 4. a person clicks later: 302 to the original URL; the engagement goal is met
        await asyncio.sleep(2.1)
        clicked = await http.get(_path(links[0]), headers=PERSON)
        assert (clicked.status_code, clicked.headers["location"]) == (302, PRICING)

        async def converted() -> None:
            log = (await http.get(f"/v1/journeys/{journey_id}/enrollments/ada")).json()
            assert log["outcome"] == "goal_met", log
            metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
            assert metrics["goal"]["conversions"] == 1, metrics["goal"]

        await eventually(converted)
        human = await pool.fetchval(
            "SELECT properties->>'machine' FROM events WHERE type = 'email_clicked'"
        )
        assert human == "false"

        # 5. bob unsubscribes in one click; his next marketing email is skipped
        bobs = await _mail(http, "bob@example.test", "Welcome")
        one_click = bobs["headers"]["List-Unsubscribe"].strip("<>")
        page = await http.get(_path(one_click), headers=PERSON)
        assert page.status_code == 200 and "<form method='post'" in page.text
        done = await http.post(_path(one_click), data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200, done.text
        contact = (await http.get("/v1/contacts/bob")).json()
        assert contact["properties"]["unsubscribed_email"] is True
        event = {"contact_id": "bob", "type": "go_on"}
        assert (await http.post("/v1/events", json=event)).status_code == 202

        async def skipped() -> None:
            log = (await http.get(f"/v1/journeys/{journey_id}/enrollments/bob")).json()
            sends = [s for s in log["steps"] if s["action"] == "send_message"]
            assert len(sends) == 2 and sends[1]["result"] == "skipped", sends
            assert sends[1]["detail"]["delivery"]["reason"] == "unsubscribed", sends[1]

        await eventually(skipped)
        kinds = await pool.fetch(
            "SELECT type, count(*) AS n FROM events WHERE type LIKE 'email_%' GROUP BY 1"
        )
        assert {r["type"]: r["n"] for r in kinds} == {
            "email_opened": 1,
            "email_clicked": 1,
            "email_unsubscribed": 1,
        }

        # 6. message performance: people and machines apart
        metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
        [welcome] = [m for m in metrics["messages"] if m["template"] == "welcome"]
        figures = {k: welcome[k] for k in ("sent", "delivered", "opens", "machine_opens",
                                             "clicks", "unsubscribes", "conversions")}  # fmt: skip
        assert figures == {
            "sent": 2, "delivered": 2, "opens": 0, "machine_opens": 1, "clicks": 1,
            "unsubscribes": 1, "conversions": 1,
        }  # fmt: skip
        across = (await http.get("/v1/templates/welcome/performance")).json()
        assert across["total"]["clicks"] == 1 and across["journeys"][0]["journey_id"] == journey_id
