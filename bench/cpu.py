"""0. CPU per unit of work, process by process, next to bare Temporal in the same run.

CPU time is far steadier than wall time on a shared 2-core machine, so this is the figure
to compare. Each phase snapshots every process's CPU time (Temporal, the nurture worker,
the API with its relay and sender, Postgres, the bare worker, the bench client; child
processes included) before and after, and divides by the units of work it did:

- **enrollment**: `count` enrollments of the 3-action journey (send_message, a 1 s wait,
  go_to success) POSTed to the API and awaited by their workflow ids, against `count`
  bare workflows (one activity, one timer) started by the bench client, in rounds that
  take turns (`_alternated`).
- **exit**: `count` enrollments already waiting for a purchase, each sent its purchase at
  a steady `RATE` events/s and awaited, against bare waiters signalled at the same rate
  (plain, and with an exit's outcome and write), in rounds that take turns.
- **event ingested**: 10 page views per waiting enrollment POSTed in batches of 100, and
  delivered, against raw signals to bare waiters.
- **knee**: the highest steady rate at which exit p99 stays within 3 times the unloaded p99
  (20 exits one after another), for nurture and for bare, over `KNEE_RATES`.

Waiting enrollments are put in place before a phase starts, so their cost is not counted.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from bench import journeys
from bench.baseline import BARE_JOURNEY, BARE_WAITER, BareInput
from bench.latency import paced, percentile
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack
from bench.visibility import wait_settled

T = TypeVar("T")
RATE = 20.0
ROUNDS = 4
"""Rounds of enrollments and of exits, nurture's and bare's taking turns (`_alternated`)."""
KNEE_RATES = (10.0, 20.0, 30.0, 40.0, 60.0)
KNEE_EVENTS = 100
"""Exits per rate of the knee's sweep (at most; `count // 2` for a small run)."""
UNLOADED = 20
CONCURRENCY = 32
MONTH = 30 * 86400.0
NURTURE_PARTS = ("temporal", "worker", "api", "postgres", "bench client")
BARE_PARTS = ("temporal", "baseline-worker", "bench client")
Waiting = tuple[str, str, str | None]
"""A waiting enrollment: contact, workflow id, run id."""


QUIET = 0.1
"""A stack is quiet when, over `QUIET_WINDOW` seconds, it used less than this share of a
core in all (the API's, the sender's and Temporal's idle polls stay well below it)."""
QUIET_WINDOW = 0.3
SETTLE_LIMIT = 5.0


async def _settled(stack: Stack) -> None:
    """Waits until the stack has finished what its last work left behind (Temporal's
    close and visibility tasks, the relay's deletes, Postgres's writes): otherwise one
    phase's tail is counted in the next one's, nurture's in bare's or the other way round."""
    deadline = time.monotonic() + SETTLE_LIMIT
    last = sum(stack.cpu_seconds().values())
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIET_WINDOW)
        now = sum(stack.cpu_seconds().values())
        if now - last < QUIET * QUIET_WINDOW:
            return
        last = now


async def _cpu(stack: Stack, work: Awaitable[T]) -> tuple[T, dict[str, float]]:
    """The CPU each process used for `work`, from a quiet stack to a quiet stack."""
    await _settled(stack)
    before = stack.cpu_seconds()
    result = await work
    await _settled(stack)
    after = stack.cpu_seconds()
    return result, {part: after[part] - before.get(part, 0.0) for part in after}


def _per_unit(used: dict[str, float], parts: tuple[str, ...], units: int) -> dict[str, float]:
    """CPU milliseconds per unit, per process, and their total."""
    per = {part: round(used.get(part, 0.0) * 1000 / units, 2) for part in parts}
    per["total"] = round(sum(per.values()), 2)
    return per


def above_bare(nurture: dict[str, float], bare: dict[str, float]) -> str:
    """Which process holds what nurture adds to bare Temporal, in ms per unit, the most
    first: each process next to its bare counterpart (the API and Postgres have none)."""
    extra = {
        "Temporal": nurture["temporal"] - bare["temporal"],
        "worker": nurture["worker"] - bare["baseline-worker"],
        "API": nurture["api"],
        "Postgres": nurture["postgres"],
        "bench client": nurture["bench client"] - bare["bench client"],
    }
    ranked = sorted(extra.items(), key=lambda item: -item[1])
    return "above bare: " + ", ".join(f"{name} {ms:+.1f} ms" for name, ms in ranked)


