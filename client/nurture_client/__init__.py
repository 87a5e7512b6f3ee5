"""A Python client for the nurture API (docs/client.md): every operation as a typed
method, sync (`Nurture`) and async (`AsyncNurture`); errors as `NurtureError` with the
API's `reason`; `pages(...)` follows cursors; `simulate(...)` returns a `Simulation`.
Depends on httpx only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from nurture_client._operations import API_VERSION, OPERATIONS, AsyncOperations, Operations
from nurture_client.journeys import branch, go_to, journey, path, send, split, stage, wait

__all__ = [
    "API_VERSION",
    "OPERATIONS",
    "AsyncNurture",
    "Nurture",
    "NurtureError",
    "SimulatedStep",
    "Simulation",
    "branch",
    "go_to",
    "journey",
    "path",
    "send",
    "split",
    "stage",
    "wait",
]


class NurtureError(Exception):
    """The API refused: `status`, the machine-readable `reason`, the sentence, the body."""

    def __init__(self, status: int, reason: str, message: str, body: Any) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


@dataclass(frozen=True)
class SimulatedStep:
    offset: str
    stage: str | None
    action: str
    result: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Simulation:
    """What `simulate` found: the outcome, whether the goal would count, every step at its
    simulated offset, the messages that would have gone out, the decisions taken."""

    outcome: str | None
    finished: bool
    converted: bool
    stage: str | None
    steps: list[SimulatedStep]
    messages: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    raw: dict[str, Any]

    @classmethod
    def of(cls, answer: Any) -> Simulation:
        body: dict[str, Any] = dict(answer)
        steps = [
            SimulatedStep(s["offset"], s["stage"], s["action"], s["result"], s.get("detail", {}))
            for s in body["steps"]
        ]
        return cls(
            outcome=body["outcome"], finished=body["finished"], converted=body["converted"],
            stage=body["stage"], steps=steps, messages=body["messages"],
            decisions=body["decisions"], raw=body,
        )  # fmt: skip

    @property
    def path(self) -> list[tuple[str | None, str]]:
        """(stage, action) of every step."""
        return [(s.stage, s.action) for s in self.steps]


def _request(path: str, where: dict[str, Any], query: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    url = path.format(**{k: quote(str(v), safe="") for k, v in where.items()})
    params = {
        k: (str(v).lower() if isinstance(v, bool) else v) for k, v in query.items() if v is not None
    }
    return url, params


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"reason": "http_error", "message": response.text[:200]}
        reason = body.get("reason", "http_error") if isinstance(body, dict) else "http_error"
        message = body.get("message", "") if isinstance(body, dict) else ""
        raise NurtureError(response.status_code, reason, message, body)
    if not response.content:
        return None
    return response.json()


def _simulation_body(
    journey: str | dict[str, Any],
    contact: dict[str, Any] | None,
    timeline: list[dict[str, Any]] | None,
    force: dict[str, str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"timeline": timeline or [], "force": force or {}}
    if contact is not None:
        body["contact"] = contact
    if isinstance(journey, dict):
        body["journey"] = journey
    return body


class Nurture(Operations):
    """`Nurture("http://127.0.0.1:8000", "nk_...")`; a context manager."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 30, **options: Any) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
            **options,
        )  # fmt: skip

    def _call(self, method: str, path: str, where: dict[str, Any], query: dict[str, Any],
              body: Any, headers: dict[str, Any]) -> Any:  # fmt: skip
        url, params = _request(path, where, query)
        sent = {k: v for k, v in headers.items() if v is not None}
        return _answer(self._http.request(method, url, params=params, json=body, headers=sent))

    def pages(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Every item of a paged list: `for j in client.pages(client.list_journeys): ...`."""
        cursor = None
        while True:
            page = operation(*args, **kwargs, **({"cursor": cursor} if cursor else {}))
            yield from page["items"]
            if not (cursor := page.get("next_cursor")):
                return

    def simulate(
        self,
        journey: str | dict[str, Any],
        contact: dict[str, Any] | None = None,
        timeline: list[dict[str, Any]] | None = None,
        force: dict[str, str] | None = None,
    ) -> Simulation:
        """A saved journey (its id) or a definition, simulated (docs/testing.md)."""
        body = _simulation_body(journey, contact, timeline, force)
        if isinstance(journey, dict):
            return Simulation.of(self.simulate_definition(body))
        return Simulation.of(self.simulate_journey(journey, body))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Nurture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncNurture(AsyncOperations):
    """The same, with `await`; `async with AsyncNurture(url, key) as client: ...`."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 30, **options: Any) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
            **options,
        )  # fmt: skip

    async def _call(self, method: str, path: str, where: dict[str, Any],
                    query: dict[str, Any], body: Any, headers: dict[str, Any]) -> Any:  # fmt: skip
        url, params = _request(path, where, query)
        sent = {k: v for k, v in headers.items() if v is not None}
        answer = await self._http.request(method, url, params=params, json=body, headers=sent)
        return _answer(answer)

    async def pages(
        self, operation: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page = await operation(*args, **kwargs, **({"cursor": cursor} if cursor else {}))
            for item in page["items"]:
                yield item
            if not (cursor := page.get("next_cursor")):
                return

    async def simulate(
        self,
        journey: str | dict[str, Any],
        contact: dict[str, Any] | None = None,
        timeline: list[dict[str, Any]] | None = None,
        force: dict[str, str] | None = None,
    ) -> Simulation:
        body = _simulation_body(journey, contact, timeline, force)
        if isinstance(journey, dict):
            return Simulation.of(await self.simulate_definition(body))
        return Simulation.of(await self.simulate_journey(journey, body))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncNurture:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
