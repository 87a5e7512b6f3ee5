"""Every endpoint but /healthz and the docs needs a key; workspaces never mix."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment

from store.api_keys import create_key
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
