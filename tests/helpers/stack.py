"""The API served for real (uvicorn on a loopback port) next to a real worker, and waiting
for what the real servers do in real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import httpx
import uvicorn
from temporalio.client import Client

from api.main import create_app
from cli.stack import free_port
from shared.settings import Settings
from store.api_keys import create_key
from workers.worker import build_worker


@asynccontextmanager
async def running_stack(
    pool: asyncpg.Pool,
    temporal: Client,
    task_queue: str,
    workspace: str = "default",
    relay: bool = True,
    worker: bool = True,
    sender: bool | None = None,
    **settings: object,
) -> AsyncIterator[httpx.AsyncClient]:
    """API on a real socket and a worker on `task_queue`; yields an HTTP client for the API,
    authenticated with a fresh API key of `workspace`. The app's lifespan runs the relay
    that delivers contact changes and events to workflows, unless `relay` is False; no
    worker runs when `worker` is False (the test runs its own). Messages are sent by the
    app's lifespan, or without it by the worker (`sender`: False for none at all)."""
    # metrics count `eligible` afresh on every call, as the tests' assertions expect
    settings = {"metrics_eligible_seconds": 0, **settings}
    config = Settings(task_queue=task_queue, **settings)  # type: ignore[arg-type]
    key = await create_key(pool, workspace)
    app = create_app(config, pool=pool, temporal=temporal)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on" if relay else "off"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with AsyncExitStack() as running:
            if worker:
                # the app's lifespan runs a sender; without it, the worker runs one
                worker_sends = not relay if sender is None else sender
                await running.enter_async_context(
                    build_worker(temporal, pool, task_queue, config, sender=worker_sends)
                )
            http = await running.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}",
                    timeout=30,
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            yield http
    finally:
        # also when the test failed: a server left running keeps its relay polling a
        # pool the fixture has closed, and the session never ends
        server.should_exit = True
        await serving
        simulator = getattr(app.state, "simulator", None)
        if simulator is not None:  # the lifespan closes it, when it ran
            await simulator.close()


async def eventually(check: Callable[[], object], timeout: float = 30) -> None:
    """Polls an async assertion until it passes (for the real dev server's real time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await check()  # type: ignore[misc]
            return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
