"""Simulation against the real servers: the example journey simulated for a contact and a
timeline takes the same steps to the same outcome as a real run of that contact and
timeline on the dev server; a simulation renders its messages, can force a split's
variant, and sends and writes nothing."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import asyncpg
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from cli.simulate import simulate_over, timeline_table
from tests.helpers.channels import WebhookReceiver, smtp_sink, webhook_receiver
from tests.helpers.lifecycle import create
from tests.helpers.stack import eventually, running_stack
from tests.workers.test_operating import example_journey

ADA = {"first_name": "Ada", "email": "ada@example.test", "lifecycle_stage": "trial"}
DEMO = {"type": "form_submitted", "target": "demo-request"}
TABLES = ("enrollments", "enrollment_steps", "outbox", "events", "contacts", "list_members",
          "refusals", "dev_mailbox", "conversions", "tracked_messages")  # fmt: skip


def _path(steps: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(s["stage"], s["action"]) for s in steps if s.get("step_seq") is not None]


async def _received(receiver: WebhookReceiver, count: int) -> None:
    assert len(receiver.received) == count, [r.body for r in receiver.received]


async def _rows(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await pool.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def test_a_simulation_takes_the_steps_a_real_run_takes(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    definition = example_journey().model_dump(mode="json")
    async with (
        webhook_receiver(pool, WebhookReceiver()) as receiver,
        running_stack(pool, dev_env.client, task_queue) as http,
    ):
        journey_id = await create(http, definition)
        activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert activated.status_code == 200, activated.text
        # the real run: ada joins the list (that enrolls her), 3 s later asks for a demo
        assert (await http.put("/v1/contacts/ada", json={"properties": ADA})).status_code == 200
        assert (await http.put("/v1/lists/trial-users/members/ada")).status_code == 204

        async def enrolled() -> None:
            got = await http.get(f"/v1/journeys/{journey_id}/enrollments/ada")
            assert got.status_code == 200 and got.json()["status"] == "running", got.text

        await eventually(enrolled)
        await asyncio.sleep(3)
        assert (
            await http.post("/v1/events", json={"contact_id": "ada", **DEMO})
        ).status_code == 202
        real: dict[str, Any] = {}

        async def completed() -> None:
            real.update((await http.get(f"/v1/journeys/{journey_id}/enrollments/ada")).json())
            assert real["status"] == "completed", real["status"]

        await eventually(completed, timeout=60)

        # the same contact and timeline, simulated
        asked = {
            "contact": {"id": "ada", "properties": ADA, "lists": ["trial-users"]},
            "timeline": [{"at": "PT3S", "event": DEMO}],
        }
        # the real run's task and notification reached the webhook
        await eventually(lambda: _received(receiver, 2))
        before = await _rows(pool)
        simulated = await http.post(f"/v1/journeys/{journey_id}/simulate", json=asked)
        assert simulated.status_code == 200, simulated.text
        found = simulated.json()
        assert await _rows(pool) == before  # nothing written, nothing sent
        await asyncio.sleep(1)
        assert len(receiver.received) == 2  # the simulated ones went nowhere
    assert found["finished"] and found["outcome"] == real["outcome"] == "success"
    assert _path(found["steps"]) == _path(real["steps"])
    assert [s["action"] for s in found["steps"]][-2:] == ["end", "complete"]
    kinds = [m["kind"] for m in found["messages"]]
    assert kinds == ["message", "task", "notification"], found["messages"]
    assert found["messages"][1]["content"]["title"] == "Call Ada"


SPLIT_JOURNEY = {
    "name": "Simulated split",
    "owner": "sim@acme.test",
    "stage_property": "sim_stage",
    "start_stage": "a",
    "stages": [
        {"key": "a", "value": "a", "actions": [
            {"type": "split", "name": "subject",
             "variants": [{"name": "A", "percent": 50, "go_to": "a1"},
                          {"name": "B", "percent": 50, "go_to": "b1"}]}]},
        {"key": "a1", "value": "a1", "actions": [
            {"type": "send_message", "channels": ["email"], "template": "hello-a",
             "marketing": True},
            {"type": "wait", "duration": "P3D"}, {"type": "go_to", "target": "success"}]},
        {"key": "b1", "value": "b1", "actions": [
            {"type": "send_message", "channels": ["email"], "template": "hello-b",
             "marketing": True},
            {"type": "wait_for_event", "event": {"type": "purchase"}, "timeout": "P30D"},
            {"type": "set_property", "property": "plan", "value": "pro"},
            {"type": "go_to", "target": "success"}]},
    ],
    "ends": {"success": {"value": "customer", "add_to_list": "customers"}},
    "goal": {"criteria": {"event": "purchase"}, "attribution_window": "P7D"},
}  # fmt: skip


async def test_a_simulation_renders_forces_a_variant_and_sends_nothing(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with (
        smtp_sink(pool) as smtp,
        running_stack(
            pool, dev_env.client, task_queue, dev_mailbox=True,
            **smtp.model_dump(include={"smtp_host", "smtp_port", "smtp_security", "smtp_from"}),
        ) as http,
    ):  # fmt: skip
        body = {"subject": "Hi {{ contact.first_name }}", "text": "B for you"}
        assert (await http.put("/v1/templates/hello-b", json=body)).status_code == 200
        before = await _rows(pool)
        asked = {
            "journey": SPLIT_JOURNEY,
            "contact": {"properties": {"first_name": "Ada", "email": "ada@example.test"}},
            "timeline": [{"at": "P12D", "event": {"type": "purchase"}}],
            "force": {"subject": "B"},
        }
        answer = await http.post("/v1/journeys/simulate", json=asked)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        # the CLI's view of the same (nurture simulate FILE --contact … --timeline …)
        out = Console(file=io.StringIO(), width=160)
        body = {k: asked[k] for k in ("contact", "timeline", "force")}
        out.print(timeline_table(await simulate_over(http, SPLIT_JOURNEY, body)))
        shown = out.file.getvalue()  # type: ignore[attr-defined]
        assert "split" in shown and "Hi Ada" in shown and "P12D" in shown
        assert await _rows(pool) == before
        assert (await http.get("/v1/messages")).json() == []
        # bounded: a moment past the horizon, or too long a timeline, is refused
        far = {"journey": SPLIT_JOURNEY, "timeline": [{"at": "P500D", "set": {"x": 1}}]}
        refused = await http.post("/v1/journeys/simulate", json=far)
        assert refused.status_code == 422, refused.text
        long = {"journey": SPLIT_JOURNEY, "timeline": [{"at": "PT1S", "join": "x"}] * 201}
        assert (await http.post("/v1/journeys/simulate", json=long)).status_code == 422
    assert found["outcome"] == "goal_met" and found["converted"] is True
    assert [d["node"] for d in found["decisions"]] == ["split:subject/B"]
    [message] = found["messages"]
    assert message["content"]["subject"] == "Hi Ada" and message["offset"] == "PT0S"
    goal = next(s for s in found["steps"] if s["action"] == "exit")
    assert goal["offset"].startswith("P12D")  # the purchase, twelve simulated days in
