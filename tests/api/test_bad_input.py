"""Whatever a caller sends, the answer is never a 5xx and every 4xx says
why in JSON (`reason`). Schemathesis generates valid and invalid requests from the app's
own OpenAPI and sends them to the app in-process (ASGI), with a fixed seed and budget."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from shared.settings import Settings
from store.api_keys import create_key
from tests.helpers.journeys import definition

EXAMPLES_PER_OPERATION = 40
"""The fuzz budget: examples per operation and generation mode (valid and invalid)."""
SEED = 20261123


def _fuzzed() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid inputs; those that take any input with invalid ones too."""
    document = create_app(Settings()).openapi()
    return [
        (method.upper(), path, mode)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        for mode in GenerationMode
        if mode is GenerationMode.POSITIVE
        or operation.get("parameters")
        or operation.get("requestBody")
    ]


FUZZED = _fuzzed()


@pytest.fixture
def api_key(database_url: str) -> str:
    async def make() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await create_key(conn, "fuzz")
        finally:
            await conn.close()

    return asyncio.run(make())


@pytest.fixture
def api_schema(dev_env: WorkflowEnvironment, database_url: str, task_queue: str) -> Iterator[Any]:
    """The app as `nurture api` builds it: its lifespan opens the pool and the Temporal
    client on schemathesis' own event loop thread, and runs the relay."""
    settings = Settings(
        database_url=database_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=task_queue,
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    asgi.shutdown_lifespans()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("method", "path", "mode"), FUZZED, ids=[f"{m} {p} {g.value}" for m, p, g in FUZZED]
)
def test_no_request_gets_a_5xx_and_every_4xx_has_a_reason(
    api_schema: Any, api_key: str, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    checked: list[int] = []

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {api_key}"})
        where = (
            f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
            f" -> {response.status_code}: {response.text[:300]}"
        )
        assert response.status_code < 500, where
        if response.status_code >= 400:
            body = json.loads(response.text)
            assert isinstance(body, dict) and isinstance(body.get("reason"), str), where
            assert body["reason"] and isinstance(body.get("message"), str), where
        checked.append(response.status_code)

    check()
    assert checked


VALID_BODIES: dict[str, Any] = {
    "validate_journey": definition(),
    "create_journey": definition(),
    "edit_journey": definition(),
    "enroll_contact": {"contact_id": "ada"},
    "upsert_contact": {"properties": {"plan": "gold"}},
    "change_members": {"add": ["ada"]},
    "post_events": {"contact_id": "ada", "type": "purchase"},
    "put_template": {"subject": "Hi", "text": "Hello {{ contact.first_name }}"},
    "put_channel_settings": {"timezone": "Europe/Berlin"},
    "simulate_definition": {"journey": definition(), "contact": {"id": "ada"}},
    "simulate_journey": {"contact": {"id": "ada"}},
}
BODY_OPERATIONS = [
    (method.upper(), path, operation["operationId"])
    for path, methods in create_app(Settings()).openapi()["paths"].items()
    for method, operation in methods.items()
    if "requestBody" in operation
]


@pytest.fixture
async def small_app(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with a 4 KiB body limit."""
    app = create_app(Settings(max_body_bytes=4096), pool=pool, temporal=dev_env.client)
    key = await create_key(pool, "limits")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://nurture.test",
        headers={"Authorization": f"Bearer {key}"},
    ) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path", "operation_id"), BODY_OPERATIONS, ids=[o for _, _, o in BODY_OPERATIONS]
)
async def test_every_body_over_the_limit_is_413_and_unknown_fields_are_422(
    small_app: httpx.AsyncClient, method: str, path: str, operation_id: str
) -> None:
    url = path.format(
        journey_id="jrn_000000000000", list_name="trial-users", contact_id="ada", name="welcome"
    )
    valid = VALID_BODIES[operation_id]
    too_large = json.dumps({**valid, "padding": "x" * 8192})
    response = await small_app.request(
        method, url, content=too_large, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["reason"]) == (413, "payload_too_large")

    unknown = await small_app.request(method, url, json={**valid, "colour": "blue"})
    assert "colour" in unknown.text, unknown.text
    if operation_id == "validate_journey":  # its answer is the verdict itself
        assert unknown.json()["valid"] is False, unknown.text
    else:
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["reason"], unknown.text
