"""The API's HTTP server (`api.server`): uvicorn, ticking once a second instead of ten
times (each tick is a wake-up of the process), still refreshing its Date header, and
stopping at once on a signal."""

from __future__ import annotations

import asyncio
import signal

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from api.server import Server
from cli.stack import free_port


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class _Counted(Server):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


async def test_the_server_ticks_once_a_second_and_stops_at_once_on_a_signal() -> None:
    port = free_port()
    server = _Counted(uvicorn.Config(_app, host="127.0.0.1", port=port, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/")
        assert answer.status_code == 204
        assert answer.headers["date"].endswith(" GMT")
        before = server.ticks
        await asyncio.sleep(2.5)
        # uvicorn's own loop ticks 25 times in 2.5 s; this one 2 or 3 times
        assert 1 <= server.ticks - before <= 4
    finally:
        server.handle_exit(signal.SIGTERM, None)
        server._captured_signals.clear()  # uvicorn would raise it again in this process
        # ends without waiting for a tick: a hang here fails on the suite's timeout
        await asyncio.wait_for(serving, 30)
    assert serving.done() and serving.exception() is None
