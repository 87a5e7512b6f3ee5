"""The bench's client for the API's hot paths (enrolling, posting events), on aiohttp.

The bench client's CPU is counted with the stack's (docs/performance.md), and a request
through httpx cost its caller 2.5 ms of CPU here against 0.23 ms through aiohttp and 0.3
ms for a Temporal client call: the bare side's client is Temporal's, so nurture's should
not pay ten times as much for being an HTTP API. Set-up calls stay on `Stack.http`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

TransportError = aiohttp.ClientConnectionError
"""What a request raises when the API is not there (restarting)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"the API answered {self.status}: {self.body}")


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, key: str, connections: int = 64) -> AsyncIterator[Api]:
        async with aiohttp.ClientSession(
            url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=120),
            # idle connections closed before uvicorn's 5 s keep-alive closes them, so that
            # a request never goes out on a connection the server is closing
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=2.0),
        ) as session:
            yield cls(session)

    async def post(self, path: str, body: Any) -> Answer:
        async with self._session.post(path, json=body) as response:
            text = await response.text()
            try:
                parsed: Any = await response.json(content_type=None) if text else None
            except ValueError:
                parsed = text
            return Answer(response.status, parsed)
