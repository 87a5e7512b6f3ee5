"""The `nurture` command."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from cli.journeys import app as journeys_app
from cli.keys import app as keys_app
from cli.simulate import simulate
from cli.workspaces import app as workspaces_app
from shared.settings import Settings

app = typer.Typer(help="nurture: durable customer journeys on Temporal.", no_args_is_help=True)
console = Console()
app.add_typer(keys_app, name="keys")
app.add_typer(journeys_app, name="journeys")
app.add_typer(workspaces_app, name="workspaces")
app.command("simulate")(simulate)


@app.command()
def dev() -> None:
    """Run the whole stack locally: Temporal + UI, Postgres, worker and API."""
    from cli.dev import run_dev

    raise typer.Exit(run_dev(Settings()))


def _exit_now() -> NoReturn:
    """Ends a long-running process once it has shut down cleanly, without the interpreter's
    finalization: the Temporal SDK's native threads may still reach for the GIL while it
    runs, which can abort a process that had finished its work (a CPython limit, see
    DECISIONS, "Process exits")."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Runs a long-lived process on uvloop where it is installed (not on Windows): the
    same asyncio, less CPU per callback and per socket read than the standard loop
    (docs/performance.md). uvicorn picks it for the API by itself."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


@app.command()
def worker() -> None:
    """Run a worker against the configured Temporal and Postgres."""
    from workers.worker import run_worker

    run_loop(run_worker(Settings()))
    _exit_now()


@app.command()
def sender() -> None:
    """Hand queued messages to SMTP and the webhook, in a process of its own (set
    NURTURE_SEND_FROM_API=false on the API when you run this instead)."""

    from services.sender import serve_sender

    logging.basicConfig(level=logging.INFO)
    run_loop(serve_sender(Settings()))
    _exit_now()


@app.command()
def api() -> None:
    """Serve the HTTP API against the configured Temporal and Postgres."""
    import uvicorn

    from api.main import create_app
    from api.server import Server

    settings = Settings()
    settings.require_database_url()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        access_log=settings.api_access_log,
        timeout_graceful_shutdown=20,
    )
    Server(config).run()
    _exit_now()


@app.command("mail-sink")
def mail_sink() -> None:
    """Run the dev SMTP sink on 127.0.0.1:NURTURE_DEV_SMTP_PORT (`nurture dev` starts it)."""

    from cli.mail_sink import run_sink

    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_sink(Settings()))


@app.command()
def bench(
    size: int = typer.Option(0, help="Enrollments per throughput run (0: the default size)."),
    memory: int = typer.Option(0, help="Enrollments waiting on timers (0: 6 x size)."),
    report: Path = typer.Option(Path(".nurture/bench/report.json"), help="JSON report path."),
    markdown: Path | None = typer.Option(None, help="Also write the table as Markdown here."),
    keep: bool = typer.Option(False, help="Keep the benchmark stack's data and logs."),
    temporal_file: bool = typer.Option(
        False, help="Keep Temporal's state in a SQLite file, as `nurture dev` does."
    ),
) -> None:
    """Benchmark nurture against bare Temporal on a fresh stack of its own (free ports)."""
    from bench.__main__ import main as run_bench

    args = ["--report", str(report)] + (["--size", str(size)] if size else [])
    args += ["--markdown", str(markdown)] if markdown else []
    args += ["--keep"] if keep else []
    args += ["--memory", str(memory)] if memory else []
    raise typer.Exit(run_bench([*args, *(["--temporal-file"] if temporal_file else [])]))


@app.command()
def migrate() -> None:
    """Apply the database migrations to NURTURE_DATABASE_URL."""
    from store.db import migrate as run_migrations

    applied = asyncio.run(run_migrations(Settings().require_database_url()))
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@app.command()
def replay(
    files: list[Path] | None = typer.Argument(
        None, help="History JSON files (or directories of them), e.g. tests/histories."
    ),
    query: str | None = typer.Option(
        None, "--query", help="A visibility query, e.g. 'JourneyId = \"jrn_123\"'."
    ),
) -> None:
    """Replay enrollment histories against the current workflow code; exit 1 on
    nondeterminism (an unguarded workflow change), naming the workflow and the event."""
    from cli.replay import run_replay

    settings = Settings.with_dev_stack()
    raise typer.Exit(asyncio.run(run_replay(files or [], query, settings, console)))


if __name__ == "__main__":
    app()
