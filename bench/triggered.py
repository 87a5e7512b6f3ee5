"""Event-triggered entries: contacts posting the event that starts a journey, through the
whole path (POST /v1/events, the relay's routing and entry checks, the entry row, the
workflow start), on a fresh stack of its own. Next to it, the raw Temporal start rate
measured in the same run (`bench.activation.raw_start_rate`).

Figures: entries per second over the whole burst (events posted in batches of 100 as fast
as the API takes them), against raw starts; and the latency from an event's receipt to its
entry's row (p50 and p99, from the database's own clocks). Run:
`python -m bench.triggered [SIZE]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from bench.activation import raw_start_rate
from bench.stack import running_stack

BATCH = 100
TIMEOUT_SECONDS = 600


def definition() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "name": f"bench triggered {tag}",
        "owner": f"bench-{tag}@nurture.test",
        "stage_property": f"bench_stage_{tag}",
        "trigger": {"event": {"type": "bench_cart_abandoned"}},
        "start_stage": "main",
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
        "ends": {"success": {"value": "done"}},
    }


LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
FROM (
    SELECT extract(epoch FROM n.enrolled_at - e.received_at) * 1000 AS ms
    FROM enrollments n JOIN events e
      ON e.workspace = n.workspace AND e.idempotency_key = n.trigger_key
    WHERE n.journey_id = $1
) AS entries
"""


async def run(size: int) -> dict[str, Any]:
    """`size` contacts each post one triggering event; every one must become an entry."""
    async with running_stack() as stack:
        await stack.pool.execute(
            "INSERT INTO contacts (workspace, id) SELECT 'default', 'trg-' || i"
            " FROM generate_series(1, $1) AS i",
            size,
        )
        raw = await raw_start_rate(stack, size)
        created = await stack.http.post("/v1/journeys", json=definition())
        created.raise_for_status()
        journey_id = created.json()["id"]
        (await stack.http.post(f"/v1/journeys/{journey_id}/activate")).raise_for_status()
        t0 = time.monotonic()
        for start in range(1, size + 1, BATCH):
            events = [
                {"contact_id": f"trg-{i}", "type": "bench_cart_abandoned",
                 "properties": {"cart_id": f"cart-{i}"}}
                for i in range(start, min(size, start + BATCH - 1) + 1)
            ]  # fmt: skip
            (await stack.http.post("/v1/events", json={"events": events})).raise_for_status()
        posted = time.monotonic() - t0
        entered = 0
        while entered < size and time.monotonic() - t0 < TIMEOUT_SECONDS:
            await asyncio.sleep(0.2)
            entered = await stack.pool.fetchval(
                "SELECT count(*) FROM enrollments WHERE journey_id = $1", journey_id
            )
        elapsed = time.monotonic() - t0
        latency = await stack.pool.fetchrow(LATENCY, journey_id)
    rate = entered / elapsed
    p50 = latency["p50"] if latency else None
    p99 = latency["p99"] if latency else None
    return {
        "figures": [
            {
                "name": f"{size} events that became entries",
                "value": rate,
                "unit": "/s",
                "baseline": raw,
                "baseline_name": "raw workflow starts",
                "note": f"{entered} of {size} entered; posted in {posted:.1f} s",
            },
            {"name": "event received → entry row, p50", "value": p50, "unit": "ms"},
            {"name": "event received → entry row, p99", "value": p99, "unit": "ms"},
        ],
        "size": size,
        "entered": entered,
        "raw_start_rate": raw,
        "elapsed_seconds": elapsed,
        "posted_seconds": posted,
    }


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv and argv[0].isdigit() else 2000
    result = asyncio.run(run(size))
    for row in result["figures"]:
        value = "-" if row["value"] is None else f"{row['value']:.1f}"
        base = f" · {row['baseline_name']} {row['baseline']:.1f}/s" if "baseline" in row else ""
        print(f"{row['name']}: {value}{row['unit']}{base} {row.get('note', '')}")
    return 0 if result["entered"] == result["size"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
