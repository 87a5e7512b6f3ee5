"""`nurture keys`: API keys for workspaces."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from shared.settings import Settings
from store.api_keys import create_key, list_keys, revoke_key
from store.db import create_pool

app = typer.Typer(help="API keys: each key belongs to one workspace.", no_args_is_help=True)
console = Console()


async def _create(url: str, workspace: str) -> str:
    pool = await create_pool(url)
    try:
        return await create_key(pool, workspace)
    finally:
        await pool.close()


@app.command("create")
def create(workspace: str = typer.Option(..., "--workspace", help="The workspace name.")) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    try:
        key = asyncio.run(_create(Settings.with_dev_stack().require_database_url(), workspace))
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"API key for workspace [bold]{workspace}[/] (shown once):")
    print(key)


async def _list(url: str, workspace: str | None) -> list[dict[str, object]]:
    pool = await create_pool(url)
    try:
        return [dict(r) for r in await list_keys(pool, workspace)]
    finally:
        await pool.close()


@app.command("list")
def list_(
    workspace: str | None = typer.Option(None, "--workspace", help="Only this workspace's."),
) -> None:
    """List API keys: id, workspace, when created and revoked (never a secret)."""
    keys = asyncio.run(_list(Settings.with_dev_stack().require_database_url(), workspace))
    table = Table("id", "workspace", "created", "revoked")
    for key in keys:
        revoked = key["revoked_at"]
        table.add_row(
            f"nk_{key['id']}_…", str(key["workspace"]), str(key["created_at"]), str(revoked or "")
        )
    console.print(table)


async def _revoke(url: str, key_id: str) -> str | None:
    pool = await create_pool(url)
    try:
        return await revoke_key(pool, key_id)
    finally:
        await pool.close()


@app.command("revoke")
def revoke(key: str = typer.Argument(..., help="The key, or its id (`nk_<id>_…`).")) -> None:
    """Revoke an API key; every API stops accepting it within NURTURE_API_KEY_CACHE_SECONDS."""
    key_id = key.removeprefix("nk_").split("_", 1)[0]
    workspace = asyncio.run(_revoke(Settings.with_dev_stack().require_database_url(), key_id))
    if workspace is None:
        console.print(f"[red]no active key with id {key_id!r}[/]")
        raise typer.Exit(1)
    console.print(f"revoked key nk_{key_id}_… of workspace [bold]{workspace}[/]")
