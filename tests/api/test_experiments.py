"""An A/B test over the API on the real dev server: a split whose winner the journey's goal
decides. No winner while an arm has fewer than `min_per_variant` contacts, none while the
arms are level, one once a variant is ahead at the confidence, recorded with its figures;
afterwards new entrants take the winner's path."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from tests.helpers.journeys import definition, split, stage, wait_for_event
from tests.helpers.lifecycle import create
from tests.helpers.stack import eventually, running_stack

MIN = 10
TEST = definition(
    [
        stage(
            "welcome",
            split(
                "subject",
                ("A", 50, "path_a"),
                ("B", 50, "path_b"),
                winner={"auto": True, "min_per_variant": MIN, "confidence": 0.95},
            ),
        ),
        stage("path_a", wait_for_event("never", "P30D")),
        stage("path_b", wait_for_event("never", "P30D")),
    ],
    goal={"criteria": {"event": "purchase"}, "attribution_window": "P1D"},
    enroll_empty_stage=False,
)


async def _enroll(
    http: httpx.AsyncClient, pool: asyncpg.Pool, journey_id: str, contacts: list[str]
) -> dict[str, str]:
    """Enrolls the contacts; their variants once drawn."""
    for contact in contacts:
        assert (
            await http.put(f"/v1/contacts/{contact}", json={"properties": {}})
        ).status_code == 200
        got = await http.post(
            f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact}
        )
        assert got.status_code == 201, got.text
    drawn: dict[str, str] = {}

    async def all_drawn() -> None:
        rows = await pool.fetch(
            "SELECT workflow_id, variant FROM experiment_assignments WHERE journey_id = $1",
            journey_id,
        )
        drawn.clear()
        drawn.update({r["workflow_id"].rsplit("/", 1)[1]: r["variant"] for r in rows})
        assert set(contacts) <= set(drawn)

    await eventually(all_drawn)
    return {c: drawn[c] for c in contacts}


async def _experiment(http: httpx.AsyncClient, journey_id: str) -> dict[str, Any]:
    metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
    [found] = metrics["experiments"]
    return found  # type: ignore[no-any-return]


async def _active(http: httpx.AsyncClient, journey: dict[str, Any]) -> str:
    journey_id = await create(http, journey)
    activated = await http.post(f"/v1/journeys/{journey_id}/activate", params={"force": "true"})
    assert activated.status_code == 200, activated.text
    return journey_id


async def _converted(http: httpx.AsyncClient, journey_id: str, expected: int) -> None:
    figures = await _experiment(http, journey_id)
    assert sum(v["converted"] for v in figures["variants"]) == expected, figures


async def _buy(http: httpx.AsyncClient, contacts: list[str]) -> None:
    events = [{"contact_id": c, "type": "purchase"} for c in contacts]
    assert (await http.post("/v1/events", json={"events": events})).status_code == 202


async def test_the_winner_is_declared_at_the_confidence_after_min_per_variant_and_then_taken(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        # 1. too few: every A converts, no B does, but twelve contacts cannot put MIN in
        # both arms
        small = await _active(http, {**TEST, "stage_property": "stage_small"})
        first = await _enroll(http, pool, small, [f"c{i}" for i in range(12)])
        await _buy(http, [c for c, v in first.items() if v == "A"])
        await eventually(lambda: _converted(http, small, sum(v == "A" for v in first.values())))
        figures = await _experiment(http, small)
        assert figures["winner"] is None and figures["declared"] is None, figures
        # 2. enough contacts in both arms, but level (nobody converted)
        journey_id = await _active(http, {**TEST, "stage_property": "stage_big"})
        drawn = await _enroll(http, pool, journey_id, [f"d{i}" for i in range(48)])
        arms = {v: sum(1 for x in drawn.values() if x == v) for v in ("A", "B")}
        assert min(arms.values()) >= MIN, arms  # a 50/50 draw of 48: fails ~1 in 100,000
        figures = await _experiment(http, journey_id)
        assert figures["winner"] is None and figures["declared"] is None, figures
        # 3. A pulls ahead (every A converts): declared, with the figures of that moment
        await _buy(http, [c for c, v in drawn.items() if v == "A"])

        async def declared() -> None:
            assert (await _experiment(http, journey_id))["declared"] is not None

        await eventually(declared)
        figures = await _experiment(http, journey_id)
        assert figures["declared"]["variant"] == "A" and figures["winner"] == "A", figures
        recorded = figures["declared"]["figures"]
        assert recorded["A"]["entered"] == arms["A"] and recorded["B"]["converted"] == 0
        # no holdout: A, the first variant, is the baseline B is measured against
        assert figures["baseline"] == "A"
        b = next(v for v in figures["variants"] if v["name"] == "B")
        assert b["probability_better"] <= 0.05 and b["lift"] < 0, b
        versions = (await http.get(f"/v1/journeys/{journey_id}/versions")).json()
        assert versions[0]["winners"][0]["split"] == "subject", versions
        # 4. new entrants take the winner's path; those assigned before keep theirs
        later = await _enroll(http, pool, journey_id, [f"e{i}" for i in range(8)])
        assert set(later.values()) == {"A"}, later
        steps = (await http.get(f"/v1/journeys/{journey_id}/enrollments/e0")).json()["steps"]
        split_step = next(s for s in steps if s["action"] == "split")
        assert split_step["detail"]["how"] == "winner"
