"""The API process's HTTP server: uvicorn, woken once a second rather than ten times.

uvicorn's server wakes every tenth of a second to refresh its `Date` header (once a
second) and to see whether it should stop. On the machines nurture is measured on, each
wake-up of a Python process costs CPU however little it then does: an idle API woke
about 14 times a second, 5 with this server, and spent about a quarter less CPU idling
(docs/performance.md, "Wake-ups"). This server refreshes the header once a second as
before, and a stop signal wakes it at once instead of at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn


class Server(uvicorn.Server):
    _woken: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        # `on_tick(0)` refreshes the Date header, and says whether to stop
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 1.0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._woken is not None:
            self._loop.call_soon_threadsafe(self._woken.set)
