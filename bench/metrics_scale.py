"""Metrics at scale: /v1/journeys/{id}/metrics over 1,000,000 enrollments in 20 journeys,
and the web view's map of the same journey (`/ui/journeys/{id}/map`).

Starts its own embedded Postgres on a free port (data in a temporary directory), migrates
it, fills it set-wise (generate_series, no row-by-row inserts) with contacts, list
members, enrollments spread over 30 days with every status and outcome, stage moves,
refusals and conversions; the read-model counters are kept by the same triggers that
keep them in production. Then it serves the real app with uvicorn on loopback and times
GET /metrics for one journey: without a window (the counters) and with 1-day and 30-day
cohort windows. Run: `python -m bench.metrics_scale [SIZE]`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.main import create_app
from cli.stack import EmbeddedPostgres, free_port
from shared.settings import Settings
from store.api_keys import create_key
from store.db import create_pool, migrate

JOURNEYS = 20
REQUESTS = 200
TARGET_P99_MS = 50.0
WORKSPACE = "bench"


def definition(n: int) -> dict[str, Any]:
    def send(template: str) -> dict[str, Any]:
        return {"type": "send_message", "channels": ["email"], "template": template}

    return {
        "name": f"Bench journey {n}",
        "owner": f"owner{n}@acme.test",
        "stage_property": f"stage_{n}",
        "eligible_lists": [f"list_{n}"],
        "start_stage": "intro",
        "enroll_empty_stage": True,
        "stages": [
            {"key": "intro", "value": "intro", "actions": [send("intro")]},
            {"key": "nudge", "value": "nudge", "actions": [send("nudge")]},
            {"key": "engaged", "value": "engaged", "actions": [send("engaged")]},
        ],
        "ends": {"success": {"value": "customer"}, "failure": [{"value": "churned"}]},
        "goal": {
            "criteria": {"event": "purchase", "min_count": 1},
            "target": {"percent": 20},
        },
    }


# Enrollment i belongs to journey i % 20; its fate is decided by (i / 20) % 100.
FILL = [
    """
    INSERT INTO contacts (workspace, id)
    SELECT 'bench', 'c' || i FROM generate_series(1, $1) AS i
    """,
    """
    INSERT INTO list_members (workspace, list, contact_id)
    SELECT 'bench', 'list_' || (i % 20), 'c' || i FROM generate_series(1, $1) AS i
    """,
    """
    CREATE TEMP TABLE fate AS
    SELECT i, 'jrn_bench' || lpad((i % 20)::text, 5, '0') AS journey_id,
           now() - (i % 43200) * interval '1 minute' AS enrolled_at,
           (i / 20) % 100 AS f
    FROM generate_series(1, $1) AS i
    """,
    """
    INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id, journey_version,
                             status, stage, outcome, end_value, marketing_sent, enrolled_at,
                             ended_at)
    SELECT 'bench', journey_id, 'c' || i,
           'enrollment/bench/' || journey_id || '/c' || i, 1,
           CASE WHEN f < 10 THEN 'running' WHEN f < 15 THEN 'in_attribution_window'
                ELSE 'completed' END,
           CASE WHEN f < 4 THEN 'intro' WHEN f < 7 THEN 'nudge' WHEN f < 10 THEN 'engaged'
                WHEN f < 45 THEN 'engaged' WHEN f < 65 THEN 'nudge' WHEN f < 80 THEN 'intro'
                WHEN f < 85 THEN 'nudge' ELSE 'intro' END,
           CASE WHEN f < 10 THEN NULL WHEN f < 45 THEN 'success' WHEN f < 65 THEN 'failure'
                WHEN f < 80 THEN 'goal_met' WHEN f < 85 THEN 'suppressed'
                WHEN f < 95 THEN 'removed_from_list' ELSE 'unenrolled' END,
           CASE WHEN f BETWEEN 10 AND 44 THEN 'customer' WHEN f BETWEEN 45 AND 64 THEN 'churned'
           END,
           true, enrolled_at,
           CASE WHEN f >= 10 THEN enrolled_at + interval '2 days' END
    FROM fate
    """,
    """
    INSERT INTO stage_moves (workspace, journey_id, enrolled_at, at, from_stage, to_node)
    SELECT 'bench', journey_id, enrolled_at, enrolled_at + (m.n || ' hours')::interval,
           m.from_stage, m.to_node
    FROM fate, LATERAL (VALUES
        (0, NULL, 'intro'),
        (1, 'intro', CASE WHEN f BETWEEN 4 AND 6 OR f BETWEEN 45 AND 64 OR f BETWEEN 80 AND 84
                          THEN 'nudge'
                          WHEN f BETWEEN 7 AND 44 THEN 'engaged'
                          WHEN f BETWEEN 65 AND 79 THEN 'exit:goal_met'
                          WHEN f BETWEEN 85 AND 94 THEN 'exit:removed_from_list'
                          WHEN f >= 95 THEN 'exit:unenrolled' END),
        (2, CASE WHEN f BETWEEN 10 AND 44 THEN 'engaged' ELSE 'nudge' END,
            CASE WHEN f BETWEEN 10 AND 44 THEN 'end:success'
                 WHEN f BETWEEN 45 AND 64 THEN 'end:failure:churned'
                 WHEN f BETWEEN 80 AND 84 THEN 'exit:suppressed' END)
    ) AS m(n, from_stage, to_node)
    WHERE m.to_node IS NOT NULL
    """,
    """
    INSERT INTO stage_stats (workspace, journey_id, stage, entered, active)
    SELECT 'bench', journey_id, to_node, count(*), 0 FROM stage_moves
    WHERE workspace = 'bench' AND to_node NOT LIKE '%:%' GROUP BY 2, 3
    """,
    """
    UPDATE stage_stats s SET active = r.n
    FROM (SELECT journey_id, stage, count(*) AS n FROM enrollments
          WHERE workspace = 'bench' AND status = 'running' GROUP BY 1, 2) AS r
    WHERE s.workspace = 'bench' AND s.journey_id = r.journey_id AND s.stage = r.stage
    """,
    """
    INSERT INTO stage_paths (workspace, journey_id, from_stage, to_node, count)
    SELECT 'bench', journey_id, from_stage, to_node, count(*) FROM stage_moves
    WHERE workspace = 'bench' AND from_stage IS NOT NULL GROUP BY 2, 3, 4
    """,
    """
    INSERT INTO conversions (workspace, journey_id, contact_id, goal_epoch, converted_at)
    SELECT 'bench', journey_id, 'c' || i, 1, enrolled_at + interval '1 day' FROM fate
    WHERE f BETWEEN 65 AND 79 OR f BETWEEN 15 AND 24
    """,
    """
    INSERT INTO refusals (workspace, journey_id, contact_id, reason, refused_at)
    SELECT 'bench', journey_id, 'r' || i,
           (ARRAY['not_eligible', 'suppressed', 'goal_already_met',
                  'already_enrolled'])[1 + (i / 2000) % 4],
           enrolled_at
    FROM fate WHERE i % 20 < 1 OR f % 20 = 0
    """,
    "TRUNCATE change_queue",
]


async def fill(url: str, size: int) -> float:
    """Fills the database; returns the seconds it took."""
    started = time.perf_counter()
    pool = await create_pool(url, max_size=2)
    try:
        async with pool.acquire() as conn:
            for n in range(JOURNEYS):
                journey_id = f"jrn_bench{n:05d}"
                body = definition(n)
                await conn.execute(
                    "INSERT INTO journeys (workspace, id, name, owner, status, definition)"
                    " VALUES ($1, $2, $3, $4, 'active', $5)",
                    WORKSPACE,
                    journey_id,
                    body["name"],
                    body["owner"],
                    body,
                )
                await conn.execute(
                    "INSERT INTO journey_versions (workspace, journey_id, version, definition,"
                    " changed_by) VALUES ($1, $2, 1, $3, $4)",
                    WORKSPACE,
                    journey_id,
                    body,
                    body["owner"],
                )
            for statement in FILL:
                args = (size,) if "$1" in statement else ()
                await conn.execute(statement, *args)
        # index-only scans for the cohort reads need the visibility map
        raw = await pool.acquire()
        try:
            await raw.execute("VACUUM ANALYZE")
        finally:
            await pool.release(raw)
    finally:
        await pool.close()
    return time.perf_counter() - started


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _time(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> dict[str, float]:
    for _ in range(10):  # warm-up: connection, plan cache, buffers
        (await http.get(path, params=params)).raise_for_status()
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = await http.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(_percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


async def measure(url: str) -> dict[str, Any]:
    """GET /metrics of one journey through uvicorn, sequentially, REQUESTS times each."""
    pool = await create_pool(url, max_size=10)
    try:
        key = await create_key(pool, WORKSPACE)
        app = create_app(Settings(), pool=pool, temporal=None)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as http:
                path = "/v1/journeys/jrn_bench00007/metrics"
                body = (await http.get(path)).json()
                now = await pool.fetchval("SELECT now()")
                day = {"since": (now - timedelta(days=1)).isoformat(), "until": now.isoformat()}
                month = {"since": (now - timedelta(days=31)).isoformat()}
                found = {
                    "enrolled_in_journey": body["enrolled"],
                    "metrics": await _time(http, path, {}),
                    "metrics_window_1_day": await _time(http, path, day),
                    "metrics_window_30_days": await _time(http, path, month),
                }
                # the web view's map of the same journey: its metrics plus the page
                http.cookies.set("nurture_key", key, path="/ui")
                found["web_map"] = await _time(http, "/ui/journeys/jrn_bench00007/map", {})
                return found
        finally:
            server.should_exit = True
            await serving
    finally:
        await pool.close()


async def run(size: int = 1_000_000) -> dict[str, Any]:
    """Fills a fresh embedded Postgres with `size` enrollments over 20 journeys and times
    /metrics for one journey; p99 without a window is compared with the 50 ms target."""
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", free_port())
        pg.start(Path(tmp) / "postgres.log")
        try:
            await migrate(pg.url)
            fill_seconds = await fill(pg.url, size)
            timings = await measure(pg.url)
        finally:
            pg.stop()
    p99 = timings["metrics"]["p99_ms"]
    return {
        "name": "metrics_scale",
        "enrollments": size,
        "journeys": JOURNEYS,
        "requests": REQUESTS,
        "fill_seconds": round(fill_seconds, 1),
        **timings,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": p99 <= TARGET_P99_MS,
    }


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(json.dumps(asyncio.run(run(size)), indent=2))


if __name__ == "__main__":
    main()
