"""Templates, channel settings and the dev mailbox over HTTP; a journey's email reaches
the dev SMTP sink and shows at GET /v1/messages."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from tests.helpers.channels import smtp_sink
from tests.helpers.stack import eventually, running_stack

WELCOME = {
    "subject": "Welcome, {{ contact.first_name | default('there') }}",
    "html": "<p>Hello {{ contact.first_name }}</p>",
    "text": "Hello {{ contact.first_name }}",
}


async def test_templates_are_checked_when_saved(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        saved = await http.put("/v1/templates/welcome", json=WELCOME)
        assert saved.status_code == 200, saved.text
        assert saved.json()["subject"] == WELCOME["subject"]
        got = await http.get("/v1/templates/welcome")
        assert got.status_code == 200 and got.json()["text"] == WELCOME["text"]
        assert [t["name"] for t in (await http.get("/v1/templates")).json()] == ["welcome"]

        broken = await http.put("/v1/templates/broken", json={"text": "Hi {{ contact.name "})
        assert broken.status_code == 422
        assert broken.json()["reason"] == "invalid_template"
        assert broken.json()["problems"][0]["path"] == "text"
        # renders against the sample contact: arithmetic on a text property fails
        sample = {"text": "{{ contact.age + 1 }}", "sample": {"age": "ten"}}
        assert (await http.put("/v1/templates/age", json=sample)).status_code == 422
        assert (await http.put("/v1/templates/Bad Name", json=WELCOME)).json()["reason"] == (
            "invalid_template_name"
        )
        assert (await http.put("/v1/templates/empty", json={"subject": "x"})).json()[
            "reason"
        ] == "empty_template"
        missing = await http.get("/v1/templates/nope")
        assert missing.status_code == 404 and missing.json()["reason"] == "template_not_found"


async def test_channel_settings_keep_the_secret_write_only(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    body = {
        "webhook": {"url": "https://hooks.acme.test/nurture", "secret": "s3cret-s3cret-s3cret"},
        "timezone": "Europe/Berlin",
        "send_window": {"start": "09:00", "end": "18:00", "days": ["mon", "tue"]},
        "frequency_cap": {"max": 3, "per": "P7D"},
    }
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        saved = await http.put("/v1/settings/channels", json=body)
        assert saved.status_code == 200, saved.text
        got = (await http.get("/v1/settings/channels")).json()
        assert got["webhook"] == {"url": "https://hooks.acme.test/nurture", "secret_set": True}
        assert "s3cret" not in str(got)
        assert got["frequency_cap"] == {"max": 3, "per": "P7D"}
        assert got["send_window"]["days"] == ["mon", "tue"]
        bad = await http.put("/v1/settings/channels", json={**body, "timezone": "Mars/Base"})
        assert bad.status_code == 422 and bad.json()["reason"] == "invalid_request"
        short = {**body, "webhook": {"url": "https://x.test", "secret": "short"}}
        assert (await http.put("/v1/settings/channels", json=short)).status_code == 422


async def test_dev_mailbox_shows_the_journeys_email(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    journey = {
        "name": "Welcome",
        "owner": "marketing@acme.test",
        "stage_property": "journey_stage",
        "start_stage": "welcome",
        "enroll_empty_stage": True,
        "stages": [
            {
                "key": "welcome",
                "value": "welcome",
                "actions": [
                    {"type": "send_message", "channels": ["email"], "template": "welcome"},
                    {"type": "go_to", "target": "success"},
                ],
            }
        ],
        "ends": {"success": {"value": "customer"}},
    }
    async with (
        smtp_sink(pool) as smtp,
        running_stack(
            pool,
            dev_env.client,
            task_queue,
            relay=False,
            dev_mailbox=True,
            **smtp.model_dump(include={"smtp_host", "smtp_port", "smtp_security", "smtp_from"}),
        ) as http,
    ):
        assert (await http.put("/v1/templates/welcome", json=WELCOME)).status_code == 200
        created = (await http.post("/v1/journeys", json=journey)).json()
        activated = await http.post(
            f"/v1/journeys/{created['id']}/activate", params={"force": "true"}
        )
        assert activated.status_code == 200, activated.text
        ada = {"properties": {"email": "ada@example.test", "first_name": "Ada"}}
        assert (await http.put("/v1/contacts/ada", json=ada)).status_code == 200
        enrolled = await http.post(
            f"/v1/journeys/{created['id']}/enrollments", json={"contact_id": "ada"}
        )
        # the contact upsert may already have enrolled ada (no eligible lists: everyone)
        assert enrolled.status_code in (201, 409), enrolled.text
        workflow_id = f"enrollment/default/{created['id']}/ada"

        async def arrived() -> None:
            messages = (await http.get("/v1/messages")).json()
            assert [m["subject"] for m in messages] == ["Welcome, Ada"]
            assert messages[0]["rcpt_to"] == ["ada@example.test"]
            assert messages[0]["idempotency_key"] == f"{workflow_id}:2:email"

        await eventually(arrived)
        assert (await http.get("/v1/messages", params={"to": "bob@example.test"})).json() == []

    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        outside_dev = await http.get("/v1/messages")
        assert outside_dev.status_code == 404 and outside_dev.json()["reason"] == "dev_only"


async def test_a_workspace_sends_only_from_domains_the_operator_allowed(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, database_url: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        spoof = await http.put(
            "/v1/settings/channels", json={"email_from": "security@any-bank.test"}
        )
        assert spoof.status_code == 422, spoof.text
        assert spoof.json()["reason"] == "sender_domain_not_allowed"
        assert (await http.get("/v1/settings/channels")).json()["email_from"] is None
        two = await http.put(
            "/v1/settings/channels", json={"email_from": "a@acme.test, b@acme.test"}
        )
        assert (two.status_code, two.json()["reason"]) == (422, "invalid_sender")

        allowed = await asyncio.to_thread(  # the command runs its own event loop
            CliRunner().invoke,
            app,
            ["workspaces", "allow-sender-domain", "default", "Acme.test"],
            env={"NURTURE_DATABASE_URL": database_url},
        )
        assert allowed.exit_code == 0, allowed.output
        ok = await http.put("/v1/settings/channels", json={"email_from": "news@acme.test"})
        assert ok.status_code == 200, ok.text
        assert (await http.get("/v1/settings/channels")).json()["email_from"] == "news@acme.test"
