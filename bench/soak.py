"""Soak: sustained enrollments and events at a fixed rate on loopback, against the whole
stack as `nurture dev` runs it (the worker, the API with its sender and the dev SMTP sink
as their own processes): every enrollment's welcome email goes out for real.

Every ten seconds it reads the errors and latencies of that window and the RSS of the API
and the worker: a healthy run has no errors in any window and flat memory after warm-up.

`python -m bench.soak [--seconds 60] [--enrollments 5] [--events 40]` prints the figures as
JSON; `soak(seconds, ...)` returns them, and `run(size)` is the entry `python -m bench`
collects (60 s at `size / 80` enrollments and `size / 10` events per second: 5 and 40 at
the default size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from bench import DEFAULT_SIZE, journeys
from bench.stack import Stack, running_stack

SECONDS = 60
"""The soak's length at the bench suite's default."""
WINDOW = 10.0
"""Seconds per reporting window."""
LISTENERS = 50
"""Enrollments that wait (a month) and receive every event of the soak."""
MAX_IN_FLIGHT = 256
"""Requests allowed in flight; past that an arrival counts as an error (the API fell behind)."""


@dataclass
class Window:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def figures(self, end: float, stack: Stack) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "t": round(end),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None,
            "api_rss_mb": _rss_mb(stack.processes["api"]),
            "worker_rss_mb": _rss_mb(stack.processes["worker"]),
        }


def _rss_mb(proc: Any) -> float | None:
    try:
        return round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
    except (psutil.Error, AttributeError):
        return None


async def _soak(
    stack: Stack, seconds: int, enrollments_per_second: float, events_per_second: float
) -> dict[str, Any]:
    http = stack.http
    template = await http.put(
        "/v1/templates/welcome", json={"subject": "Welcome", "text": "Hi {{ contact.id }}."}
    )
    template.raise_for_status()
    running_id = await journeys.create_active(http, journeys.three_actions("PT2S"))
    listening_id = await journeys.create_active(http, journeys.waiting(first_send=False))
    listeners = stack.new_contacts(LISTENERS, "listener")
    await journeys.create_contacts(http, listeners)
    await journeys.enroll_all(stack.api, listening_id, listeners)

    windows: list[dict[str, Any]] = []
    current = Window()
    in_flight: set[asyncio.Task[None]] = set()
    errors_total = 0
    started_enrollments = 0

    async def timed(make: Any) -> None:
        began = time.monotonic()
        try:
            response: httpx.Response = await make()
            ok = response.status_code < 400
            problem = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        window = current
        window.requests += 1
        window.latencies.append(time.monotonic() - began)
        if not ok:
            window.errors += 1
            if len(window.error_samples) < 5:
                window.error_samples.append(problem)

    async def enroll(contact: str) -> httpx.Response:
        email = {"properties": {"email": f"{contact}@example.test"}}
        created = await http.put(f"/v1/contacts/{contact}", json=email)
        if created.status_code >= 400:
            return created
        added = await http.put(f"/v1/lists/{journeys.CONTACTS_LIST}/members/{contact}")
        if added.status_code >= 400:
            return added
        return await http.post(
            f"/v1/journeys/{running_id}/enrollments", json={"contact_id": contact}
        )

    def event(n: int) -> Any:
        body = {
            "contact_id": listeners[n % LISTENERS],
            "type": "page_viewed",
            "properties": {"n": n, "path": f"/pricing/{n % 7}"},
            "idempotency_key": f"soak-{n}",
        }
        return lambda: http.post("/v1/events", json=body)

    def launch(make: Any) -> None:
        if len(in_flight) >= MAX_IN_FLIGHT:
            current.errors += 1
            return
        task = asyncio.create_task(timed(make))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    # arrivals at fixed times: n / rate seconds after the start, whatever the answers do
    arrivals = sorted(
        [
            (i / enrollments_per_second, "enroll", i)
            for i in range(int(seconds * enrollments_per_second))
        ]
        + [(i / events_per_second, "event", i) for i in range(int(seconds * events_per_second))]
    )
    at_start = {
        "api_rss_mb": _rss_mb(stack.processes["api"]),
        "worker_rss_mb": _rss_mb(stack.processes["worker"]),
    }
    start = time.monotonic()
    next_report = WINDOW
    contacts = stack.new_contacts(len(arrivals), "soak")
    for at, kind, n in arrivals:
        while at >= next_report:
            await _sleep_until(start + next_report)
            windows.append(
                {**current.figures(next_report, stack), "samples": current.error_samples}
            )
            errors_total += current.errors
            current = Window()
            next_report += WINDOW
        await _sleep_until(start + at)
        if kind == "enroll":
            started_enrollments += 1
            launch(lambda c=contacts[n]: enroll(c))
        else:
            launch(event(n))
    await _sleep_until(start + seconds)
    if in_flight:
        await asyncio.wait(set(in_flight), timeout=60)
    windows.append({**current.figures(seconds, stack), "samples": current.error_samples})
    errors_total += current.errors

    # the run drains: every enrollment completes, every event is delivered
    drained_at = time.monotonic()
    completed = 0
    backlog = -1
    while time.monotonic() - drained_at < 120:
        completed = await stack.pool.fetchval(
            "SELECT count(*) FROM enrollments WHERE journey_id = $1 AND status = 'completed'",
            running_id,
        )
        backlog = await stack.pool.fetchval(
            "SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM change_queue)"
        )
        if completed == started_enrollments and backlog == 0:
            break
        await asyncio.sleep(0.5)
    warm = [w for w in windows if w["t"] > WINDOW] or windows
    outbox = await stack.pool.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
               count(*) FILTER (WHERE status <> 'delivered') AS other,
               coalesce(sum((answer->>'resends')::int), 0) AS resends,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered_at - created_at) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY delivered_at - created_at) AS p99
        FROM outbox WHERE journey_id = $1
        """,
        running_id,
    )
    assert outbox is not None
    received = await stack.pool.fetchval("SELECT count(*) FROM dev_mailbox")

    def growth(key: str) -> dict[str, float | None]:
        values = [w[key] for w in warm if w[key] is not None]
        if not values:
            return {"start": at_start[key], "after_warmup": None, "end": None, "growth": None}
        return {
            "start": at_start[key],
            "after_warmup": values[0],
            "end": values[-1],
            "growth": round(values[-1] - values[0], 1),
        }

    return {
        "seconds": seconds,
        "rate": {"enrollments_per_s": enrollments_per_second, "events_per_s": events_per_second},
        "requests": sum(w["requests"] for w in windows),
        "errors": errors_total,
        "errors_by_window": [w["errors"] for w in windows],
        "p99_ms_by_window": [w["p99_ms"] for w in windows],
        "enrollments_started": started_enrollments,
        "enrollments_completed": completed,
        "deliveries_backlog_after_drain": backlog,
        "drain_seconds": round(time.monotonic() - drained_at, 1),
        "emails": {
            "delivered": outbox["delivered"],
            "not_delivered": outbox["other"],
            "received_by_the_sink": received,
            "resends": outbox["resends"],
            "queued_to_delivered_p50_ms": _ms(outbox["p50"]),
            "queued_to_delivered_p99_ms": _ms(outbox["p99"]),
        },
        "api_rss_mb": growth("api_rss_mb"),
        "worker_rss_mb": growth("worker_rss_mb"),
        "windows": windows,
    }


