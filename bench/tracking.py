"""The tracking endpoints under load (docs/channels.md, "Tracking"), on a fresh stack of
its own: opens per second (`GET /t/o/{token}`: the token checked, the hit counted, the
`email_opened` event stored) next to the plain `/healthz` rate in the same run, and a flood
of forged tokens, which must be rejected before any database read (the figure: its rate,
and the API's CPU per forged request against `/healthz`'s). Run:
`python -m bench.tracking [SIZE]`.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from typing import Any

import httpx

from bench.activation import _environment
from bench.stack import Stack, running_stack
from shared import tracking

SECRET = secrets.token_urlsafe(32)
CONCURRENCY = 32
AGENT = {"User-Agent": "Mozilla/5.0 (bench)"}


async def _rate(stack: Stack, paths: list[str]) -> tuple[float, float, int]:
    """(requests per second, the API's CPU ms per request, answers other than 200)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    statuses: list[int] = []

    async def one(client: httpx.AsyncClient, path: str) -> None:
        async with gate:
            statuses.append((await client.get(path, headers=AGENT)).status_code)

    cpu = stack.cpu_seconds().get("api", 0.0)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(one(client, p) for p in paths))
        elapsed = time.monotonic() - t0
    used = stack.cpu_seconds().get("api", 0.0) - cpu
    return len(paths) / elapsed, used * 1000 / len(paths), sum(s != 200 for s in statuses)


async def run(size: int) -> dict[str, Any]:
    """`size` opens of 50 tracked messages, `size` health checks, `size` forged tokens."""
    with _environment(NURTURE_TRACKING_SECRET=SECRET):
        async with running_stack() as stack:
            pixels = []
            for n in range(50):
                key = f"bench-tracking:{n}:email"
                message = tracking.message_id(SECRET, key)
                await stack.pool.execute(
                    "INSERT INTO tracked_messages (id, idempotency_key, workspace, journey_id,"
                    " contact_id, workflow_id, stage, template, marketing)"
                    " VALUES ($1, $2, 'default', 'jrn_bench', $3, $2, 'main', 'welcome', true)",
                    message,
                    key,
                    f"bench-{n}",
                )
                pixels.append(f"/t/o/{tracking.token(SECRET, message, tracking.OPEN)}")
            health = await _rate(stack, ["/healthz"] * size)
            opens = await _rate(stack, [pixels[i % 50] for i in range(size)])
            forged_paths = [f"/t/o/{tracking.token('not-the-secret', b'x' * 12, 'o')}"] * size
            forged = await _rate(stack, forged_paths)
            recorded = await stack.pool.fetchval("SELECT count(*) FROM events")
    return {
        "figures": [
            {
                "name": f"opens ({size})",
                "value": opens[0],
                "unit": "/s",
                "baseline": health[0],
                "baseline_name": "/healthz",
                "note": f"API CPU {opens[1]:.2f} ms per open; {opens[2]} not 200",
            },
            {
                "name": f"forged tokens rejected ({size})",
                "value": forged[0],
                "unit": "/s",
                "baseline": health[0],
                "baseline_name": "/healthz",
                "note": f"API CPU {forged[1]:.2f} ms each against {health[1]:.2f} for /healthz",
            },
            {
                "name": "events recorded for the opens (none for forged tokens)",
                "value": recorded,
                "unit": "",
                "target": size,
                "on": "value",
            },
        ],
        "size": size,
        "opens": opens,
        "health": health,
        "forged": forged,
        "forged_answers_not_404": forged[2] - size if forged[2] != size else 0,
    }


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv and argv[0].isdigit() else 2000
    result = asyncio.run(run(size))
    for row in result["figures"]:
        value = "-" if row["value"] is None else f"{row['value']:.1f}"
        base = f" · {row['baseline_name']} {row['baseline']:.1f}/s" if "baseline" in row else ""
        print(f"{row['name']}: {value}{row['unit']}{base} {row.get('note', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
