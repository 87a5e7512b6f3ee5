"""Postgres access for the API and the activities: the pool and the numbered migrations.

Never imported by workflow code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.errors import Unavailable

log = logging.getLogger("nurture.db")

Queryable = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
"""Anything a statement can run on: the pool, a connection, or one borrowed from the pool."""

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class _Connection(asyncpg.Connection):
    """A pooled connection whose return to the pool costs no statement, unless it took a
    session advisory lock (the sender's claim on a row): then the locks are released.
    asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) ran four
    statements on every release; nothing here opens cursors, sets session settings or
    listens on a pooled connection without unlistening (`listen` does)."""

    _session_locks = False

    def took_session_lock(self) -> None:
        self._session_locks = True

    def get_reset_query(self) -> str:
        if not self._session_locks:
            return ""
        self._session_locks = False
        return "SELECT pg_advisory_unlock_all()"


async def create_pool(
    url: str, min_size: int = 1, max_size: int = 10, *, generic_plans: bool = False
) -> asyncpg.Pool:
    """A pool of `_Connection`s. `generic_plans`: its prepared statements are planned once
    (`plan_cache_mode`), for a few statements run all the time whose plan does not depend
    on their values (the relay's claim: Postgres kept planning it anew on every call,
    0.3 ms each). Not for a pool that serves listings with optional filters."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connection_class=_Connection,
        server_settings={"plan_cache_mode": "force_generic_plan"} if generic_plans else None,
    )
    assert pool is not None
    return pool


async def create_database(url: str, name: str) -> None:
    """Creates database `name` on the server at `url` unless it exists (`name` is ours)."""
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


T = TypeVar("T")

CONFLICTS = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


async def with_retry(run: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Runs a transaction again when Postgres picked it as a deadlock's victim; after
    `attempts`, a 503 `write_conflict` for the caller to retry."""
    for _ in range(attempts):
        try:
            return await run()
        except CONFLICTS:
            continue
    raise Unavailable(
        "write_conflict", "Concurrent writes to the same contacts kept colliding; retry."
    )


async def ping(conn: Queryable) -> None:
    """A round trip to Postgres (health checks)."""
    await conn.fetchval("SELECT 1")


def migration_files() -> list[tuple[str, str]]:
    sql_dir = resources.files("store") / "sql"
    names = sorted(p.name for p in sql_dir.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (sql_dir / name).read_text()) for name in names]


async def migrate(url: str) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction. Returns what ran."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7233)")
        await conn.execute(MIGRATIONS_TABLE)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await conn.close()


def pairs(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(workspace, id) pairs as two arrays for `unnest`, sorted and without repeats."""
    ordered = sorted(set(keys))
    return [w for w, _ in ordered], [i for _, i in ordered]


async def wait_any(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Waits until `stop` or `wake` is set, or `seconds` have passed."""
    waiters = [asyncio.create_task(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.create_task(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def listen(
    pool: asyncpg.Pool,
    channel: str,
    notified: Callable[[str], object],
    stop: asyncio.Event,
    retry_after: float = 5.0,
) -> None:
    """Calls `notified(payload)` on every NOTIFY on `channel` until `stop` is set, holding
    one of the pool's connections; a lost connection is replaced (the caller polls
    meanwhile)."""

    def on_notify(_conn: object, _pid: object, _channel: object, payload: object) -> None:
        notified(str(payload))

    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                await conn.add_listener(channel, on_notify)
                try:
                    while not stop.is_set() and not conn.is_closed():
                        await wait_any(stop, None, 5.0)
                finally:
                    if not conn.is_closed():
                        await conn.remove_listener(channel, on_notify)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("LISTEN %s: connection lost; polling until it is back", channel)
            await wait_any(stop, None, retry_after)
