"""What every route needs, as Annotated dependencies. All are `async def`: FastAPI runs a
plain `def` dependency in its thread pool, a hop per dependency per request."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import ApiError
from services.relay import Relay
from shared.rates import Buckets
from shared.settings import Settings
from store.api_keys import workspace_for


async def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


async def get_client(request: Request) -> Client:
    return request.app.state.temporal


async def get_relay(request: Request) -> Relay | None:
    """This process's relay, which takes the events the API stores (None: none runs)."""
    return getattr(request.app.state, "relay", None)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


bearer = HTTPBearer(auto_error=False, description="An API key: `nurture keys create`.")


async def get_workspace(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The caller's workspace, decided by its API key (`Authorization: Bearer nk_...`)."""
    if credentials is None:
        raise ApiError(
            401,
            "missing_api_key",
            "Send an API key as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    workspace = await key_workspace(request.app, credentials.credentials)
    if workspace is None:
        raise ApiError(
            401,
            "invalid_api_key",
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return workspace


async def key_workspace(app: Any, key: str) -> str | None:
    """The workspace of an API key (None: unknown or revoked). A key is looked up again once
    its cached answer is older than the cache's lifetime, so a revoked key stops working
    within it (the web view's cookie holds a key too)."""
    cache: dict[str, tuple[str, float]] = app.state.key_cache
    now = time.monotonic()
    cached = cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    workspace = await workspace_for(app.state.pool, key)
    if workspace is None:
        cache.pop(key, None)
        return None
    if len(cache) > 10_000:
        cache.clear()
    cache[key] = (workspace, now + app.state.settings.api_key_cache_seconds)
    return workspace


class Quota:
    """The caller's workspace's ingest allowance (`shared.rates`)."""

    def __init__(self, buckets: Buckets, workspace: str) -> None:
        self.buckets = buckets
        self.workspace = workspace

    def charge(self, items: int) -> None:
        """Counts `items` against the workspace's rate, or refuses the request with 429."""
        wait = self.buckets.take(self.workspace, items, time.monotonic())
        if wait > 0:
            seconds = math.ceil(wait)
            raise ApiError(
                429,
                "rate_limited",
                f"The workspace sends faster than its ingest rate; retry in {seconds} s.",
                retry_after=seconds,
                headers={"Retry-After": str(seconds)},
            )


async def get_quota(request: Request, workspace: Annotated[str, Depends(get_workspace)]) -> Quota:
    return Quota(request.app.state.ingest_buckets, workspace)


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
QuotaDep = Annotated[Quota, Depends(get_quota)]
ClientDep = Annotated[Client, Depends(get_client)]
RelayDep = Annotated[Relay | None, Depends(get_relay)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkspaceDep = Annotated[str, Depends(get_workspace)]
