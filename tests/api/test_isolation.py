"""Every route of the app's OpenAPI, called with another workspace's key
over the resources of the first, neither reads nor changes them (404, not 403: existence
does not leak). The routes come from the app itself, so a new route is walked too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from cli.stack import EmbeddedPostgres
from shared.settings import Settings
from store.api_keys import create_key
from store.db import create_pool
from tests.conftest import TEMPLATE_DB
from tests.helpers.journeys import definition

OPEN = {("GET", "/healthz")}
"""The only operation that answers without a key (besides the docs)."""

OWNER = "acme"
CONTACT = "ada"
LIST = "trial-users"
EVENT_KEY = "acme-order-1"
TEMPLATE = "welcome"


def _operations() -> list[tuple[str, str]]:
    document = create_app(Settings()).openapi()
    return [
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if method in {"get", "put", "post", "delete", "patch"}
    ]


OPERATIONS = _operations()


@dataclass
class Owned:
    """What workspace `acme` owns, and how to look at all of it."""

    http: httpx.AsyncClient
    pool: asyncpg.Pool
    journey_id: str
    event_id: str
    dead_letter_id: int

    async def snapshot(self) -> dict[str, Any]:
        """Everything the owner can read over HTTP, plus its rows in every table."""
        reads = [
            "/v1/journeys",
            f"/v1/journeys/{self.journey_id}",
            f"/v1/journeys/{self.journey_id}/enrollments",
            f"/v1/journeys/{self.journey_id}/enrollments/{CONTACT}",
            f"/v1/journeys/{self.journey_id}/metrics",
            f"/v1/contacts/{CONTACT}",
            f"/v1/lists/{LIST}/members",
            f"/v1/templates/{TEMPLATE}",
            "/v1/settings/channels",
            "/v1/messages",
            "/v1/dead-letters",
        ]
        seen: dict[str, Any] = {}
        for path in reads:
            response = await self.http.get(path)
            assert response.status_code == 200, (path, response.text)
            seen[path] = response.json()
        tables = ("journeys", "contacts", "list_members", "events", "enrollments", "templates")
        for table in (*tables, "channel_settings", "dev_mailbox", "deliveries"):
            rows = await self.pool.fetch(f"SELECT * FROM {table} WHERE workspace = $1", OWNER)
            seen[table] = sorted(repr(sorted(dict(r).items())) for r in rows)
        return seen


@pytest.fixture(scope="module")
async def owned(dev_env: WorkflowEnvironment, postgres: EmbeddedPostgres) -> AsyncIterator[Owned]:
    """Workspace `acme` with an active journey, a contact in a list, an event and a running
    enrollment; the app served in-process (ASGI) against the real Postgres and Temporal."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    pool = await create_pool(postgres.url_for(name), max_size=10)
    settings = Settings(task_queue=f"tq-{uuid.uuid4()}", dev_mailbox=True)
    app = create_app(settings, pool=pool, temporal=dev_env.client)
    key = await create_key(pool, OWNER)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://nurture.test",
        headers={"Authorization": f"Bearer {key}"},
    ) as http:
        created = await http.post("/v1/journeys", json=definition(eligible_lists=[LIST]))
        assert created.status_code == 201, created.text
        journey_id = created.json()["id"]
        assert (
            await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
        ).status_code == 200
        contact = await http.put(f"/v1/contacts/{CONTACT}", json={"properties": {"plan": "gold"}})
        assert contact.status_code == 200, contact.text
        assert (await http.put(f"/v1/lists/{LIST}/members/{CONTACT}")).status_code == 204
        event = await http.post(
            "/v1/events",
            json={"contact_id": CONTACT, "type": "purchase", "idempotency_key": EVENT_KEY},
        )
        assert event.status_code == 202, event.text
        enrolled = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": CONTACT}
        )
        assert enrolled.status_code == 201, enrolled.text
        template = {"subject": "For gold", "text": "gold"}
        assert (await http.put(f"/v1/templates/{TEMPLATE}", json=template)).status_code == 200
        hook = {"url": "https://hooks.acme.test/gold", "secret": "acme-secret-0123456789"}
        channels = await http.put("/v1/settings/channels", json={"webhook": hook})
        assert channels.status_code == 200, channels.text
        await pool.execute(
            "INSERT INTO dev_mailbox (workspace, mail_from, rcpt_to, subject)"
            " VALUES ($1, 'x@acme.test', ARRAY['ada@acme.test'], 'gold')",
            OWNER,
        )
        # an event Temporal refused for good (the relay does not run here)
        dead_letter_id = await pool.fetchval(
            "INSERT INTO deliveries (workspace, contact_id, journey_id, workflow_id, kind, seq,"
            " failed_at, last_error) VALUES ($1, $2, $3, $4, 'event', $5, now(), 'too big')"
            " RETURNING id",
            OWNER,
            CONTACT,
            journey_id,
            enrolled.json()["workflow_id"],
            event.json()["seq"],
        )
        yield Owned(http, pool, journey_id, event.json()["id"], dead_letter_id)
    if getattr(app.state, "simulator", None) is not None:  # no lifespan ran to close it
        await app.state.simulator.close()
    await pool.close()


