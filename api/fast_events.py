"""`POST /v1/events` without the framework's routing and dependency machinery: the hot path
of ingestion (docs/performance.md, "CPU per unit of work").

An ASGI layer in front of the FastAPI app answers the plain case itself: a known API key,
a JSON body that parses, within the workspace's rate. It runs the route's own steps
(`api.routes.events`: parse, charge, store) and answers with the same body. Anything else
(no key or an unknown one, another content type, a body that does not parse or validate)
goes to the app with the bytes already read, so every refusal is the app's own; a refusal
while storing is rendered by the app's exception handlers. The route stays the contract
(OpenAPI, the client) and the answer for everything the fast path leaves alone.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Quota, key_workspace
from api.errors import CallerError
from api.routes.events import accept_events, parse_events

PATH = "/v1/events"


class EventsFastPath:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:  # the client went away
            return
        accepted = await self._plain(scope, body)
        if accepted is None:
            await self.app(scope, _replay(body, receive), send)
            return
        workspace, events, batch = accepted
        try:
            out = await accept_events(
                self.api.state.pool,
                workspace,
                Quota(self.api.state.ingest_buckets, workspace),
                events,
                batch,
                self.api.state.relay,
            )
        except Exception as exc:
            handler = _handler(self.api, exc)
            if handler is None:
                raise
            response = await handler(Request(scope), exc)
        else:
            response = Response(out.model_dump_json(), 202, media_type="application/json")
        await response(scope, _replay(b"", receive), send)

    async def _plain(self, scope: Scope, body: bytes) -> tuple[str, list[Any], bool] | None:
        """The workspace and the events when the request is the plain case, else None."""
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if content_type != b"application/json" or scheme.lower() != "bearer" or not key:
            return None
        workspace = await key_workspace(self.api, key)
        if workspace is None:
            return None
        try:
            events, batch = parse_events(json.loads(body))
        except (ValueError, RecursionError, CallerError, RequestValidationError):
            return None
        return workspace, events, batch


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then the server's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _handler(api: FastAPI, exc: Exception) -> Any:
    """The app's handler for this exception (by its class, then its bases), or None."""
    for cls in type(exc).__mro__:
        handler = api.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None
