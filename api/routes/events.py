"""Activity events: one, or a batch of up to 1,000, appended to `events` and answered 202.

Delivery is not part of the request: the commit queues each event (a trigger of
`003_delivery.sql`) and the relay signals the enrollments whose journeys read its type,
whether Temporal is up now or only later. The `idempotency_key` is unique per workspace:
posting it again returns the first result and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from api.deps import PoolDep, Quota, QuotaDep, RelayDep, WorkspaceDep
from api.ingest import (
    MAX_BATCH,
    Instant,
    Name,
    Properties,
    batch_too_large,
)
from services.relay import Relay
from store import changes as changes_store
from store import events as events_store
from store.db import with_retry

router = APIRouter(prefix="/v1/events", tags=["events"])


Target = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\x00]+$")]


class EventIn(BaseModel):
    """One activity of a contact."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contact_id": "ada",
                    "type": "form_submitted",
                    "target": "demo-request",
                    "properties": {"plan": "team"},
                    "occurred_at": "2026-11-29T10:00:00Z",
                    "idempotency_key": "crm-4711",
                }
            ]
        },
    )

    contact_id: Name
    type: Name = Field(description="`form_submitted`, `page_viewed`, ... or any custom name.")
    target: Target | None = Field(None, description="A form id, URL or CTA id.")
    properties: Properties = {}
    occurred_at: Instant | None = Field(
        None, description="With a time zone; default: when the API received it."
    )
    idempotency_key: Name | None = Field(
        None,
        description="Unique per workspace: a repeat returns the first result and changes "
        "nothing. Default: a new key, so every post is a new event.",
    )


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(max_length=MAX_BATCH)


BATCH_EXAMPLE = {
    "events": [
        {"contact_id": "ada", "type": "page_viewed", "target": "/pricing"},
        {"contact_id": "grace", "type": "purchase", "properties": {"sku": "pro"}},
    ]
}


class EventOut(BaseModel):
    id: str
    seq: int
    contact_id: str
    idempotency_key: str
    duplicate: bool = Field(description="The key was posted before: this is the first result.")


class EventBatchOut(BaseModel):
    accepted: int = Field(description="New events stored.")
    duplicates: int
    events: list[EventOut] = Field(description="One per event posted, in the same order.")


_single = TypeAdapter(EventIn)
_batch = TypeAdapter(EventBatchIn)


def _events_body() -> dict[str, Any]:
    """The request body for OpenAPI: one event or a batch (parsed by hand, so that each
    form gets its own error paths)."""
    event = EventIn.model_json_schema()
    batch = {
        "title": "EventBatchIn",
        "type": "object",
        "properties": {"events": {"type": "array", "items": event, "maxItems": MAX_BATCH}},
        "required": ["events"],
        "additionalProperties": False,
        "examples": [BATCH_EXAMPLE],
    }
    schema = {"oneOf": [event, batch]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "",
    status_code=202,
    operation_id="post_events",
    summary="Record events (one or a batch)",
    openapi_extra=_events_body(),
    response_model=EventOut | EventBatchOut,
)
async def post_events(
    pool: PoolDep,
    workspace: WorkspaceDep,
    quota: QuotaDep,
    relay: RelayDep,
    payload: Any = Body(None),
) -> EventOut | EventBatchOut:
    """Stores one event (`{"contact_id", "type", ...}`) or a batch (`{"events": [...]}`, at
    most 1,000) and answers 202: the events are stored, and delivered to the enrollments
    that care as soon as Temporal accepts them. A contact that does not exist yet is
    created."""
    events, batch = parse_events(payload)
    return await accept_events(pool, workspace, quota, events, batch, relay)


def parse_events(payload: Any) -> tuple[list[EventIn], bool]:
    """The events of a decoded JSON body, and whether they came as a batch; raises the
    API's refusals (too large a batch, a 422 with every problem's path)."""
    if isinstance(payload, dict) and "events" in payload:
        raw = payload["events"]
        if isinstance(raw, list) and len(raw) > MAX_BATCH:
            raise batch_too_large("events", len(raw))
        return _parse(_batch, payload).events, True
    return [_parse(_single, payload)], False


