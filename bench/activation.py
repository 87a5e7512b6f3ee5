"""Activation at scale: one journey activated over N eligible contacts on a fresh
stack of its own (`bench.stack`: Temporal dev server, Postgres, the worker and the API as
processes), the worker killed (SIGKILL) part-way and started again, and each contact
checked to be enrolled exactly once. Next to it, the raw Temporal start rate measured in
the same run: bare workflows started straight from a client, as many at once as the
activation has in flight.

Figures: the activation's rate over its uninterrupted stretch (eligible contacts handled
per second, before the kill) against the raw start rate, and its rate start to end
including the restart (a dead worker's page is retried after the heartbeat timeout).
The activation's own rate cap (`activation_rate`, default 200/s) is lifted here so the
figure is what the stack can do. Run: `python -m bench.activation [SIZE] [--no-restart]
[--in-memory | --temporal-file]`.

The Temporal dev server keeps its state in memory up to `IN_MEMORY_MAX` contacts and in a
SQLite file above: in memory it holds about 250 KB per open workflow (22 GB at 90,000
waiting enrollments exhausted the 24 GB build machine).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.baseline import BARE_WAITER
from bench.stack import BASELINE_QUEUE, NURTURE_QUEUE, Stack, running_stack
from cli.stack import stop_process

LIST = "bench-activation"
CONCURRENCY = 8
"""Enrollment starts the activation has in flight (its default), and bare starts likewise."""
HEARTBEAT_SECONDS = 5.0
RATE_CAP = 1_000_000.0
BASELINE_MAX = 5000
"""Bare starts measured for the raw rate (enough for a steady figure)."""
KILL_AT = 0.4
"""The worker is killed once this share of the contacts has been handled."""
POLL_SECONDS = 0.5
IN_MEMORY_MAX = 25_000

FILL = [
    """
    INSERT INTO contacts (workspace, id)
    SELECT 'default', 'act-' || lpad(i::text, 7, '0') FROM generate_series(1, $1) AS i
    """,
    """
    INSERT INTO list_members (workspace, list, contact_id)
    SELECT 'default', $2, 'act-' || lpad(i::text, 7, '0') FROM generate_series(1, $1) AS i
    """,
]


def definition() -> dict[str, Any]:
    """Enrollments wait a day (they stay open: the benchmark measures the starts)."""
    tag = uuid.uuid4().hex[:8]
    return {
        "name": f"bench activation {tag}",
        "owner": f"bench-{tag}@nurture.test",
        "stage_property": f"bench_stage_{tag}",
        "eligible_lists": [LIST],
        "start_stage": "main",
        "enroll_empty_stage": True,
        "stages": [
            {
                "key": "main",
                "value": "main",
                "actions": [
                    {"type": "wait", "duration": "P1D"},
                    {"type": "go_to", "target": "success"},
                ],
            }
        ],
        "ends": {"success": {"value": "done"}, "failure": [{"value": "lost"}]},
    }


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """The stack's processes read their settings from the environment they inherit."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def raw_start_rate(stack: Stack, count: int) -> float:
    """Bare workflows started per second from a client, `CONCURRENCY` at a time."""
    tag = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await stack.temporal.start_workflow(
                BARE_WAITER, 86_400.0, id=f"bare-start-{tag}-{i}", task_queue=BASELINE_QUEUE
            )

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.monotonic() - t0)


def _restart_worker(stack: Stack) -> subprocess.Popen[bytes]:
    """SIGKILLs the stack's worker (no graceful shutdown) and starts a new one."""
    old = stack.processes["worker"]
    assert old is not None
    os.killpg(old.pid, signal.SIGKILL)
    old.wait()
    env = {
        **os.environ,
        "NURTURE_TEMPORAL_ADDRESS": stack.temporal_address,
        "NURTURE_DATABASE_URL": stack.database_url,
        "NURTURE_TASK_QUEUE": NURTURE_QUEUE,
    }
    with (stack.logs / "worker-restarted.log").open("ab") as out:
        new = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.processes["worker"] = new
    stack.worker = new
    return new


async def _activate(stack: Stack, size: int, restart: bool) -> dict[str, Any]:
    created = await stack.http.post("/v1/journeys", json=definition())
    created.raise_for_status()
    journey_id = created.json()["id"]
    activated = await stack.http.post(
        f"/v1/journeys/{journey_id}/activate", params={"force": "true"}
    )
    activated.raise_for_status()
    t0 = time.monotonic()
    cpu_before = stack.cpu_seconds()
    killed_worker_cpu = 0.0  # what the worker used before it was killed (psutil loses it)
    first: tuple[float, int] | None = None
    kill: tuple[float, int] | None = None
    last_print = 0.0
    while True:
        await asyncio.sleep(POLL_SECONDS)
        response = await stack.http.get(f"/v1/journeys/{journey_id}/activation")
        response.raise_for_status()
        progress = response.json()
        now = time.monotonic()
        if first is None and progress["processed"] > 0:
            first = (now, progress["processed"])
        if now - last_print > 5:
            print(
                f"bench: activation {progress['processed']}/{progress['eligible']} handled, "
                f"{progress['started']} started ({now - t0:.0f}s)",
                flush=True,
            )
            last_print = now
        if progress["status"] != "running":
            break
        if restart and kill is None and progress["processed"] >= KILL_AT * size:
            kill = (now, progress["processed"])
            killed_worker_cpu = stack.cpu_seconds().get("worker", 0.0) - cpu_before["worker"]
            cpu_before["worker"] = 0.0  # the new worker starts from nothing
            _restart_worker(stack)
            print(f"bench: worker killed at {kill[1]} handled and restarted", flush=True)
    elapsed = time.monotonic() - t0
    cpu_after = stack.cpu_seconds()
    cpu_after["worker"] = cpu_after.get("worker", 0.0) + killed_worker_cpu
    started = max(1, progress["started"])
    cpu_ms: dict[str, float] = {
        part: round((cpu_after[part] - cpu_before.get(part, 0.0)) * 1000 / started, 2)
        for part in ("temporal", "worker", "api", "postgres")
        if part in cpu_after
    }
    cpu_ms["total"] = round(sum(cpu_ms.values()), 2)
    steady_end = kill or (now, progress["processed"])
    steady = None
    if first is not None and steady_end[0] > first[0]:
        steady = (steady_end[1] - first[1]) / (steady_end[0] - first[0])
    return {
        "journey_id": journey_id,
        "progress": progress,
        "elapsed": elapsed,
        "steady_rate": steady,
        "killed_at": kill[1] if kill else None,
        "cpu_ms_per_enrollment": cpu_ms,
    }


