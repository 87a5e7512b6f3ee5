"""Journeys and their life cycle (docs/design.md, "Journey life cycle"): create, edit,
activate, deactivate, delete. Run by the API process.

States: `draft → active ⇄ inactive`, and delete from any of them. Only a draft or an
inactive journey can be edited; each edit that changes the definition is a new version,
and running enrollments keep the version they started on (it travels in their workflow
input). Activating starts an activation batch that enrolls every contact already eligible;
deactivating stops it (and, with `unenroll`, ends the running enrollments through their
workflows).

Every state change locks the journey row first; creation, owner changes and activation
also take a per-workspace lock, so the limits (`shared.limits`) hold under concurrent
requests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client

from services.audience import bulk_enrolls
from services.batches import start_batch, stop_activations
from services.rendering import renderer
from shared import limits
from shared.activation import BatchKind
from shared.assets import Asset, assets_of, not_ready
from shared.errors import Conflict, Invalid, NotFound
from shared.journey import CreateTask, Journey, SendNotification
from shared.settings import Settings
from shared.templates import TOO_COSTLY, RenderError
from shared.validation import Problem
from shared.versions import changes_between
from store import batches as batches_store
from store import changes as changes_store
from store import enrollments as enrollments_store
from store import journeys as journeys_store
from store import metrics as metrics_store
from store import templates as templates_store
from store import workspaces as workspaces_store
from store.db import Queryable


@dataclass(frozen=True)
class Changed:
    """A journey after a life-cycle step, and the batch the step started, if any."""

    journey: asyncpg.Record
    batch: asyncpg.Record | None = None
    backfilled: int | None = None
    """Activate with a backfill: the trigger's past events queued as entries."""


async def get(
    conn: Queryable, workspace: str, journey_id: str, *, lock: bool = False
) -> asyncpg.Record:
    """The journey's row (locked for update with `lock`), or `NotFound`."""
    row = await journeys_store.journey(conn, workspace, journey_id, "update" if lock else "")
    if row is None:
        raise NotFound("journey_not_found", f"No journey with id {journey_id!r}.")
    return row


async def _check_owner(
    conn: Queryable, settings: Settings, workspace: str, owner: str, journey_id: str
) -> None:
    await journeys_store.lock_workspace(conn, workspace)
    owned = await journeys_store.count_by_owner(conn, workspace, owner, journey_id)
    if refused := limits.owner_limit(owner, owned, settings.max_journeys_per_owner):
        raise refused


async def _check_workspace(
    conn: Queryable, settings: Settings, workspace: str, journey_id: str
) -> None:
    """Under the workspace lock `_check_owner` takes."""
    journeys = await journeys_store.count_in_workspace(conn, workspace, journey_id)
    if refused := limits.workspace_limit(journeys, settings.max_journeys_per_workspace):
        raise refused


async def costly_texts(settings: Settings, journey: Journey) -> list[Problem]:
    """Task titles and notes and notification messages rendered once, over an empty
    contact, by the renderer: one over a render's limits is a problem
    (`template_too_costly`; docs/reliability.md, "Security")."""
    problems = []
    for stage in journey.stages:
        for i, action in enumerate(stage.actions):
            texts = {}
            if isinstance(action, CreateTask):
                texts = {"title": action.title, "notes": action.notes}
            elif isinstance(action, SendNotification):
                texts = {"message": action.message}
            for field, source in texts.items():
                if source is None:
                    continue
                try:
                    await renderer(settings).render_parts({"text": source}, {})
                except RenderError as exc:
                    if exc.reason == TOO_COSTLY:
                        path = f"stages[{stage.key}].actions[{i}].{field}"
                        problems.append(Problem(path=path, reason=TOO_COSTLY, message=exc.message))
    return problems


