"""A real headless Chromium (the distribution's package), driven over the DevTools
protocol: navigate, evaluate, screenshot, and everything the page logged or requested
(console errors, uncaught exceptions, every network request's URL)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _launch(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Page:
    def __init__(self, socket: Any, session: str) -> None:
        self.socket = socket
        self.session = session
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[number] = answer
        message = {"id": number, "method": method, "params": params, "sessionId": self.session}
        await self.socket.send(json.dumps(message))
        found = await asyncio.wait_for(answer, 30)
        if "error" in found:
            raise RuntimeError(f"{method}: {found['error']}")
        result: dict[str, Any] = found.get("result", {})
        return result

    def _heard(self, message: dict[str, Any]) -> None:
        if "id" in message and message["id"] in self.waiting:
            self.waiting.pop(message["id"]).set_result(message)
        elif "method" in message:
            self.events.append(message)
            if message["method"] == "Page.loadEventFired":
                self.loaded.set()

    async def goto(self, url: str) -> None:
        self.loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self.loaded.wait(), 30)

    async def evaluate(self, expression: str) -> Any:
        found = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression}: {found['exceptionDetails']}")
        return found["result"].get("value")

    async def submit(self, expression: str) -> None:
        """Runs `expression` (which submits a form) and waits for the next page."""
        self.loaded.clear()
        await self.evaluate(expression)
        await asyncio.wait_for(self.loaded.wait(), 30)

    async def screenshot(self, path: Path) -> None:
        found = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(_write, path, base64.b64decode(found["data"]))

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            params = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif e["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(json.dumps(params.get("args", []))[:300])
            elif (
                e["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error"
            ):
                errors.append(params["entry"].get("text", "")[:300])
        return errors

    def requested(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]


@contextlib.asynccontextmanager
async def headless(width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    """A Chromium of its own (a fresh profile), one page in it."""
    binary = chromium()
    assert binary is not None, "chromium is not installed (test.sh installs it)"
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")
    proc = await asyncio.to_thread(
        _launch,
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--remote-debugging-port=0", f"--user-data-dir={profile}",
         f"--window-size={width},{height}", "about:blank"],
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = None
        for _ in range(200):
            line = (await asyncio.to_thread(proc.stderr.readline)).decode(errors="replace")
            if found := re.search(r"DevTools listening on (ws://\S+)", line):
                url = found.group(1)
                break
        assert url is not None, "chromium did not start its DevTools endpoint"
        async with websockets.connect(url, max_size=64 * 1024 * 1024) as socket:
            ids = itertools.count(10_000)

            async def browser(method: str, **params: Any) -> dict[str, Any]:
                number = next(ids)
                await socket.send(json.dumps({"id": number, "method": method, "params": params}))
                while True:
                    message = json.loads(await socket.recv())
                    if message.get("id") == number:
                        result: dict[str, Any] = message.get("result", {})
                        return result

            target = (await browser("Target.createTarget", url="about:blank"))["targetId"]
            session = (await browser("Target.attachToTarget", targetId=target, flatten=True))[
                "sessionId"
            ]
            page = Page(socket, session)

            async def listen() -> None:
                async for raw in socket:
                    message = json.loads(raw)
                    if message.get("sessionId") == session:
                        page._heard(message)

            listener = asyncio.create_task(listen())
            for domain in ("Page", "Runtime", "Log", "Network"):
                await page.send(f"{domain}.enable")
            try:
                yield page
            finally:
                listener.cancel()
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