def _ms(interval: Any) -> float | None:
    return round(interval.total_seconds() * 1000, 1) if interval is not None else None


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def soak(
    seconds: int = SECONDS, enrollments_per_second: float = 5, events_per_second: float = 40
) -> dict[str, Any]:
    """Starts a fresh stack, soaks it for `seconds`, lets it drain, and returns the figures."""
    async with running_stack(mail=True) as stack:
        figures = await _soak(stack, seconds, enrollments_per_second, events_per_second)
        figures["restarts"] = dict(stack.restarts)
        return figures


async def run(size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """The entry `python -m bench` collects: the soak at rates scaled by `size`, with its
    headline figures as table rows."""
    figures = await soak(SECONDS, size / 80, size / 10)
    return {**figures, "figures": rows(figures)}


def rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows: errors (target 0), the last window's p99, and each process's
    RSS at the start and end of the steady part with its growth."""
    last_p99 = next((p for p in reversed(figures["p99_ms_by_window"]) if p is not None), None)
    out: list[dict[str, Any]] = [
        {"name": "requests", "value": figures["requests"], "unit": ""},
        {
            "name": "errors",
            "value": figures["errors"],
            "unit": "",
            "target": 0,
            "on": "value",
            "at_least": False,
        },
        {"name": "p99, last window", "value": last_p99, "unit": "ms"},
        {
            "name": "enrollments not completed after drain",
            "value": figures["enrollments_started"] - figures["enrollments_completed"],
            "unit": "",
            "target": 0,
            "on": "value",
            "at_least": False,
        },
        {
            "name": "emails received by the SMTP sink",
            "value": figures["emails"]["received_by_the_sink"],
            "unit": "",
        },
        {
            "name": "email queued → delivered, p99",
            "value": figures["emails"]["queued_to_delivered_p99_ms"],
            "unit": "ms",
        },
    ]
    for part in ("api", "worker"):
        rss = figures[f"{part}_rss_mb"]
        for when, key in (("at start", "start"), ("after warm-up", "after_warmup"), ("end", "end")):
            out.append({"name": f"{part} RSS {when}", "value": rss[key], "unit": "MB"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--enrollments", type=float, default=5, help="enrollments per second")
    parser.add_argument("--events", type=float, default=40, help="events per second")
    args = parser.parse_args(argv)
    figures = asyncio.run(soak(args.seconds, args.enrollments, args.events))
    print(json.dumps(figures, indent=2))
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
