"""`nurture keys`: API keys for workspaces."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from shared.settings import Settings
from store.api_keys import create_key
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