async def create(
    pool: asyncpg.Pool, settings: Settings, workspace: str, journey: Journey, actor: str | None
) -> asyncpg.Record:
    """Saves a draft, version 1."""
    journey_id = f"jrn_{uuid.uuid4().hex[:12]}"
    definition = journey.model_dump(mode="json")
    created = [{"path": "", "change": "created"}]
    async with pool.acquire() as conn, conn.transaction():
        await _check_owner(conn, settings, workspace, journey.owner, journey_id)
        await _check_workspace(conn, settings, workspace, journey_id)
        await journeys_store.insert_journey(
            conn, workspace, journey_id, journey.name, journey.owner, definition
        )
        await journeys_store.insert_version(
            conn, workspace, journey_id, 1, definition, actor or journey.owner, created
        )
        return await get(conn, workspace, journey_id)


async def edit(
    pool: asyncpg.Pool,
    settings: Settings,
    workspace: str,
    journey_id: str,
    journey: Journey,
    actor: str | None,
) -> asyncpg.Record:
    """A new version of a draft or inactive journey (`Conflict` while active); an edit
    that changes nothing makes none."""
    definition = journey.model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        row = await get(conn, workspace, journey_id, lock=True)
        if row["status"] == "active":
            raise Conflict(
                "journey_active", "An active journey cannot be edited; deactivate it first."
            )
        if row["definition"] == definition:
            return row
        if journey.owner != row["owner"]:
            await _check_owner(conn, settings, workspace, journey.owner, journey_id)
        version = row["version"] + 1
        epoch = limits.goal_epoch_after_edit(row["definition"], journey, row["goal_epoch"])
        await journeys_store.update_definition(
            conn, workspace, journey_id, journey.name, journey.owner, definition, version, epoch
        )
        changes = changes_between(row["definition"], definition)
        await journeys_store.insert_version(
            conn, workspace, journey_id, version, definition, actor or journey.owner, changes
        )
        return await get(conn, workspace, journey_id)


MAX_BACKFILL = timedelta(days=30)
MAX_BACKFILL_EVENTS = 100_000


async def _backfill(
    conn: Any, workspace: str, journey_id: str, journey: Journey, since: timedelta
) -> int:
    event = journey.trigger.event if journey.trigger is not None else None
    if event is None:
        raise Invalid(
            "backfill_needs_event_trigger", "Only a journey started by an event can backfill."
        )
    if not timedelta(0) < since <= MAX_BACKFILL:
        raise Invalid("invalid_backfill", "backfill is a duration of at most P30D, e.g. P1D.")
    start = datetime.now(UTC) - since
    return await changes_store.backfill(
        conn, workspace, journey_id, event.type, start, MAX_BACKFILL_EVENTS
    )


