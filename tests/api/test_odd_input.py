"""No 500 on odd text: NUL bytes and lone surrogates in ids, properties, bodies and cursors,
a version number over int32, a moment out of range once in UTC: each a 4xx with a
`reason`, and nothing written."""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition
from tests.helpers.stack import running_stack


def _cursor(after: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def _deep_journey(levels: int) -> str:
    """A journey whose goal nests `any` `levels` deep, written as text (too deep for
    `json.dumps`)."""
    leaf = '{"property": "plan", "op": "eq", "value": "paid"}'
    criteria = '{"any": [' * levels + leaf + "]}" * levels
    body = json.dumps(definition(goal={"criteria": "CRITERIA"}))
    return body.replace('"CRITERIA"', criteria)


ODD = [
    ("POST", "/v1/journeys", _deep_journey(250)),
    ("POST", "/v1/journeys", _deep_journey(3000)),
    ("PUT", "/v1/contacts/a%00b", '{"properties": {}}'),
    ("PUT", "/v1/contacts/ada", '{"properties": {"x": "\\ud800"}}'),
    ("PUT", "/v1/contacts/ada", '{"properties": {"\\udfff": 1}}'),
    ("PUT", "/v1/contacts/ada", '{"properties": {"x": "a\\u0000b"}}'),
    ("POST", "/v1/events", '{"contact_id": "ada", "type": "x", "properties": {"y": "\\ud800"}}'),
    (
        "POST",
        "/v1/events",
        '{"contact_id": "ada", "type": "x", "occurred_at": "9999-12-31T23:59:59-14:00"}',
    ),
    ("POST", "/v1/journeys", '{"name": "a\\u0000", "owner": "x"}'),
    ("PUT", "/v1/templates/welcome", '{"subject": "a\\ud800", "text": "x"}'),
    ("PUT", "/v1/lists/a%00/members/ada", None),
    ("GET", "/v1/journeys/a%00b", None),
    ("GET", "/v1/journeys/{journey}/versions/99999999999", None),
    ("GET", "/v1/journeys/{journey}/enrollments/a%00b", None),
    ("GET", "/v1/journeys/{journey}/eligibility/a%00b", None),
    ("GET", "/v1/journeys/{journey}/metrics?since=9999-12-31T23:59:59-14:00", None),
    ("GET", f"/v1/journeys/{{journey}}/enrollments?cursor={_cursor('a' + chr(0))}", None),
    ("GET", f"/v1/journeys?cursor={_cursor(['2026-01-01T00:00:00+00:00', 'a' + chr(0)])}", None),
    ("GET", "/v1/tasks?journey_id=a%00b", None),
    ("POST", "/v1/dead-letters/99999999999999999999/retry", None),
    ("GET", "/v1/contacts/a%2Fb", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ODD)
async def test_odd_text_is_a_4xx_with_a_reason_and_writes_nothing(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    method: str,
    path: str,
    body: str | None,
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, relay=False) as http:
        journey_id = (await http.post("/v1/journeys", json=definition())).json()["id"]
        before = await pool.fetchval("SELECT count(*) FROM contacts")
        response = await http.request(
            method,
            path.replace("{journey}", journey_id),
            content=body,
            headers={"content-type": "application/json"} if body else {},
        )
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.json()["reason"], response.text
        assert await pool.fetchval("SELECT count(*) FROM contacts") == before
