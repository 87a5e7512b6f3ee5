"""Every endpoint but /healthz and the docs needs a key; workspaces never mix."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from store.api_keys import create_key, revoke_key
from tests.helpers.journeys import skeleton_journey
from tests.helpers.stack import running_stack


async def test_requests_without_a_valid_key_are_refused(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        anonymous = {"Authorization": ""}
        missing = await http.get("/v1/journeys", headers=anonymous)
        assert missing.status_code == 401
        assert missing.json()["reason"] == "missing_api_key"
        wrong = await http.get("/v1/journeys", headers={"Authorization": "Bearer nk_nope"})
        assert wrong.status_code == 401
        assert wrong.json()["reason"] == "invalid_api_key"
        assert (await http.get("/healthz", headers=anonymous)).status_code == 200
        assert (await http.get("/docs", headers=anonymous)).status_code == 200
        assert (await http.get("/openapi.json", headers=anonymous)).status_code == 200


async def test_a_key_never_sees_another_workspace(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, workspace="acme") as http:
        other = {"Authorization": f"Bearer {await create_key(pool, 'globex')}"}
        created = await http.post("/v1/journeys", json=skeleton_journey("PT1S"))
        assert created.status_code == 201
        journey_id = created.json()["id"]
        await http.put("/v1/contacts/ada", json={"properties": {"plan": "trial"}})

        assert (await http.get(f"/v1/journeys/{journey_id}")).status_code == 200
        for path in (
            f"/v1/journeys/{journey_id}",
            f"/v1/journeys/{journey_id}/metrics",
            "/v1/contacts/ada",
        ):
            response = await http.get(path, headers=other)
            assert response.status_code == 404, path
        assert (await http.get("/v1/journeys", headers=other)).json()["items"] == []
        hijack = await http.post(f"/v1/journeys/{journey_id}/activate", headers=other)
        assert hijack.status_code == 404
        assert (await http.get(f"/v1/journeys/{journey_id}")).json()["status"] == "draft"


async def test_a_revoked_key_is_refused_within_the_key_cache_lifetime(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, api_key_cache_seconds=0.5) as http:
        key = await create_key(pool, "acme")
        acme = {"Authorization": f"Bearer {key}"}
        assert (await http.get("/v1/journeys", headers=acme)).status_code == 200
        assert await revoke_key(pool, key.split("_")[1]) == "acme"
        assert await revoke_key(pool, key.split("_")[1]) is None  # once
        await asyncio.sleep(0.6)
        refused = await http.get("/v1/journeys", headers=acme)
        assert (refused.status_code, refused.json()["reason"]) == (401, "invalid_api_key")
        # the stack's own key still works
        assert (await http.get("/v1/journeys")).status_code == 200


def test_keys_are_listed_and_revoked_from_the_command_line(database_url: str) -> None:
    env = {"NURTURE_DATABASE_URL": database_url}
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--workspace", "acme"], env=env)
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    listed = runner.invoke(app, ["keys", "list", "--workspace", "acme"], env=env)
    assert listed.exit_code == 0 and f"nk_{key_id}_" in listed.output
    assert key not in listed.output  # never the secret
    revoked = runner.invoke(app, ["keys", "revoke", key], env=env)
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(app, ["keys", "revoke", key_id], env=env)
    assert again.exit_code == 1
