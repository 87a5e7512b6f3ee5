"""The assets a journey uses, whether each exists or is configured, the warnings a missing
template or an unconfigured channel gives on validate and create, and a send whose template
is missing logged `template_missing`."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, go_to, send, stage
from tests.helpers.relay import enrollment
from tests.helpers.stack import eventually, running_stack

FLOW = definition(
    [
        stage(
            "a",
            send("welcome", "email", "sms"),
            {"type": "create_task", "title": "Call", "assign_to": "owner"},
            {"type": "set_property", "property": "lead_status", "value": "hot"},
            go_to("success"),
        )
    ],
    eligible_lists=["trial"],
    suppression_lists=["staff"],
    enroll_empty_stage=False,
    ends={"success": {"value": "customer", "add_to_list": "customers"}, "failure": []},
)


def _warned(warnings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(w["reason"], w["path"]) for w in warnings}


async def test_assets_say_what_exists_and_warnings_say_what_would_fail(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    missing = {
        ("template_missing", "stages[a].actions[0].template"),
        ("channel_not_configured", "stages[a].actions[0].channels"),
        ("channel_not_configured", "stages[a].actions[1]"),
    }
    async with running_stack(pool, dev_env.client, task_queue) as http:
        checked = await http.post("/v1/journeys/validate", json=FLOW)
        assert checked.json()["valid"] is True
        assert missing <= _warned(checked.json()["warnings"])
        created = await http.post("/v1/journeys", json=FLOW)
        assert created.status_code == 201, created.text
        assert missing <= _warned(created.json()["warnings"])
        journey_id = created.json()["id"]

        assets = (await http.get(f"/v1/journeys/{journey_id}/assets")).json()
        found = {(a["kind"], a["name"]): a["exists"] for a in assets["assets"]}
        assert found == {
            ("channel", "email"): False,
            ("channel", "sms"): False,
            ("channel", "webhook"): False,
            ("list", "customers"): False,
            ("list", "staff"): False,
            ("list", "trial"): False,
            ("property", "journey_stage"): None,
            ("property", "lead_status"): None,
            ("template", "welcome"): False,
        }

        hook = {"webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s3cret-s3cret-s3cret"}}
        assert (await http.put("/v1/settings/channels", json=hook)).status_code == 200
        assert (await http.put("/v1/lists/trial/members/ada")).status_code == 204
        assets = (await http.get(f"/v1/journeys/{journey_id}/assets")).json()
        found = {(a["kind"], a["name"]): a["exists"] for a in assets["assets"]}
        assert found[("channel", "sms")] and found[("channel", "webhook")]
        assert found[("list", "trial")] is True
        assert _warned(assets["warnings"]) == {
            ("template_missing", "stages[a].actions[0].template"),
            ("channel_not_configured", "stages[a].actions[0].channels"),  # email: no SMTP
        }

        # not ready: activation is refused with the problems, unless forced
        refused = await http.post(f"/v1/journeys/{journey_id}/activate")
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "journey_not_ready"
        assert _warned(refused.json()["problems"]) == _warned(assets["warnings"])
        assert (await http.get(f"/v1/journeys/{journey_id}")).json()["status"] == "draft"

        # run anyway: the sms send fails for good, and says why
        ada = {"properties": {"phone": "+15550100", "journey_stage": "a"}}
        await http.put("/v1/contacts/ada", json=ada)
        forced = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        assert forced.status_code == 200, forced.text

        async def logged() -> None:
            log = await enrollment(http, journey_id, "ada")
            send_step = next(s for s in log["steps"] if s["action"] == "send_message")
            assert send_step["result"] == "failed", send_step
            assert send_step["detail"]["delivery"]["reason"] == "template_missing"

        await eventually(logged)