async def accept_events(
    pool: Any,
    workspace: str,
    quota: Quota,
    events: list[EventIn],
    batch: bool,
    relay: Relay | None = None,
) -> EventOut | EventBatchOut:
    """Charges the workspace's ingest rate and stores the events (`store_events`)."""
    quota.charge(len(events))
    results = await store_events(pool, workspace, events, relay)
    if not batch:
        return results[0]
    return EventBatchOut(
        accepted=sum(not r.duplicate for r in results),
        duplicates=sum(r.duplicate for r in results),
        events=results,
    )


M = TypeVar("M")


def _parse(adapter: TypeAdapter[M], payload: Any) -> M:
    try:
        return adapter.validate_python(payload)
    except PydanticValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


async def store_events(
    pool: Any, workspace: str, events: list[EventIn], relay: Relay | None = None
) -> list[EventOut]:
    """One statement locks the contacts (creating missing ones) and inserts the events
    whose keys are new (`events_store.append`); a second reads the first result of every
    key seen before, only when there is one. Whatever the batch size.

    With this process's `relay` running (and Temporal answering it), the statement also
    queues the events' changes leased to it, and the relay takes them from here
    (`events_store.hand_off`, `Relay.hand_off`): no notification, no claim. Otherwise the
    events trigger queues them for any relay, as always."""
    now = datetime.now(UTC)
    keyed: list[tuple[str, EventIn]] = []
    first: dict[str, EventIn] = {}
    for event in events:
        key = event.idempotency_key or f"evt_{uuid.uuid4().hex}"
        keyed.append((key, event))
        first.setdefault(key, event)
    new = [
        events_store.NewEvent(
            f"evt_{uuid.uuid4().hex}",
            key,
            e.contact_id,
            e.type,
            e.target,
            e.properties,
            e.occurred_at or now,
        )
        for key, e in first.items()
    ]
    handing = relay if relay is not None and relay.takes_hand_offs else None
    handed: list[Any] = []
    # a hand-off runs on the relay's pool, whose statements are planned once: planning
    # this one anew cost Postgres as much as running it (docs/performance.md)
    writing = handing.claims if handing is not None else pool

    async def write() -> dict[str, tuple[str, int, str, bool]]:
        async with writing.acquire() as conn:
            if handing is not None:
                rows = await events_store.hand_off(conn, workspace, new, handing.hand_off_lease)
                handed[:] = rows
                stored = {r["idempotency_key"]: _first(r, "event_id", False) for r in rows}
            else:
                rows = await events_store.append(conn, workspace, new)
                stored = {r["idempotency_key"]: _first(r, "id", False) for r in rows}
            seen = [e.key for e in new if e.key not in stored]
            if seen:
                for r in await events_store.by_keys(conn, workspace, seen):
                    stored[r["idempotency_key"]] = _first(r, "id", True)
            return stored

    stored = await with_retry(write)
    if handing is not None and handed:
        handing.hand_off(changes_store.claim_of(sorted(handed, key=lambda r: r["id"]), False))
    results: list[EventOut] = []
    used: set[str] = set()
    for key, _ in keyed:
        event_id, seq, contact_id, repeated = stored[key]
        results.append(
            EventOut(
                id=event_id,
                seq=seq,
                contact_id=contact_id,
                idempotency_key=key,
                # a key repeated inside the batch is a duplicate after its first use
                duplicate=repeated or key in used,
            )
        )
        used.add(key)
    return results


def _first(row: Any, id_column: str, repeated: bool) -> tuple[str, int, str, bool]:
    """An event's first result: its id, seq and contact, and whether it was stored before."""
    return row[id_column], row["seq"], row["contact_id"], repeated
