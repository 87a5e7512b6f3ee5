"""Templates rendered off the event loop, with a hard time and memory limit
(docs/reliability.md, "Security"). Used by the API (a template's sample render) and the
worker (messages, task titles, notification messages): neither ever renders inline.

A few child processes (`python -m services.render_child`, NURTURE_RENDER_PROCESSES each)
take one render at a time over a pipe (JSON lines). A child whose render outlives
NURTURE_RENDER_SECONDS is killed and replaced, and the render fails with
`template_too_costly`; a child's address space is capped (NURTURE_RENDER_MEMORY_MB), so a
template that allocates too much fails the same way. The limited sandbox
(`shared.templates`) refuses the cheap tricks before they cost anything.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import suppress
from typing import Any

from shared.settings import Settings
from shared.templates import INVALID, TOO_COSTLY, Rendered, RenderError, TemplateBody

READ_LIMIT = 64 * 1024 * 1024


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, request: bytes) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(request)
        await stdin.drain()
        line = await stdout.readline()
        if not line:
            raise ConnectionError("the render process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            self.process.kill()


class Renderer:
    """A pool of render processes, started on first use in the running event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Queue[_Child | None] = asyncio.Queue()
        self._all: set[_Child] = set()

    async def render(
        self,
        template: TemplateBody,
        contact: dict[str, Any],
        variables: dict[str, Any] | None = None,
    ) -> Rendered:
        """Every part of the template; RenderError names the failing part and its reason.
        `variables`: `trigger`, `unsubscribe_url` (shared.templates)."""
        parts = template.model_dump()
        return Rendered(**await self.render_parts(parts, contact, variables))

    async def render_lenient(
        self, source: str, contact: dict[str, Any], trigger: dict[str, Any] | None = None
    ) -> str:
        """Task titles and notification messages: the text as written when it cannot render
        (they were checked when the journey was saved)."""
        try:
            variables = {"trigger": trigger} if trigger else None
            return (await self.render_parts({"text": source}, contact, variables))["text"] or ""
        except RenderError:
            return source

    async def render_parts(
        self,
        parts: dict[str, str | None],
        contact: dict[str, Any],
        variables: dict[str, Any] | None = None,
    ) -> dict[str, str | None]:
        asked: dict[str, Any] = {"parts": parts, "contact": contact}
        if variables:
            asked["variables"] = variables
        request = json.dumps(asked, default=str).encode() + b"\n"
        child = await self._take()
        try:
            async with asyncio.timeout(self.settings.render_seconds):
                answer = await child.ask(request)
        except TimeoutError:
            self._drop(child)
            part = next((p for p, s in parts.items() if s), "template")
            why = f"it takes longer than {self.settings.render_seconds:g} s to render"
            raise RenderError(part, why, TOO_COSTLY) from None
        except BaseException:
            self._drop(child)
            raise
        self._idle.put_nowait(child)
        if "error" in answer:
            error = answer["error"]
            raise RenderError(error["part"], error["message"], error.get("reason", INVALID))
        out: dict[str, str | None] = answer["ok"]
        return out

    async def close(self) -> None:
        for child in list(self._all):
            self._drop(child)
            with suppress(Exception):
                await child.process.wait()

    # --- the children ------------------------------------------------------------------------

    async def _take(self) -> _Child:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests, a CLI run): start afresh
            for child in list(self._all):
                self._drop(child)
            self._loop, self._idle = loop, asyncio.Queue()
            for _ in range(max(1, self.settings.render_processes)):
                self._idle.put_nowait(None)  # a slot whose child starts on first use
        taken = await self._idle.get()
        if taken is not None and taken.process.returncode is None:
            return taken
        if taken is not None:
            self._all.discard(taken)
        try:
            return await self._start()
        except BaseException:
            self._idle.put_nowait(None)
            raise

    async def _start(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.render_child",
            str(self.settings.render_memory_mb),
            str(self.settings.render_output_chars),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=READ_LIMIT,
        )
        child = _Child(process)
        self._all.add(child)
        return child

    def _drop(self, child: _Child) -> None:
        """Kills a child (stuck, or its loop is gone) and frees its slot."""
        child.kill()
        self._all.discard(child)
        if self._loop is asyncio.get_running_loop():
            self._idle.put_nowait(None)


_shared: dict[tuple[int, float, int, int], Renderer] = {}


def renderer(settings: Settings | None = None) -> Renderer:
    """This process's renderer for these limits (one pool whatever the number of
    callers: the API's routes and the worker's activities share it)."""
    settings = settings or Settings()
    limits = (
        settings.render_processes,
        settings.render_seconds,
        settings.render_memory_mb,
        settings.render_output_chars,
    )
    if limits not in _shared:
        _shared[limits] = Renderer(settings)
    return _shared[limits]
