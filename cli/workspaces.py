"""`nurture workspaces`: what the operator allows a workspace."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from shared.channels import one_address
from shared.settings import Settings
from store import workspaces as workspaces_store
from store.db import create_pool

app = typer.Typer(help="What the operator allows a workspace.", no_args_is_help=True)
console = Console()


async def _allow(url: str, workspace: str, domain: str) -> list[str]:
    pool = await create_pool(url)
    try:
        await workspaces_store.allow_sender_domain(pool, workspace, domain)
        return await workspaces_store.sender_domains(pool, workspace)
    finally:
        await pool.close()


@app.command("allow-sender-domain")
def allow_sender_domain(
    workspace: str = typer.Argument(..., help="The workspace."),
    domain: str = typer.Argument(..., help="A domain it may send email from (email_from)."),
) -> None:
    """Let a workspace send email as addresses at `domain` (its `email_from` setting)."""
    if not one_address(f"postmaster@{domain}"):
        console.print(f"[red]{domain!r} is not a domain[/]")
        raise typer.Exit(2)
    allowed = asyncio.run(
        _allow(Settings.with_dev_stack().require_database_url(), workspace, domain)
    )
    console.print(f"[bold]{workspace}[/] may send from: {', '.join(allowed)}")
