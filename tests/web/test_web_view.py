"""The web view in a real headless Chromium against the real stack: log in with a key,
open a journey whose contacts took known paths, read the numbers on the map (counts and %
per path and per end) and a contact's timeline; the map follows contacts without a
reload; another workspace's key sees none of it; no console error and no request leaves
the app's origin. The map's screenshot is left in test-artifacts/ for a person to see."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from store.api_keys import create_key
from tests.helpers.browser import Page, headless
from tests.helpers.lifecycle import create
from tests.helpers.stack import eventually, running_stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROUTE = {
    "type": "branch",
    "name": "route",
    "paths": [
        {"name": "x", "when": {"property": "path", "op": "eq", "value": "x"}, "go_to": "b"},
        {"name": "y", "when": {"property": "path", "op": "eq", "value": "y"}, "go_to": "success"},
    ],
    "otherwise": {"go_to": "failure:churned"},
}
JOURNEY = {
    "name": "Paths we know",
    "owner": "marketing@acme.test",
    "stage_property": "web_stage",
    "start_stage": "a",
    "stages": [
        {"key": "a", "value": "a", "actions": [ROUTE]},
        {"key": "b", "value": "b", "actions": [
            {"type": "wait_for_event", "event": {"type": "never"}, "timeout": "P1D"}]},
    ],
    "ends": {"success": {"value": "customer"}, "failure": [{"value": "churned"}]},
}  # fmt: skip
PATHS = {"x1": "x", "x2": "x", "x3": "x", "y1": "y", "y2": "y", "n1": "none"}


async def _enroll(http: httpx.AsyncClient, journey_id: str, contact: str, path: str) -> None:
    put = await http.put(f"/v1/contacts/{contact}", json={"properties": {"path": path}})
    assert put.status_code == 200, put.text
    got = await http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact})
    assert got.status_code == 201, got.text


async def _text(page: Page, selector: str) -> str:
    found = await page.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText"
    )
    return str(found).strip()


async def _log_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/ui/login")
    await page.submit(
        f"document.querySelector('#key').value = {json.dumps(key)};"
        "document.querySelector('#login').closest('form').submit()"
    )


async def test_the_map_shows_where_contacts_went_and_a_contacts_path(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        base = str(http.base_url).rstrip("/")
        key = http.headers["Authorization"].removeprefix("Bearer ")
        journey_id = await create(http, JOURNEY)
        activated = await http.post(f"/v1/journeys/{journey_id}/activate")
        assert activated.status_code == 200, activated.text
        for contact, path in PATHS.items():
            await _enroll(http, journey_id, contact, path)

        async def settled() -> None:
            metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
            # every contact has left stage a (its path recorded), three are in b
            assert metrics["stages"][0]["left"] == len(PATHS), metrics["stages"]
            assert metrics["stages"][1]["entered"] == 3, metrics["stages"]

        await eventually(settled)
        async with headless() as page:
            await _log_in(page, base, key)
            assert await _text(page, f'[data-journey="{journey_id}"]') != ""
            await page.goto(f"{base}/ui/journeys/{journey_id}")
            paths = {
                to: await _text(page, f'[data-stage="a"] [data-path="{to}"]')
                for to in ("b", "end:success", "end:failure:churned", "branch:route/x")
            }
            assert paths == {
                "b": "3 (50.0%) b",
                "end:success": "2 (33.33%) end:success",
                "end:failure:churned": "1 (16.67%) end:failure:churned",
                "branch:route/x": "3 (50.0%) branch:route/x",
            }
            ends = await _text(page, '[data-end="end:success"]')
            assert ends.endswith("2 (33.33% of enrolled)"), ends
            assert await _text(page, '[data-stage="b"] [data-figure="entered"]') == "3"
            await page.screenshot(ARTIFACTS / "journey-map.png")

            # a contact moves: the map follows without a reload
            await _enroll(http, journey_id, "x4", "x")

            async def followed() -> None:
                text = await _text(page, '[data-stage="a"] [data-path="b"]')
                assert text == "4 (57.14%) b", text

            await eventually(followed, timeout=20)

            # one contact's path, the branch explained leaf by leaf, a link to Temporal
            await page.goto(f"{base}/ui/journeys/{journey_id}/contacts/y1")
            timeline = await _text(page, "#timeline")
            assert "branch" in timeline and "end" in timeline and "success" in timeline
            assert "✓" in timeline and "✗" in timeline  # path y held, path x did not
            link = await page.evaluate("document.querySelector('a[href*=\"/workflows/\"]').href")
            assert "enrollment%2Fdefault%2F" in link and link.startswith("http://127.0.0.1:8233")
            await page.goto(f"{base}/ui/journeys/{journey_id}/contacts?stage=b")
            listed = await _text(page, "#contacts")
            assert all(c in listed for c in ("x1", "x2", "x3", "x4")) and "y1" not in listed

            assert page.console_errors() == []
            foreign = [u for u in page.requested() if not u.startswith(base)]
            assert foreign == [], foreign

        # another workspace's key: no journey of ours, and ours answers 404
        other = await create_key(pool, "someone-else")
        async with headless() as page:
            await _log_in(page, base, other)
            assert await _text(page, f'[data-journey="{journey_id}"]') == ""
            await page.goto(f"{base}/ui/journeys/{journey_id}")
            assert "Paths we know" not in await _text(page, "body")
            await page.goto(f"{base}/ui/journeys/{journey_id}/contacts/y1")
            assert await page.evaluate("document.querySelector('#timeline') === null")


async def test_writes_need_the_session_and_its_csrf_token(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        key = http.headers["Authorization"].removeprefix("Bearer ")
        journey_id = await create(http, JOURNEY)
        async with httpx.AsyncClient(base_url=http.base_url) as browser:
            assert (await browser.get("/ui")).status_code == 303  # not logged in
            bad = await browser.post("/ui/login", data={"key": "nk_not-a-key"})
            assert bad.status_code == 401
            logged = await browser.post("/ui/login", data={"key": key})
            assert logged.status_code == 303
            cookie = logged.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            # no CSRF token: refused, and the journey is still a draft
            forged = await browser.post(f"/ui/journeys/{journey_id}/activate", data={})
            assert forged.status_code == 403
            page = (await browser.get(f"/ui/journeys/{journey_id}")).text
            assert (
                "default-src 'self'"
                in (await browser.get("/ui")).headers["content-security-policy"]
            )
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            # hostile query values answer, never 500
            for query in ("version=99999999999", "version=7", "since=yesterday"):
                odd = await browser.get(f"/ui/journeys/{journey_id}?{query}")
                assert odd.status_code in (200, 404), (query, odd.status_code)
            done = await browser.post(f"/ui/journeys/{journey_id}/activate", data={"csrf": csrf})
            assert done.status_code == 303
        await asyncio.sleep(0)
        assert (await http.get(f"/v1/journeys/{journey_id}")).json()["status"] == "active"
