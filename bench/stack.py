"""The stack a benchmark run measures: like `nurture dev` (Temporal dev server, embedded
Postgres, the worker and the API as their own processes), but on free ports and in a
fresh temporary directory, so it never clashes with a running
`nurture dev` and always starts empty. Next to it runs the bare-Temporal baseline worker
(`bench.baseline`), a process of its own on the same server with the same worker settings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
from temporalio.client import Client

from bench.api_client import Api
from cli.stack import EmbeddedPostgres, free_port, start_temporal, stop_process, wait_for_port
from services.temporal import connect
from shared.settings import Settings
from store.api_keys import create_key
from store.db import create_pool, migrate

DATABASE = "nurture"
NURTURE_QUEUE = "nurture-bench"
BASELINE_QUEUE = "bare-bench"


@dataclass
class Stack:
    """Everything a benchmark needs: clients for Temporal, Postgres and the API, and the
    worker processes (their pids, for memory)."""

    root: Path
    temporal: Client
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    api: Api
    """The hot paths' client (`bench.api_client`); `http` for everything else."""
    api_url: str
    temporal_address: str
    database_url: str
    worker: subprocess.Popen[bytes]
    baseline_worker: subprocess.Popen[bytes]
    processes: dict[str, subprocess.Popen[bytes] | None] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each part of the stack, with its child processes
        (Postgres: all its backends, including exited ones, as counted by the postmaster;
        the worker and the API: their render processes; this process: the benchmark's own
        client)."""
        used: dict[str, float] = {}
        parts = {**self.processes, "bench client": os.getpid()}
        for name, proc in parts.items():
            if proc is None:
                continue
            pid = proc if isinstance(proc, int) else proc.pid
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            used[name] = times.user + times.system
            if name == "postgres":
                used[name] += times.children_user + times.children_system
            if name == "bench client":
                continue  # its children are the stack's own processes, counted apart
            for child in psutil.Process(pid).children(recursive=True):
                try:
                    child_times = child.cpu_times()
                except psutil.Error:
                    continue
                used[name] += child_times.user + child_times.system
        return used

    def new_contacts(self, count: int, prefix: str = "c") -> list[str]:
        tag = uuid.uuid4().hex[:6]
        return [f"{prefix}-{tag}-{i:06d}" for i in range(count)]


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def _prepare_database(pg: EmbeddedPostgres) -> str:
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await conn.close()
    url = pg.url_for(DATABASE)
    await migrate(url)
    return url


@asynccontextmanager
async def running_stack(
    keep: bool = False, temporal_file: bool = False, mail: bool = False
) -> AsyncIterator[Stack]:
    """Starts the whole stack in a temporary directory, yields it, stops every process it
    started and removes the directory (unless `keep`, or when something failed).

    With `mail`, email goes out for real as under `nurture dev`: the dev SMTP sink runs as
    its own process, and the API's sender hands every queued email to it (without, no
    SMTP host is configured and messages are only kept in the outbox).

    The Temporal dev server keeps its state in memory unless `temporal_file` (then in a
    SQLite file, as `nurture dev` does): on a small machine the file's synchronous writes
    bound nurture and the baseline alike and hide what nurture itself costs."""
    root = Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    logs = root / "logs"
    temporal_port, api_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    pg = EmbeddedPostgres(root / "postgres", free_port())
    failed = True
    try:
        procs.append(
            await asyncio.to_thread(
                start_temporal,
                root / "temporal.db" if temporal_file else None,
                temporal_port,
                None,
                logs / "temporal.log",
            )
        )
        await asyncio.to_thread(pg.start, logs / "postgres.log")
        database_url = await _prepare_database(pg)
        address = f"127.0.0.1:{temporal_port}"
        env = {
            **os.environ,
            "NURTURE_TEMPORAL_ADDRESS": address,
            "NURTURE_DATABASE_URL": database_url,
            "NURTURE_TASK_QUEUE": NURTURE_QUEUE,
            "NURTURE_API_HOST": "127.0.0.1",
            "NURTURE_API_PORT": str(api_port),
        }
        if mail:
            env.update(
                NURTURE_SMTP_HOST="127.0.0.1",
                NURTURE_SMTP_PORT=str(free_port()),
                NURTURE_SMTP_SECURITY="none",
                NURTURE_DEV_MAILBOX="true",
            )
            env["NURTURE_DEV_SMTP_PORT"] = env["NURTURE_SMTP_PORT"]
        # Bytecode as installed code has it (pip compiles it): without .pyc files the
        # workflow sandbox compiles the workflow module's source for every new workflow.
        for name in (
            "NURTURE_TEMPORAL_API_KEY",
            "NURTURE_TEMPORAL_TLS_CERT",
            "PYTHONDONTWRITEBYTECODE",
        ):
            env.pop(name, None)
        commands = {
            "worker": [sys.executable, "-m", "cli.main", "worker"],
            "api": [sys.executable, "-m", "cli.main", "api"],
            "baseline-worker": [sys.executable, "-m", "bench.baseline", address, BASELINE_QUEUE],
        }
        if mail:
            commands["mail-sink"] = [sys.executable, "-m", "cli.main", "mail-sink"]
        spawned = {
            name: _spawn(command, env, logs / f"{name}.log") for name, command in commands.items()
        }
        worker, api, baseline = spawned["worker"], spawned["api"], spawned["baseline-worker"]
        procs += spawned.values()
        await asyncio.to_thread(wait_for_port, "127.0.0.1", api_port, 60, api)
        # no ingest limit: the bench measures capacity (the limit is policy, and tested)
        settings = Settings(temporal_address=address, task_queue=NURTURE_QUEUE, ingest_rate=0)
        temporal = await connect(settings)
        pool = await create_pool(database_url, max_size=20)
        key = await create_key(pool, "default")
        api_url = f"http://127.0.0.1:{api_port}"
        async with (
            httpx.AsyncClient(
                base_url=api_url,
                timeout=120,
                headers={"Authorization": f"Bearer {key}"},
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            ) as http,
            Api.open(api_url, key) as api_client,
        ):
            stack = Stack(
                root=root,
                temporal=temporal,
                pool=pool,
                http=http,
                api=api_client,
                api_url=api_url,
                temporal_address=address,
                database_url=database_url,
                worker=worker,
                baseline_worker=baseline,
                processes={"temporal": procs[0], **spawned, "postgres": pg.proc},
            )
            await _wait_for_workers(stack)
            supervising = asyncio.create_task(_supervise(stack, commands, env, procs))
            try:
                yield stack
            finally:
                supervising.cancel()
                await asyncio.gather(supervising, return_exceptions=True)
                await pool.close()
        failed = False
    finally:
        for proc in reversed(procs):
            await asyncio.to_thread(stop_process, proc, 20)
        await asyncio.to_thread(pg.stop)
        if failed or keep:
            print(f"bench: logs and data kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _supervise(
    stack: Stack,
    commands: dict[str, list[str]],
    env: dict[str, str],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    """Like `nurture dev`: a worker or API that exits (the build machine is shared, and
    other suites' fault tests stop processes) is started again, and the report says so."""
    while True:
        await asyncio.sleep(0.5)
        for name, command in commands.items():
            proc = stack.processes[name]
            if proc is None or proc.poll() is None:
                continue
            print(f"bench: {name} exited ({proc.returncode}); restarting it", file=sys.stderr)
            stack.restarts[name] = stack.restarts.get(name, 0) + 1
            fresh = _spawn(command, env, stack.logs / f"{name}.log")
            procs.append(fresh)
            stack.processes[name] = fresh
            if name == "worker":
                stack.worker = fresh
            elif name == "baseline-worker":
                stack.baseline_worker = fresh


async def _wait_for_workers(stack: Stack, seconds: float = 60) -> None:
    """Both workers poll their task queues before any figure is taken."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + seconds
    for queue in (NURTURE_QUEUE, BASELINE_QUEUE):
        while True:
            for name, proc in stack.processes.items():
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {stack.logs}")
            described = await stack.temporal.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=stack.temporal.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            if described.pollers:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker polled {queue!r} within {seconds}s")
            await asyncio.sleep(0.2)
