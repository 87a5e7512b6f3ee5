"""Event-triggered, repeating journeys over the API on the real dev server with the relay:
an abandoned cart enters the contact with the cart as context (rendered in the message),
only a purchase of the same cart counts, a contact re-enters after its exit once the
cooldown has passed and at most `max_entries` times, a second event while an entry runs is
refused, and three entries that all convert count one conversion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from services.triggers import enter
from shared.routing import Delivery
from shared.settings import Settings
from tests.helpers.channels import smtp_sink
from tests.helpers.lifecycle import create
from tests.helpers.stack import eventually, running_stack

COOLDOWN = 3
SAME_CART = {"type": "purchase", "match_trigger": ["cart_id"]}
CART = {
    "name": "Abandoned cart",
    "owner": "growth@shop.test",
    "stage_property": "cart_stage",
    "trigger": {"event": {"type": "cart_abandoned"}},
    "reentry": {"mode": "after_exit", "cooldown": f"PT{COOLDOWN}S", "max_entries": 3},
    "start_stage": "reminder",
    "stages": [
        {
            "key": "reminder",
            "value": "reminded",
            "actions": [
                {"type": "send_message", "channels": ["email"], "template": "cart-reminder",
                 "marketing": True},
                {"type": "wait_for_event", "event": SAME_CART, "timeout": "PT5M",
                 "on_event": {"go_to": "success"}},
            ],
        }
    ],
    "ends": {"success": {"value": "recovered"}, "failure": [{"value": "abandoned"}]},
    "goal": {"criteria": {"event": "purchase", "match_trigger": ["cart_id"]},
             "attribution_window": "PT1S"},
}  # fmt: skip
REMINDER = {
    "subject": "Your cart {{ trigger.properties.cart_id }}",
    "text": "Still yours: {{ trigger.properties['items'] | join(', ') }}.",
}


async def _event(http: httpx.AsyncClient, kind: str, key: str, **properties: Any) -> None:
    event = {"contact_id": "ada", "type": kind, "properties": properties, "idempotency_key": key}
    posted = await http.post("/v1/events", json=event)
    assert posted.status_code == 202, posted.text


async def _log(http: httpx.AsyncClient, journey_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await http.get(f"/v1/journeys/{journey_id}/enrollments/ada")).json()
    return found


async def test_an_abandoned_cart_enters_with_its_context_and_repeats_within_its_rules(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        smtp_sink(pool) as smtp,
        running_stack(
            pool, dev_env.client, task_queue, dev_mailbox=True,
            **smtp.model_dump(include={"smtp_host", "smtp_port", "smtp_security", "smtp_from"}),
        ) as http,
    ):  # fmt: skip
        assert (await http.put("/v1/templates/cart-reminder", json=REMINDER)).status_code == 200
        journey_id = await create(http, CART)
        activated = await http.post(f"/v1/journeys/{journey_id}/activate")
        assert activated.status_code == 200, activated.text
        ada = {"properties": {"email": "ada@example.test"}}
        assert (await http.put("/v1/contacts/ada", json=ada)).status_code == 200

        # 1. the event enters ada; posted twice (same key) it is one event, one entry; a
        # second cart while the entry runs is refused
        for _ in range(2):
            await _event(http, "cart_abandoned", "k1", cart_id="c1", items=["mug", "tee"])

        async def reminded(subjects: list[str]) -> None:
            messages = (await http.get("/v1/messages")).json()
            assert sorted(m["subject"] for m in messages) == sorted(subjects), messages

        await eventually(lambda: reminded(["Your cart c1"]))
        messages = (await http.get("/v1/messages")).json()
        assert "Still yours: mug, tee." in messages[0]["text"]
        await _event(http, "cart_abandoned", "k2", cart_id="c2")

        async def refused(reason: str, times: int = 1) -> None:
            steps = (await _log(http, journey_id))["steps"]
            assert [s["result"] for s in steps if s["action"] == "refused"].count(reason) == times

        await eventually(lambda: refused("already_active"))

        # 2. a purchase of another cart changes nothing; the same cart's meets the goal
        await _event(http, "purchase", "p-c2", cart_id="c2")
        await asyncio.sleep(1)
        assert (await _log(http, journey_id))["status"] == "running"
        await _event(http, "purchase", "p-c1", cart_id="c1")

        async def left(entry: int) -> None:
            found = await _log(http, journey_id)
            assert (found["entry"], found["outcome"]) == (entry, "goal_met"), found

        await eventually(lambda: left(1))

        # 3. within the cooldown: refused; after it: entry 2, and then entry 3
        await _event(http, "cart_abandoned", "k3", cart_id="c3")
        await eventually(lambda: refused("cooldown"))
        for entry, cart in ((2, "c4"), (3, "c5")):
            await asyncio.sleep(COOLDOWN + 0.5)
            await _event(http, "cart_abandoned", f"k-{cart}", cart_id=cart, items=[])
            await eventually(lambda c=cart: reminded_too(http, c))
            await _event(http, "purchase", f"p-{cart}", cart_id=cart)
            await eventually(lambda e=entry: left(e))
        # 4. the fourth entry would exceed max_entries
        await asyncio.sleep(COOLDOWN + 0.5)
        await _event(http, "cart_abandoned", "k6", cart_id="c6")
        await eventually(lambda: refused("max_entries"))

        found = await _log(http, journey_id)
        ids = [e["workflow_id"] for e in found["entries"]]
        assert ids == [
            f"enrollment/default/{journey_id}/ada",  # the first entry keeps the old id
            f"enrollment#2/default/{journey_id}/ada",
            f"enrollment#3/default/{journey_id}/ada",
        ]
        first = (await http.get(f"/v1/journeys/{journey_id}/enrollments/ada/entries/1")).json()
        assert first["entry"] == 1 and first["outcome"] == "goal_met"
        # the list pages through entries: none is skipped at a page's edge
        listed: list[tuple[str, int]] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"/v1/journeys/{journey_id}/enrollments", params=params)).json()
            listed += [(e["contact_id"], e["entry"]) for e in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert listed == [("ada", 1), ("ada", 2), ("ada", 3)]
        missing = await http.get(f"/v1/journeys/{journey_id}/enrollments/ada/entries/9")
        assert missing.status_code == 404 and missing.json()["reason"] == "entry_not_found"

        # 5. three entries that all converted: one conversion, over one unique profile
        async def counted() -> None:
            metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
            assert (metrics["entries"], metrics["unique_profiles"]) == (3, 1), metrics
            goal = metrics["goal"]
            assert (goal["conversions"], goal["enrolled"], goal["conversion_rate"]) == (1, 1, 100)
            assert metrics["refused"] == {"already_active": 1, "cooldown": 1, "max_entries": 1}

        await eventually(counted)


async def reminded_too(http: httpx.AsyncClient, cart: str) -> None:
    messages = (await http.get("/v1/messages")).json()
    assert f"Your cart {cart}" in [m["subject"] for m in messages], messages


async def test_activation_enters_past_events_only_when_asked_to_backfill(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        plain = await create(http, {**CART, "stage_property": "cart_plain"})
        filled = await create(http, {**CART, "stage_property": "cart_filled"})
        now = datetime.now(UTC)
        for contact, days in (("bob", 0), ("cy", 0), ("dee", 3)):
            put = await http.put(f"/v1/contacts/{contact}", json={"properties": {}})
            assert put.status_code == 200, put.text
            event = {
                "contact_id": contact,
                "type": "cart_abandoned",
                "properties": {"cart_id": f"cart-{contact}"},
                "occurred_at": (now - timedelta(days=days)).isoformat(),
            }
            assert (await http.post("/v1/events", json=event)).status_code == 202

        async def routed() -> None:  # the events are past ones by the time a journey starts
            assert await pool.fetchval("SELECT count(*) FROM change_queue") == 0

        await eventually(routed)
        refused = await http.post(f"/v1/journeys/{filled}/activate", params={"backfill": "3 days"})
        assert (refused.status_code, refused.json()["reason"]) == (422, "invalid_backfill")
        assert (await http.get(f"/v1/journeys/{filled}")).json()["status"] == "draft"

        activated = await http.post(f"/v1/journeys/{plain}/activate", params={"force": "true"})
        assert activated.status_code == 200 and activated.json()["backfilled"] is None
        activated = await http.post(
            f"/v1/journeys/{filled}/activate", params={"force": "true", "backfill": "P1D"}
        )
        assert activated.status_code == 200, activated.text
        assert activated.json()["backfilled"] == 2  # dee's event is three days old

        async def entered() -> None:
            page = (await http.get(f"/v1/journeys/{filled}/enrollments")).json()
            assert sorted(e["contact_id"] for e in page["items"]) == ["bob", "cy"], page

        await eventually(entered)
        # the journey activated without a backfill entered nobody for the past events
        assert (await http.get(f"/v1/journeys/{plain}/enrollments")).json()["items"] == []
        again = await http.post(f"/v1/journeys/{filled}/activate", params={"backfill": "P1D"})
        assert again.json()["backfilled"] is None  # already active: nothing happens twice
        # the same event delivered again (a relay's retry, a backfill racing the live
        # event) is keyed to the entry it made: no second entry, no refusal
        seq = await pool.fetchval("SELECT seq FROM events WHERE contact_id = 'bob'")
        delivery = Delivery(
            workspace="default", contact_id="bob", journey_id=filled,
            workflow_id=f"enrollment/default/{filled}/bob", kind="enter_on_event", seq=seq,
        )  # fmt: skip
        settings = Settings(task_queue=task_queue)
        assert await enter(pool, dev_env.client, settings, delivery) is None
        rows = await pool.fetchval(
            "SELECT count(*) FROM enrollments WHERE journey_id = $1 AND contact_id = 'bob'", filled
        )
        refusals = await pool.fetchval(
            "SELECT count(*) FROM refusals WHERE journey_id = $1", filled
        )
        assert (rows, refusals) == (1, 0)
