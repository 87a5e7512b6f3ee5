"""`nurture dev`: start and supervise the embedded stack; Ctrl-C stops every child."""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import asyncpg
from rich.console import Console

from cli.stack import EmbeddedPostgres, port_open, start_temporal, stop_process
from shared.settings import DEV_ENV, Settings
from store.api_keys import create_key, workspace_for
from store.db import create_database, migrate

LOOPBACK = "127.0.0.0/8,::1,localhost"
console = Console()
DEV_POSTGRES_PORT = 55432
DEV_DATABASE = "nurture"
TEMPORAL_PORT = 7233
UI_PORT = 8233


class AlreadyRunning(Exception):
    pass


def _lock(data_dir: Path) -> IO[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise AlreadyRunning(handle.read().strip() or "?") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


async def _prepare_database(pg: EmbeddedPostgres) -> str:
    await create_database(pg.url, DEV_DATABASE)
    url = pg.url_for(DEV_DATABASE)
    await migrate(url)
    return url


async def _dev_key(url: str, data_dir: Path) -> str:
    """The dev workspace's API key, made once and kept under .nurture/ to print each start."""
    path = data_dir / "dev-api-key"
    conn = await asyncpg.connect(url)
    try:
        if path.exists() and await workspace_for(conn, path.read_text().strip()):
            return path.read_text().strip()
        key = await create_key(conn, "default")
    finally:
        await conn.close()
    path.write_text(key)
    path.chmod(0o600)
    return key


def _tracking_secret(data_dir: Path) -> str:
    """Made once and kept under .nurture/, so links in emails sent earlier keep working."""
    path = data_dir / "tracking-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _busy_ports(settings: Settings) -> list[int]:
    ports = [settings.api_port]
    if not settings.smtp_host:
        ports.append(settings.dev_smtp_port)
    if not settings.temporal_address:
        ports += [TEMPORAL_PORT, UI_PORT]
    if not settings.database_url:
        ports.append(DEV_POSTGRES_PORT)
    return [p for p in ports if port_open("127.0.0.1", p)]


def run_dev(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    try:
        lock = _lock(data_dir)
    except AlreadyRunning as exc:
        console.print(
            f"[red]nurture dev is already running[/] (pid {exc}) with data in {data_dir}. "
            "Stop it with Ctrl-C in its terminal first."
        )
        return 1
    busy = _busy_ports(settings)
    if busy:
        console.print(
            f"[red]cannot start:[/] port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use "
            "by another program."
        )
        return 1

    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    logs = data_dir / "logs"
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    pg: EmbeddedPostgres | None = None
    try:
        env = dict(os.environ)
        if not settings.temporal_address:
            console.print("starting Temporal dev server …")
            children.append(
                (
                    "temporal",
                    start_temporal(
                        data_dir / "temporal.db", TEMPORAL_PORT, UI_PORT, logs / "temporal.log"
                    ),
                )
            )
            env["NURTURE_TEMPORAL_ADDRESS"] = f"127.0.0.1:{TEMPORAL_PORT}"
        if not settings.database_url:
            console.print("starting Postgres …")
            pg = EmbeddedPostgres(data_dir / "postgres", DEV_POSTGRES_PORT)
            pg.start(logs / "postgres.log")
            assert pg.proc is not None
            children.append(("postgres", pg.proc))
            env["NURTURE_DATABASE_URL"] = asyncio.run(_prepare_database(pg))
        else:
            asyncio.run(migrate(settings.database_url))
        dev_key = asyncio.run(_dev_key(env["NURTURE_DATABASE_URL"], data_dir))

        supervised = {
            "worker": [sys.executable, "-m", "cli.main", "worker"],
            "api": [sys.executable, "-m", "cli.main", "api"],
        }
        if not settings.smtp_host:
            # email goes to the local SMTP sink; GET /v1/messages shows what it received
            supervised["mail-sink"] = [sys.executable, "-m", "cli.main", "mail-sink"]
            env["NURTURE_SMTP_HOST"] = "127.0.0.1"
            env["NURTURE_SMTP_PORT"] = str(settings.dev_smtp_port)
            env["NURTURE_SMTP_SECURITY"] = "none"
            env["NURTURE_DEV_MAILBOX"] = "true"
        # webhooks of a local try-out are received on this machine: allow loopback only
        env.setdefault("NURTURE_WEBHOOK_ALLOW", LOOPBACK)
        # emails are tracked (opens, clicks, one-click unsubscribe) through this API
        if not settings.tracking_secret:
            env["NURTURE_TRACKING_SECRET"] = _tracking_secret(data_dir)
        env.setdefault("NURTURE_PUBLIC_URL", f"http://127.0.0.1:{settings.api_port}")
        procs = {name: _spawn(cmd, env, logs / f"{name}.log") for name, cmd in supervised.items()}
        _write_dev_env(data_dir, env)
        _print_urls(settings, data_dir, dev_key)
        restarts = dict.fromkeys(supervised, 0)
        while not stopping:
            time.sleep(0.5)
            for label, proc in children:
                if proc.poll() is not None and not stopping:
                    console.print(f"[red]{label} exited ({proc.returncode}); see {logs}[/]")
                    stopping = True
            for name, proc in procs.items():
                if proc.poll() is not None and not stopping:
                    restarts[name] += 1
                    console.print(
                        f"[yellow]{name} exited ({proc.returncode}); restarting"
                        f" (see {logs}/{name}.log)[/]"
                    )
                    time.sleep(min(10, restarts[name]))
                    procs[name] = _spawn(supervised[name], env, logs / f"{name}.log")
        console.print("stopping …")
        for proc in procs.values():
            stop_process(proc, grace=25)
        return 0
    finally:
        (data_dir / DEV_ENV).unlink(missing_ok=True)
        for _, proc in reversed(children):
            stop_process(proc, grace=20)
        lock.close()


def _write_dev_env(data_dir: Path, env: dict[str, str]) -> None:
    """Where this stack's parts listen, for `nurture keys`, `journeys` and `replay` run
    in another terminal (`Settings.with_dev_stack`); removed when the stack stops."""
    names = ("NURTURE_TEMPORAL_ADDRESS", "NURTURE_DATABASE_URL", "NURTURE_API_PORT")
    lines = [f"{name}={env[name]}" for name in names if env.get(name)]
    (data_dir / DEV_ENV).write_text("\n".join(lines) + "\n")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _print_urls(settings: Settings, data_dir: Path, dev_key: str) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    console.print("[green]nurture is running[/]")
    if not settings.temporal_address:
        console.print(f"  Temporal UI   http://127.0.0.1:{UI_PORT}")
        console.print(f"  Temporal gRPC 127.0.0.1:{TEMPORAL_PORT}")
    console.print(f"  API           {api}   (docs {api}/docs, health {api}/healthz)")
    console.print(f"  web view      {api}/ui   (log in with the dev API key below)")
    if not settings.database_url:
        console.print(
            f"  Postgres      postgresql://postgres@127.0.0.1:{DEV_POSTGRES_PORT}/{DEV_DATABASE}"
        )
    if not settings.smtp_host:
        console.print(
            f"  SMTP sink     127.0.0.1:{settings.dev_smtp_port}   (emails at {api}/v1/messages)"
        )
    console.print(f"  data + logs   {data_dir}")
    console.print(f"  dev API key   {dev_key}   (Authorization: Bearer …, workspace 'default')")
    console.print("Press Ctrl-C to stop.")
