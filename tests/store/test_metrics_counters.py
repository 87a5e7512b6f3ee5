"""The counters of 006_metrics.sql stay equal to a recount of the rows they count, through
bulk and single inserts, updates, deletes and no-op conflicts (real Postgres)."""

from __future__ import annotations

import asyncpg

RECOUNT = """
SELECT workspace, journey_id, key, count(*) AS n
FROM enrollments, unnest(nurture_enrollment_keys(status, outcome, goal_epoch, entry)) AS key
GROUP BY 1, 2, 3
UNION ALL
SELECT workspace, journey_id, 'refused:' || reason, count(*) FROM refusals GROUP BY 1, 2, 3
UNION ALL
SELECT workspace, journey_id, 'epoch:' || goal_epoch || ':conversions', count(*)
FROM conversions GROUP BY 1, 2, 3
"""


async def _counters(pool: asyncpg.Pool) -> dict[tuple[str, str, str], int]:
    rows = await pool.fetch("SELECT workspace, journey_id, key, n FROM journey_counters")
    return {(r[0], r[1], r[2]): r[3] for r in rows if r[3]}


async def _recount(pool: asyncpg.Pool) -> dict[tuple[str, str, str], int]:
    return {(r[0], r[1], r[2]): r[3] for r in await pool.fetch(RECOUNT)}


async def test_counters_follow_every_write(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,
                                 journey_version, goal_epoch)
        SELECT 'ws', 'j' || (i % 3), 'c' || i, 'wf' || i, 1, 1 + i % 2
        FROM generate_series(1, 500) AS i
        """
    )
    await pool.execute(
        "INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,"
        " journey_version) VALUES ('ws', 'j0', 'c1', 'again', 1) ON CONFLICT DO NOTHING"
    )
    await pool.execute(
        "UPDATE enrollments SET outcome = 'success', status = 'in_attribution_window'"
        " WHERE contact_id LIKE 'c1%'"
    )
    await pool.execute("UPDATE enrollments SET stage = 'intro'")  # counts nothing
    await pool.execute(
        "UPDATE enrollments SET status = 'completed' WHERE status = 'in_attribution_window'"
        " AND contact_id LIKE 'c12%'"
    )
    await pool.execute("DELETE FROM enrollments WHERE contact_id LIKE 'c4%'")
    await pool.execute(
        "INSERT INTO refusals (workspace, journey_id, contact_id, reason)"
        " SELECT 'ws', 'j1', 'r' || i, (ARRAY['not_eligible', 'suppressed'])[1 + i % 2]"
        " FROM generate_series(1, 7) AS i"
    )
    for _ in range(2):  # the second time conflicts: nothing more is counted
        await pool.execute(
            "INSERT INTO conversions (workspace, journey_id, contact_id, goal_epoch,"
            " converted_at) SELECT 'ws', 'j2', 'c' || i, 1, now()"
            " FROM generate_series(1, 9) AS i ON CONFLICT DO NOTHING"
        )
    counters = await _counters(pool)
    assert counters == await _recount(pool)
    assert counters[("ws", "j2", "epoch:1:conversions")] == 9
    assert counters[("ws", "j1", "refused:not_eligible")] == 3
    assert counters[("ws", "j1", "refused:suppressed")] == 4


async def test_list_and_contact_counters(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO contacts (workspace, id) SELECT 'ws', 'c' || i FROM generate_series(1, 40) i"
    )
    await pool.execute(
        "INSERT INTO contacts (workspace, id) VALUES ('ws', 'c1') ON CONFLICT DO NOTHING"
    )
    await pool.execute(
        "INSERT INTO list_members (workspace, list, contact_id)"
        " SELECT 'ws', 'trial', 'c' || i FROM generate_series(1, 30) i"
    )
    await pool.execute(
        "INSERT INTO list_members (workspace, list, contact_id) VALUES ('ws', 'trial', 'c1')"
        " ON CONFLICT DO NOTHING"
    )
    await pool.execute("DELETE FROM list_members WHERE contact_id IN ('c1', 'c2')")
    assert await pool.fetchval("SELECT contacts FROM workspace_counters") == 40
    assert await pool.fetchval("SELECT members FROM list_counters WHERE list = 'trial'") == 28