async def _check_once(stack: Stack, journey_id: str, size: int) -> dict[str, int]:
    """Enrollment rows, distinct contacts and enrollment workflows of the journey."""
    rows = await stack.pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT contact_id) AS d FROM enrollments"
        " WHERE journey_id = $1",
        journey_id,
    )
    assert rows is not None
    query = f"JourneyId = '{journey_id}' AND WorkflowType = 'EnrollmentWorkflow'"
    workflows = 0
    for _ in range(120):  # visibility is eventually consistent
        workflows = (await stack.temporal.count_workflows(query)).count
        if workflows >= size:
            break
        await asyncio.sleep(1)
    return {"rows": rows["n"], "contacts": rows["d"], "workflows": workflows}


async def run(size: int, restart: bool = True, temporal_file: bool | None = None) -> dict[str, Any]:
    """Activates a journey over `size` eligible contacts (killing the worker part-way when
    `restart`); returns the figures and the exactly-once check. Temporal keeps its state
    in a file when `temporal_file` (by default: above `IN_MEMORY_MAX` contacts)."""
    if temporal_file is None:
        temporal_file = size > IN_MEMORY_MAX
    settings = {
        "NURTURE_ACTIVATION_RATE": str(RATE_CAP),
        "NURTURE_ACTIVATION_CONCURRENCY": str(CONCURRENCY),
        "NURTURE_ACTIVATION_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    }
    with _environment(**settings):
        async with running_stack(temporal_file=temporal_file) as stack:
            first_worker = stack.worker
            try:
                for statement in FILL:
                    args = [LIST] if "$2" in statement else []
                    await stack.pool.execute(statement, size, *args)
                raw = await raw_start_rate(stack, min(size, BASELINE_MAX))
                found = await _activate(stack, size, restart)
                once = await _check_once(stack, found["journey_id"], size)
            finally:
                # the stack stops the processes it started; the restarted worker is ours
                if stack.worker is not first_worker:
                    await asyncio.to_thread(stop_process, stack.worker, 20)
    progress = found["progress"]
    exactly_once = (
        progress["status"] == "completed"
        and progress["started"] == size
        and once == {"rows": size, "contacts": size, "workflows": size}
    )
    overall = progress["processed"] / found["elapsed"]
    steady = found["steady_rate"]
    note = f"worker SIGKILLed at {found['killed_at']}" if found["killed_at"] else "no restart"
    note += ", Temporal state in a file" if temporal_file else ""
    return {
        "figures": [
            {
                "name": f"{size} contacts activated, uninterrupted stretch",
                "value": steady,
                "unit": "/s",
                "baseline": raw,
                "baseline_name": "raw workflow starts",
            },
            {
                "name": f"{size} contacts activated, start to end",
                "value": overall,
                "unit": "/s",
                "baseline": raw,
                "baseline_name": "raw workflow starts",
                "note": note,
            },
            {
                "name": "CPU per enrollment, every process",
                "value": found["cpu_ms_per_enrollment"]["total"],
                "unit": "ms",
                "note": ", ".join(
                    f"{k} {v}" for k, v in found["cpu_ms_per_enrollment"].items() if k != "total"
                ),
            },
            {
                "name": "each contact enrolled exactly once",
                "value": 1.0 if exactly_once else 0.0,
                "unit": "",
                "target": 1.0,
                "on": "value",
                "note": f"{once['rows']} rows, {once['workflows']} workflows",
            },
        ],
        "size": size,
        "raw_start_rate": raw,
        "steady_rate": steady,
        "overall_rate": overall,
        "elapsed_seconds": found["elapsed"],
        "killed_at": found["killed_at"],
        "cpu_ms_per_enrollment": found["cpu_ms_per_enrollment"],
        "progress": progress,
        "enrollments": once,
        "exactly_once": exactly_once,
        "concurrency": CONCURRENCY,
        "heartbeat_seconds": HEARTBEAT_SECONDS,
        "temporal_file": temporal_file,
    }


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv and argv[0].isdigit() else 100_000
    store = True if "--temporal-file" in argv else False if "--in-memory" in argv else None
    result = asyncio.run(run(size, restart="--no-restart" not in argv, temporal_file=store))
    for row in result["figures"]:
        value = "-" if row["value"] is None else f"{row['value']:.1f}"
        base = f" · {row['baseline_name']} {row['baseline']:.1f}/s" if "baseline" in row else ""
        print(f"{row['name']}: {value}{row['unit']}{base} {row.get('note', '')}")
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