def contract_cost(leave: dict[str, float], bare: dict[str, float]) -> str:
    """What an exit's outcome (a search attribute) and write (a local activity) cost a bare
    workflow, per process: the part of an exit that is Temporal's and its SDK's."""
    return (
        f"the outcome and write alone: Temporal {leave['temporal'] - bare['temporal']:+.1f} ms, "
        f"worker {leave['baseline-worker'] - bare['baseline-worker']:+.1f} ms"
    )


async def _gated(count: int, one: Callable[[int], Awaitable[T]], at_once: int) -> list[T]:
    gate = asyncio.Semaphore(at_once)

    async def run(i: int) -> T:
        async with gate:
            return await one(i)

    return list(await asyncio.gather(*(run(i) for i in range(count))))


# --- enrollments ----------------------------------------------------------------------------


async def _contacts(stack: Stack, count: int) -> tuple[str, list[str]]:
    """An active 3-action journey and `count` contacts for it (not measured)."""
    journey_id = await journeys.create_active(stack.http, journeys.three_actions("PT1S"))
    contacts = stack.new_contacts(count, "cpu")
    await journeys.create_contacts(stack.http, contacts)
    return journey_id, contacts


async def _enroll(stack: Stack, journey_id: str, contacts: list[str]) -> None:
    runs = await journeys.enroll_runs(stack.api, journey_id, contacts, CONCURRENCY)
    await _gated(len(runs), lambda i: _result(stack, *runs[i]), 64)


async def _result(stack: Stack, workflow_id: str, run_id: str | None) -> Any:
    return await stack.temporal.get_workflow_handle(workflow_id, run_id=run_id).result()


async def _bare_enroll(stack: Stack, count: int) -> None:
    tag = uuid.uuid4().hex[:8]

    async def one(i: int) -> Any:
        handle = await stack.temporal.start_workflow(
            BARE_JOURNEY,
            BareInput(activities=1, timers=1, timer_seconds=1),
            id=f"cpu-{tag}-{i}",
            task_queue=BASELINE_QUEUE,
        )
        return await handle.result()

    await _gated(count, one, CONCURRENCY)


# --- exits ----------------------------------------------------------------------------------


async def _waiting(stack: Stack, count: int) -> list[Waiting]:
    """`count` enrollments waiting a month for a purchase, settled: (contact, workflow id,
    run id)."""
    journey_id = await journeys.create_active(stack.http, journeys.waiting(first_send=False))
    contacts = stack.new_contacts(count, "cpw")
    await journeys.create_contacts(stack.http, contacts)
    runs = await journeys.enroll_runs(stack.api, journey_id, contacts)
    await wait_settled(stack.temporal, [wf for wf, _ in runs], 60 + count)
    return [(c, wf, run) for c, (wf, run) in zip(contacts, runs, strict=True)]


async def _bare_waiting(stack: Stack, count: int) -> list[Any]:
    tag = uuid.uuid4().hex[:8]
    handles = await _gated(
        count,
        lambda i: stack.temporal.start_workflow(
            BARE_WAITER, MONTH, id=f"cpu-wait-{tag}-{i}", task_queue=BASELINE_QUEUE
        ),
        CONCURRENCY,
    )
    await wait_settled(stack.temporal, [h.id for h in handles], 60 + count)
    return handles


def _exit(stack: Stack, enrollments: list[Waiting]) -> Callable[[int], Coroutine[Any, Any, float]]:
    async def one(i: int) -> float:
        contact, workflow_id, run_id = enrollments[i]
        t0 = time.monotonic()
        posted = await stack.api.post("/v1/events", {"contact_id": contact, "type": "purchase"})
        posted.raise_for_status()
        await _result(stack, workflow_id, run_id)
        return (time.monotonic() - t0) * 1000

    return one


def _bare_exit(
    handles: list[Any], signal: str = "stop"
) -> Callable[[int], Coroutine[Any, Any, float]]:
    """Ends bare waiters: `stop` as bare Temporal does, `leave` with what an enrollment's
    exit must do (bench/baseline.py)."""

    async def one(i: int) -> float:
        t0 = time.monotonic()
        await handles[i].signal(signal)
        await handles[i].result()
        return (time.monotonic() - t0) * 1000

    return one


# --- events ingested ------------------------------------------------------------------------


