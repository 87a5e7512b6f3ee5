"""`nurture journeys activate` against the real API and worker: it activates the journey
and follows the activation to its end with a progress bar."""

from __future__ import annotations

import io

import asyncpg
from rich.console import Console
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.journeys import follow_activation
from cli.main import app
from tests.helpers.lifecycle import create, seed, waiting
from tests.helpers.stack import eventually, running_stack


async def test_activate_shows_the_activation_to_its_end(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await seed(pool, [f"c{i:03d}" for i in range(120)])
    out = Console(file=io.StringIO(), width=160, force_terminal=False)
    async with running_stack(
        pool, dev_env.client, task_queue, activation_rate=200, activation_page_size=50
    ) as http:
        journey_id = await create(http, waiting("P1D"))
        progress = await follow_activation(http, journey_id, out, poll_seconds=0.1, force=True)
        again = await follow_activation(http, journey_id, out, poll_seconds=0.1, force=True)
    assert progress is not None and again is not None
    assert (progress["status"], progress["started"], progress["refused"]) == ("completed", 120, {})
    assert again["activation"] == progress["activation"]
    shown = out.file.getvalue()  # type: ignore[attr-defined]
    assert "eligible handled" in shown and "120/120" in shown
    assert "completed: 120 of 120 eligible handled, started 120 · refused: none" in shown


def test_activate_says_why_the_api_refused() -> None:
    result = CliRunner().invoke(
        app,
        ["journeys", "activate", "jrn_x", "--key", "nope", "--api-url", "http://127.0.0.1:9"],
    )
    assert result.exit_code == 1
    assert "The API did not answer" in result.output


async def test_show_prints_the_map_as_a_tree_and_list_the_journeys(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    from cli.journeys import journey_table, journey_tree
    from tests.web.test_web_view import JOURNEY, PATHS, _enroll

    out = Console(file=io.StringIO(), width=160, force_terminal=False)
    async with running_stack(pool, dev_env.client, task_queue) as http:
        journey_id = await create(http, JOURNEY)
        assert (await http.post(f"/v1/journeys/{journey_id}/activate")).status_code == 200
        for contact, path in PATHS.items():
            await _enroll(http, journey_id, contact, path)

        async def settled() -> None:
            metrics = (await http.get(f"/v1/journeys/{journey_id}/metrics")).json()
            assert metrics["stages"][0]["left"] == len(PATHS), metrics["stages"]

        await eventually(settled)
        out.print(await journey_tree(http, journey_id))
        out.print(await journey_table(http))
    shown = out.file.getvalue()  # type: ignore[attr-defined]
    assert "→ b  3 (50.0%)" in shown and "→ end:success  2 (33.33%)" in shown
    assert "↳ branch:route/y  2 (33.33%)" in shown
    assert "end:failure:churned  1 (16.67% of enrolled)" in shown
    assert journey_id in shown and "Paths we know" in shown
