"""The whole suite: one fresh stack, every figure, one table, one JSON report.

Sizes, from `size` (the enrollments of the throughput run, default `bench.DEFAULT_SIZE`):
latency and ingest each get `size` fresh enrollments waiting on a timer (latency sends one
purchase to each at 50/s; ingest 10 page views to each, in batches of 100), and memory
fills up to `6 * size` enrollments waiting on timers (or `memory_count`: `--memory 10000`).

The figures of other issues (`bench.metrics_scale`, `bench.activation`, `bench.soak`) are
collected when those modules exist: each has `run(size: int) -> dict` (or `run() -> dict`
when its size is its own, like the soak's fixed rate and length), async or not, and starts
what it needs itself, after this stack has stopped. One that raises becomes a row saying
so; the rest of the report stands.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import cpu, history, ingest, latency, memory, throughput
from bench.report import Figure, machine, print_cpu, print_table, write_json
from bench.stack import Stack, running_stack
from cli.stack import temporal_binary

OPTIONAL = {
    "6. metrics latency": ("bench.metrics_scale", 2500),
    "7. activation": ("bench.activation", 2.5),
    "soak": ("bench.soak", 1),
    "sender": ("bench.sender", 5),
    "fairness": ("bench.fairness", 0.5),
    "8. triggered entries": ("bench.triggered", 5),
    "9. tracking": ("bench.tracking", 5),
}
"""Section → (module, its size per unit of ours): metrics over 1,000,000 enrollments and
activation of 1,000 contacts at the default size (1,000 took 72 s on the shared 2-core
machine; `python -m bench.activation 100000` is the activation's own figure); the soak scales its
rates by our size; the sender hands over 2,000 queued emails; fairness floods with 2,000
events from 200 enrollments; 2,000 events start entries of an event-triggered journey;
the tracking endpoints take 2,000 opens and 2,000 forged tokens."""


def sizes(size: int, memory_count: int | None = None) -> dict[str, int]:
    return {
        "throughput": size,
        "cpu": max(10, size // 2),
        "waiting": size,
        "ingest_events": 10 * size,
        "memory": memory_count or 6 * size,
    }


async def run_suite(
    size: int,
    report: Path,
    keep: bool = False,
    optional: bool = True,
    temporal_file: bool = False,
    memory_count: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Figure]:
    """Runs every benchmark on a fresh stack, prints the table, writes the JSON report;
    `optional=False` leaves out the other issues' figures (the test suite's tiny run)."""
    meta: dict[str, Any] = {
        "size": size,
        "sizes": sizes(size, memory_count),
        "temporal_store": "sqlite file" if temporal_file else "memory",
        "machine": machine(temporal_binary()),
    }
    n = sizes(size, memory_count)
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cpu_used: dict[str, dict[str, float]] = {}
    started = time.monotonic()

    async def step(
        name: str,
        run: Callable[[], Awaitable[tuple[list[Figure], dict[str, Any]]]],
        stack: Stack | None = None,
    ) -> None:
        log(f"bench: {name} …")
        t0 = time.monotonic()
        before = stack.cpu_seconds() if stack else {}
        found, detail = await run()
        seconds[name] = round(time.monotonic() - t0, 1)
        if stack:
            after = stack.cpu_seconds()
            cpu_used[name] = {part: round(after[part] - before.get(part, 0), 1) for part in after}
        figures.extend(found)
        details[name] = detail

    async with running_stack(keep=keep, temporal_file=temporal_file) as stack:
        await step("cpu per unit", lambda: cpu.run(stack, n["cpu"]), stack)
        await step("throughput", lambda: throughput.run(stack, n["throughput"]), stack)
        await step("history", lambda: history.run(stack), stack)
        # latency, then ingest, each on enrollments of its own that have only waited so far
        await step("enrolling for latency", lambda: latency.prepare(stack, n["waiting"]), stack)
        fresh = details.pop("enrolling for latency")["enrollments"]
        await step("latency", lambda: latency.run(stack, fresh), stack)
        await step("enrolling for ingest", lambda: latency.prepare(stack, n["waiting"]), stack)
        waiting = details.pop("enrolling for ingest")["enrollments"]
        await step("ingest", lambda: ingest.run(stack, waiting, n["ingest_events"]), stack)
        await step("memory", lambda: memory.run(stack, n["memory"]), stack)
        meta["restarts"] = stack.restarts
    for section, (module, scale) in OPTIONAL.items() if optional else ():
        await step(section, partial(collect_optional, section, module, max(1, round(size * scale))))
    meta["seconds"] = {**seconds, "total": round(time.monotonic() - started, 1)}
    meta["cpu_seconds"] = cpu_used
    write_json(report, figures, details, meta)
    cpus, total = meta["machine"]["cpus"], meta["seconds"]["total"]
    store = meta["temporal_store"]
    title = f"nurture bench · size {size} · {cpus} CPUs · Temporal in {store} · {total:.0f}s"
    print_table(figures, title)
    print_cpu(cpu_used, seconds)
    log(f"bench: report written to {report}")
    return figures


async def collect_optional(
    section: str, module_name: str, size: int
) -> tuple[list[Figure], dict[str, Any]]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return [Figure(section, "not available", None, "", note="not available")], {}
    run = module.run
    try:
        result = run(size) if inspect.signature(run).parameters else run()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # another issue's benchmark failing must not lose ours
        error = f"{type(exc).__name__}: {exc}"
        return [Figure(section, "failed", None, "", note=error[:200])], {"error": error}
    if not isinstance(result, dict):
        error = f"run() returned {type(result).__name__}, not a dict"
        return [Figure(section, "failed", None, "", note=error)], {"error": error}
    return figures_from(section, result), result


def figures_from(section: str, result: dict[str, Any]) -> list[Figure]:
    """Another issue's result as rows: its `figures` (dicts with Figure's fields) when it
    has them; otherwise one row per number, top-level or one level down (`metrics.p99_ms`),
    with a top-level `target_<name>` applied (as a maximum) to the first row named so."""
    rows = result.get("figures")
    if isinstance(rows, list):
        fields = set(Figure.__dataclass_fields__) - {"ratio", "met", "missed_by"}
        return [
            Figure(
                **{"section": section, "unit": "", **{k: v for k, v in row.items() if k in fields}}
            )
            for row in rows
            if isinstance(row, dict) and "name" in row and "value" in row
        ]

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    targets = {k.removeprefix("target_"): v for k, v in result.items() if k.startswith("target_")}
    figures: list[Figure] = []
    for key, value in result.items():
        if key.startswith("target_"):
            continue
        found = [(key, key, value)] if number(value) else []
        if isinstance(value, dict):
            found = [(f"{key} {sub}", sub, v) for sub, v in value.items() if number(v)]
        for name, last, amount in found:
            unit = "ms" if last.endswith("_ms") else ""
            target = targets.pop(last, None)
            figures.append(
                Figure(
                    section,
                    name.removesuffix("_ms"),
                    float(amount),
                    unit,
                    target=float(target) if number(target) else None,
                    on="value",
                    at_least=False,
                )
            )
    return figures