async def _ingest(stack: Stack, enrollments: list[Waiting], count: int) -> None:
    contacts = [c for c, _, _ in enrollments]
    events = [
        {"contact_id": contacts[i % len(contacts)], "type": "page_viewed", "target": f"/{i}"}
        for i in range(count)
    ]

    async def post(i: int) -> None:
        response = await stack.api.post("/v1/events", {"events": events[i : i + 100]})
        response.raise_for_status()

    await _gated(len(range(0, count, 100)), lambda n: post(n * 100), 4)
    pending = (
        "SELECT (SELECT count(*) FROM change_queue) + (SELECT count(*) FROM deliveries"
        " WHERE failed_at IS NULL)"
    )
    deadline = time.monotonic() + 120 + count / 10
    while await stack.pool.fetchval(pending):
        if time.monotonic() > deadline:
            raise TimeoutError("the relay did not deliver every event")
        await asyncio.sleep(0.2)
    await wait_settled(stack.temporal, [w for _, w, _ in enrollments], 120 + count / 10)


async def _bare_ingest(stack: Stack, handles: list[Any], count: int) -> None:
    await _gated(
        count,
        lambda i: handles[i % len(handles)].signal("ping", {"type": "page_viewed", "n": i}),
        64,
    )
    await wait_settled(stack.temporal, [h.id for h in handles], 120 + count / 10)


# --- the knee -------------------------------------------------------------------------------


async def _knee(
    unloaded: Callable[[int], Awaitable[float]],
    at_rate: Callable[[float], Awaitable[list[float]]],
    alone_count: int,
) -> dict[str, Any]:
    alone = [await unloaded(i) for i in range(alone_count)]
    floor = percentile(alone, 99)
    rates: dict[str, float] = {}
    knee = 0.0
    for rate in KNEE_RATES:
        p99 = percentile(await at_rate(rate), 99)
        rates[f"{rate:g}/s"] = round(p99, 1)
        if p99 > 3 * floor:
            break
        knee = rate
    return {
        "unloaded_p50_ms": round(statistics.median(alone), 1),
        "unloaded_p99_ms": round(floor, 1),
        "p99_ms_by_rate": rates,
        "knee_per_s": knee,
    }