async def activate(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    workspace: str,
    journey_id: str,
    actor: str | None,
    force: bool = False,
    backfill: timedelta | None = None,
) -> Changed:
    """Accepts enrollments from now on and starts the activation batch; activating an
    active journey changes nothing (its latest activation is returned). A journey whose
    sends would fail or stay in the outbox (a missing template, a channel with no
    provider) is refused `journey_not_ready` with the problems, unless `force`.
    `backfill` (an event-triggered journey): the events of that last while that match its
    trigger are delivered as if they had just arrived (each enters at most once)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await get(conn, workspace, journey_id, lock=True)
        if row["status"] == "active":
            latest = await batches_store.latest(conn, workspace, journey_id, BatchKind.ACTIVATE)
            return Changed(row, latest)
        journey = Journey.model_validate(row["definition"])
        if not force and (problems := await readiness(conn, settings, workspace, journey)):
            raise Conflict(
                "journey_not_ready",
                f"The journey has {len(problems)} problem(s) that would make its sends fail "
                "or wait in the outbox; fix them, or activate with force=true.",
                problems=[p.model_dump() for p in problems],
            )
        await journeys_store.lock_workspace(conn, workspace)
        others = await journeys_store.active_audiences(conn, workspace, journey_id)
        active = [(o["id"], o["lists"], o["property"]) for o in others]
        if refused := limits.audience_conflict(journey, active):
            raise refused
        await journeys_store.set_status(conn, workspace, journey_id, "active")
        row = await get(conn, workspace, journey_id)
        batch = None
        if bulk_enrolls(journey):
            batch = await start_batch(
                conn, temporal, settings, BatchKind.ACTIVATE, workspace, row, actor
            )
        queued = None
        if backfill is not None:
            queued = await _backfill(conn, workspace, journey_id, journey, backfill)
        return Changed(row, batch, queued)


async def deactivate(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    workspace: str,
    journey_id: str,
    actor: str | None,
    unenroll: bool,
) -> Changed:
    """Stops new enrollments and a running activation (before its next chunk); with
    `unenroll`, a batch ends the running enrollments too. A draft: `Conflict`."""
    async with pool.acquire() as conn, conn.transaction():
        row = await get(conn, workspace, journey_id, lock=True)
        if row["status"] == "draft":
            raise Conflict(
                "journey_not_active", "A draft journey was never active; nothing to stop."
            )
        if row["status"] == "active":
            await journeys_store.set_status(conn, workspace, journey_id, "inactive")
            await stop_activations(conn, workspace, journey_id, "journey_deactivated")
            row = await get(conn, workspace, journey_id)
        batch = None
        if unenroll:
            running, _ = await _open(conn, workspace, journey_id)
            batch = await _unenroll(conn, temporal, settings, workspace, row, actor, running, False)
        return Changed(row, batch)


async def delete(
    pool: asyncpg.Pool,
    temporal: Client,
    settings: Settings,
    workspace: str,
    journey_id: str,
    actor: str | None,
    unenroll: bool,
) -> asyncpg.Record | None:
    """Deletes the journey and its versions (the enrollment logs stay); while enrollments
    run or wait in their attribution window, only with `unenroll` (the batch ending them
    is returned), else `Conflict`."""
    async with pool.acquire() as conn, conn.transaction():
        row = await get(conn, workspace, journey_id, lock=True)
        running, in_window = await _open(conn, workspace, journey_id)
        count = running + in_window
        if count and not unenroll:
            raise Conflict(
                "enrollments_running",
                f"{count} enrollment(s) of this journey have not ended; "
                "deactivate with unenroll=true, or delete with unenroll=true.",
                running=running,
                in_attribution_window=in_window,
            )
        await stop_activations(conn, workspace, journey_id, "journey_deleted")
        batch = await _unenroll(conn, temporal, settings, workspace, row, actor, count, True)
        await journeys_store.delete(conn, workspace, journey_id)
        return batch


async def _open(conn: Queryable, workspace: str, journey_id: str) -> tuple[int, int]:
    """(running, in their attribution window) enrollments of the journey."""
    row = await enrollments_store.count_open(conn, workspace, journey_id)
    return (row["running"], row["in_window"]) if row else (0, 0)


async def _unenroll(
    conn: Queryable,
    temporal: Client,
    settings: Settings,
    workspace: str,
    row: asyncpg.Record,
    actor: str | None,
    count: int,
    include_attribution_window: bool,
) -> asyncpg.Record | None:
    if count == 0:
        return None
    return await start_batch(
        conn,
        temporal,
        settings,
        BatchKind.UNENROLL,
        workspace,
        row,
        actor,
        total=count,
        include_attribution_window=include_attribution_window,
    )


async def assets(
    conn: Queryable, settings: Settings, workspace: str, journey: Journey, *, lists: bool = True
) -> list[Asset]:
    """The journey's assets, each told whether it exists (templates saved, lists with
    members) or is configured (email: an SMTP host; sms, whatsapp, tasks and
    notifications: the workspace's webhook) now."""
    found = assets_of(journey)
    names = [a.name for a in found if a.kind == "template"]
    saved = await templates_store.existing(conn, workspace, names) if names else set()
    hooked = (await workspaces_store.channel_settings(conn, workspace)).webhook is not None
    for asset in found:
        if asset.kind == "template":
            asset.exists = asset.name in saved
        elif asset.kind == "list" and lists:
            asset.exists = await metrics_store.list_size(conn, workspace, asset.name) > 0
        elif asset.kind == "channel":
            asset.exists = bool(settings.smtp_host) if asset.name == "email" else hooked
    return found


async def readiness(
    conn: Queryable, settings: Settings, workspace: str, journey: Journey
) -> list[Problem]:
    """Warnings for what would make sends fail or stay in the outbox: a missing template,
    a channel with no provider."""
    # lists never make a journey unready: their sizes are not read
    return not_ready(await assets(conn, settings, workspace, journey, lists=False))