def _body(operation_id: str) -> Any:
    """A well-formed body for each operation that takes one, aimed at the owner's data."""
    return {
        "validate_journey": definition(),
        "create_journey": definition(),
        "edit_journey": definition(name="Hijacked"),
        "enroll_contact": {"contact_id": CONTACT},
        "upsert_contact": {"properties": {"plan": "hijacked"}},
        "change_members": {"remove": [CONTACT]},
        "post_events": {"contact_id": CONTACT, "type": "purchase", "idempotency_key": EVENT_KEY},
        "put_template": {"text": "hijacked"},
        "put_channel_settings": {"timezone": "Asia/Tokyo"},
        "simulate_definition": {"journey": definition(), "contact": {"id": CONTACT}},
        "simulate_journey": {"contact": {"id": CONTACT}},
    }.get(operation_id)


def _url(path: str, owned: Owned) -> str:
    return path.format(
        journey_id=owned.journey_id,
        contact_id=CONTACT,
        list_name=LIST,
        name=TEMPLATE,
        version=1,
        entry=1,
        dead_letter_id=owned.dead_letter_id,
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_another_workspace_never_reads_or_changes_the_owners_data(
    owned: Owned, method: str, path: str
) -> None:
    document = create_app(Settings()).openapi()
    operation_id = document["paths"][path][method.lower()]["operationId"]
    intruder = await create_key(owned.pool, f"intruder-{uuid.uuid4().hex[:8]}")
    before = await owned.snapshot()

    body = _body(operation_id)
    response = await owned.http.request(
        method,
        _url(path, owned),
        json=body,
        headers={"Authorization": f"Bearer {intruder}"},
    )
    owned_by_name = {
        "get_contact", "get_template", "delete_template", "retry_dead_letter",
        "template_performance",
    }  # fmt: skip
    if "{journey_id}" in path or operation_id in owned_by_name:
        # the owner's journey or contact, addressed by id: it does not exist for the intruder
        assert response.status_code == 404, response.text
        assert response.json()["reason"].endswith("not_found"), response.text
    else:
        assert response.status_code < 400, response.text
    # a 404 may echo the id the caller sent; nothing else of the owner's shows
    secrets = [owned.event_id, "gold"] + ([] if "{journey_id}" in path else [owned.journey_id])
    for secret in secrets:
        assert secret not in response.text, (secret, response.text)
    if operation_id == "post_events":
        assert response.json()["duplicate"] is False  # the owner's key is not the intruder's
    assert await owned.snapshot() == before

    anonymous = await owned.http.request(
        method, _url(path, owned), json=body, headers={"Authorization": ""}
    )
    if (method, path) in OPEN:
        assert anonymous.status_code == 200
    else:
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["reason"] == "missing_api_key"