async def _alternated(
    stack: Stack,
    works: dict[str, Callable[[list[Any]], Awaitable[list[T]]]],
    pools: dict[str, list[Any]],
) -> dict[str, tuple[list[T], dict[str, float]]]:
    """Each kind of work over its pool in `ROUNDS` rounds that take turns (the order
    reversed every other round), with what the work returned (latencies) and the CPU of
    all its rounds: the machine's speed drifts during a run by as much as the difference
    measured (to three times as slow within an hour, once), and in turns the drift falls
    on every kind alike."""
    rounds = ROUNDS if min(len(p) for p in pools.values()) >= ROUNDS * 5 else 1
    done: dict[str, tuple[list[T], dict[str, float]]] = {k: ([], {}) for k in works}
    for r in range(rounds):
        for kind in list(works) if r % 2 == 0 else list(reversed(works)):
            pool = pools[kind]
            part = pool[r * len(pool) // rounds : (r + 1) * len(pool) // rounds]
            results, used = await _cpu(stack, works[kind](part))
            done[kind][0].extend(results)
            for process, seconds in used.items():
                done[kind][1][process] = done[kind][1].get(process, 0.0) + seconds
    return done


async def run(stack: Stack, count: int) -> tuple[list[Figure], dict[str, Any]]:
    journey_id, contacts = await _contacts(stack, count)

    async def enroll(part: list[Any]) -> list[None]:
        await _enroll(stack, journey_id, part)
        return []

    async def bare_enroll(part: list[Any]) -> list[None]:
        await _bare_enroll(stack, len(part))
        return []

    enroll_by: dict[str, Callable[[list[Any]], Awaitable[list[None]]]] = {
        "nurture": enroll,
        "bare": bare_enroll,
    }
    enrollments = await _alternated(
        stack, enroll_by, {"nurture": contacts, "bare": list(range(count))}
    )
    enrollment = _per_unit(enrollments["nurture"][1], NURTURE_PARTS, count)
    bare_enrollment = _per_unit(enrollments["bare"][1], BARE_PARTS, count)

    waiting = await _waiting(stack, count)
    waiters = await _bare_waiting(stack, count)
    ingest_events = 10 * count
    _, used = await _cpu(stack, _ingest(stack, waiting, ingest_events))
    event = _per_unit(used, NURTURE_PARTS, ingest_events)
    _, used = await _cpu(stack, _bare_ingest(stack, waiters, ingest_events))
    bare_event = _per_unit(used, BARE_PARTS, ingest_events)

    leavers = await _bare_waiting(stack, count)
    exits = await _alternated(
        stack,
        {
            "nurture": lambda part: paced(len(part), _exit(stack, part), RATE),
            "bare": lambda part: paced(len(part), _bare_exit(part), RATE),
            "leave": lambda part: paced(len(part), _bare_exit(part, "leave"), RATE),
        },
        {"nurture": waiting, "bare": waiters, "leave": leavers},
    )
    latencies, exit_cpu = exits["nurture"][0], _per_unit(exits["nurture"][1], NURTURE_PARTS, count)
    bare_latencies, bare_exit_cpu = exits["bare"][0], _per_unit(exits["bare"][1], BARE_PARTS, count)
    bare_leave_cpu = _per_unit(exits["leave"][1], BARE_PARTS, count)

    per_rate = max(5, min(KNEE_EVENTS, count // 2))
    alone_count = max(5, min(UNLOADED, count // 5))
    knee_size = alone_count + per_rate * len(KNEE_RATES)
    knee_pool = await _waiting(stack, knee_size)
    bare_pool = await _bare_waiting(stack, knee_size)

    def taker(
        pool: list[Any], exit_of: Callable[[list[Any]], Any]
    ) -> tuple[Callable[[int], Awaitable[float]], Callable[[float], Awaitable[list[float]]]]:
        taken = iter(range(len(pool)))

        def unloaded(_: int) -> Awaitable[float]:
            return exit_of([pool[next(taken)]])(0)

        async def at_rate(rate: float) -> list[float]:
            batch = [pool[next(taken)] for _ in range(per_rate)]
            return await paced(len(batch), exit_of(batch), rate)

        return unloaded, at_rate

    knee = await _knee(*taker(knee_pool, lambda b: _exit(stack, b)), alone_count=alone_count)
    bare_knee = await _knee(*taker(bare_pool, _bare_exit), alone_count=alone_count)

    def figure(name: str, value: float, bare: float, unit: str, **target: Any) -> Figure:
        return Figure("0. CPU", name, value, unit, baseline=bare, baseline_name="bare", **target)

    below = {"at_least": False}
    figures = [
        figure(
            "ms per enrollment (3 actions)",
            enrollment["total"],
            bare_enrollment["total"],
            "ms",
            target=1.3,
            note=above_bare(enrollment, bare_enrollment),
            **below,
        ),
        figure(
            f"ms per exit (at {RATE:g}/s)",
            exit_cpu["total"],
            bare_exit_cpu["total"],
            "ms",
            target=1.4,
            note=above_bare(exit_cpu, bare_exit_cpu),
            **below,
        ),
        figure(
            f"ms per exit (at {RATE:g}/s), bare with an exit's outcome and write",
            bare_leave_cpu["total"],
            bare_exit_cpu["total"],
            "ms",
            note=contract_cost(bare_leave_cpu, bare_exit_cpu),
        ),
        figure("ms per event ingested", event["total"], bare_event["total"], "ms", **below),
        figure(
            f"exit p50 at {RATE:g}/s",
            statistics.median(latencies),
            statistics.median(bare_latencies),
            "ms",
            **below,
        ),
        figure(
            "unloaded exit p50",
            knee["unloaded_p50_ms"],
            bare_knee["unloaded_p50_ms"],
            "ms",
            target=2.0,
            **below,
        ),
        figure(
            "knee: exits/s with p99 within 3x unloaded",
            knee["knee_per_s"],
            bare_knee["knee_per_s"],
            "/s",
            target=0.75,
        ),
    ]
    details = {
        "count": count,
        "cpu_ms_per_enrollment": {"nurture": enrollment, "bare": bare_enrollment},
        "cpu_ms_per_exit": {
            "nurture": exit_cpu,
            "bare": bare_exit_cpu,
            "bare with an exit's outcome and write": bare_leave_cpu,
        },
        "cpu_ms_per_event": {"nurture": event, "bare": bare_event},
        "exit_ms": {
            "nurture": {"p50": statistics.median(latencies), "p99": percentile(latencies, 99)},
            "bare": {
                "p50": statistics.median(bare_latencies),
                "p99": percentile(bare_latencies, 99),
            },
        },
        "knee": {"nurture": knee, "bare": bare_knee},
    }
    return figures, details
