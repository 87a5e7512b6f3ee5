"""What every route needs, as Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from temporalio.client import Client

from shared.settings import Settings


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


def get_client(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_workspace(request: Request) -> str:
    """The caller's workspace. API keys (issue 10) will decide it; until then, the setting."""
    return request.app.state.settings.workspace  # type: ignore[no-any-return]


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
ClientDep = Annotated[Client, Depends(get_client)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkspaceDep = Annotated[str, Depends(get_workspace)]
