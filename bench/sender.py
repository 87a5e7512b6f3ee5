"""The sender's capacity: how fast the API's sender hands queued email to an SMTP server.

`count` email rows are queued at once in the outbox (as the send activity writes them),
on the whole stack with real email (`running_stack(mail=True)`: the sender in the API
process, the dev SMTP sink as a process of its own); the figure is from the commit that
queued them to the last delivery recorded, and each row's wait (queued → delivered).

`python -m bench.sender [count]` prints the figures as JSON; `run(size)` is the entry
`python -m bench` collects (`5 * size` messages: 2,000 at the default size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from bench import DEFAULT_SIZE
from bench.stack import Stack, running_stack
from shared.settings import Settings

QUEUE = """
INSERT INTO outbox (idempotency_key, workspace, workflow_id, journey_id, contact_id, kind,
                    channel, payload)
SELECT 'bench/' || $1 || '/' || n || ':1:email', 'default', 'bench/' || $1 || '/' || n,
       'jrn_bench', 'c' || n, 'message', 'email',
       jsonb_build_object('to', 'c' || n || '@example.test',
                          'content', jsonb_build_object('subject', 'Welcome', 'text', 'Hi.'))
FROM generate_series(1, $2) AS n
"""
DONE = """
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status NOT IN ('queued', 'sending', 'delivered')) AS other,
       max(delivered_at) - min(created_at) AS span,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered_at - created_at) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY delivered_at - created_at) AS p99,
       coalesce(sum((answer->>'resends')::int), 0) AS resends
FROM outbox WHERE workflow_id LIKE 'bench/' || $1 || '/%'
"""


async def _deliver(stack: Stack, count: int, give_up_after: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    await stack.pool.execute(QUEUE, tag, count)
    began = time.monotonic()
    while True:
        row = await stack.pool.fetchrow(DONE, tag)
        assert row is not None
        if row["delivered"] + row["other"] >= count or time.monotonic() - began > give_up_after:
            break
        await asyncio.sleep(0.2)
    received = await stack.pool.fetchval(
        "SELECT count(*) FROM dev_mailbox WHERE idempotency_key LIKE 'bench/' || $1 || '/%'",
        tag,
    )
    seconds = row["span"].total_seconds() if row["span"] is not None else None
    return {
        "messages": count,
        "delivered": row["delivered"],
        "not_delivered": count - row["delivered"],
        "received_by_the_sink": received,
        "resends": row["resends"],
        "seconds": round(seconds, 2) if seconds else None,
        "per_second": round(row["delivered"] / seconds, 1) if seconds else None,
        "queued_to_delivered_p50_ms": _ms(row["p50"]),
        "queued_to_delivered_p99_ms": _ms(row["p99"]),
    }


def _ms(interval: Any) -> float | None:
    return round(interval.total_seconds() * 1000, 1) if interval is not None else None


async def measure(count: int) -> dict[str, Any]:
    """Starts a stack with real email, queues `count` messages, returns the figures."""
    async with running_stack(mail=True) as stack:
        figures = await _deliver(stack, count, give_up_after=60 + count / 10)
        figures["sender_concurrency"] = Settings().sender_concurrency
        return figures


async def run(size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """The entry `python -m bench` collects, with its headline figures as table rows."""
    figures = await measure(5 * size)
    rows = [
        {"name": "messages delivered", "value": figures["delivered"], "unit": ""},
        {"name": "emails received by the SMTP sink", "value": figures["received_by_the_sink"],
         "unit": ""},
        {"name": "hand-overs per second", "value": figures["per_second"], "unit": "/s"},
        {"name": "queued → delivered, p99", "value": figures["queued_to_delivered_p99_ms"],
         "unit": "ms"},
    ]  # fmt: skip
    return {**figures, "figures": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sender", description=__doc__)
    parser.add_argument("count", type=int, nargs="?", default=2000, help="messages to queue")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.count))
    print(json.dumps(figures, indent=2))
    return 0 if figures["not_delivered"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
