"""`nurture journeys`: journey life cycle commands over the HTTP API.

`nurture journeys activate JOURNEY_ID` activates the journey and follows its activation
(`GET /v1/journeys/{id}/activation`) with a progress bar until it has handled every
eligible contact, or stopped. Interrupting the command (Ctrl-C) leaves the activation
running: it is a durable workflow, not this process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from shared.settings import Settings

app = typer.Typer(
    help="Journeys: list them, show one's map, activate and follow the activation.",
    no_args_is_help=True,
)
console = Console()

POLL_SECONDS = 0.5


class ApiFailure(Exception):
    """The API answered with an error: its reason and sentence."""


def _failure(response: httpx.Response) -> ApiFailure:
    try:
        body = response.json()
        return ApiFailure(f"{response.status_code} {body.get('reason')}: {body.get('message')}")
    except ValueError:
        return ApiFailure(f"{response.status_code}: {response.text[:200]}")


def _counts(progress: dict[str, Any]) -> str:
    refused = ", ".join(f"{k} {v}" for k, v in sorted(progress["refused"].items())) or "none"
    return f"started {progress['started']} · refused: {refused}"


async def follow_activation(
    http: httpx.AsyncClient,
    journey_id: str,
    out: Console,
    wait: bool = True,
    poll_seconds: float = POLL_SECONDS,
    force: bool = False,
) -> dict[str, Any] | None:
    """Activates the journey and, with `wait`, shows its activation's progress until it
    ends; returns the last progress (None when the journey enrolls nobody in bulk).
    Raises ApiFailure when the API refuses."""
    params = {"force": "true"} if force else {}
    activated = await http.post(f"/v1/journeys/{journey_id}/activate", params=params)
    if activated.status_code != 200:
        raise _failure(activated)
    body = activated.json()
    progress: dict[str, Any] | None = body.get("activation")
    if progress is None:
        out.print(
            f"[green]{body['name']}[/] is active; it is entered by trigger, nobody to enroll."
        )
        return None
    out.print(
        f"Activating [bold]{body['name']}[/] v{progress['journey_version']} "
        f"(activation #{progress['activation']}, workflow {progress['workflow_id']})"
    )
    if not wait:
        return progress
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("eligible handled", total=None, counts="")
        while True:
            bar.update(
                task,
                total=progress["eligible"],
                completed=progress["processed"],
                counts=_counts(progress),
            )
            if progress["status"] != "running":
                break
            await asyncio.sleep(poll_seconds)
            response = await http.get(f"/v1/journeys/{journey_id}/activation")
            if response.status_code != 200:
                raise _failure(response)
            progress = response.json()
    stopped = f" ({progress['stop_reason']})" if progress["stop_reason"] else ""
    colour = "green" if progress["status"] == "completed" else "yellow"
    out.print(
        f"[{colour}]{progress['status']}{stopped}[/]: {progress['processed']} of "
        f"{progress['eligible']} eligible handled, {_counts(progress)}"
    )
    return progress


def _api_url(settings: Settings) -> str:
    return os.environ.get("NURTURE_API_URL") or f"http://{settings.api_host}:{settings.api_port}"


@app.command("activate")
def activate(
    journey_id: str = typer.Argument(..., help="The journey's id (jrn_...)."),
    key: str = typer.Option(
        ..., "--key", envvar="NURTURE_API_KEY", help="An API key of the journey's workspace."
    ),
    api_url: str | None = typer.Option(
        None, "--api-url", help="The API (default NURTURE_API_URL, else the local API)."
    ),
    wait: bool = typer.Option(True, help="Follow the activation with a progress bar."),
    force: bool = typer.Option(
        False, help="Activate even when a template is missing or a channel has no provider."
    ),
) -> None:
    """Activate a journey and show its activation's progress: the eligible contacts it has
    handled, the enrollments it started and the refusals by reason."""

    async def run() -> dict[str, Any] | None:
        async with httpx.AsyncClient(
            base_url=api_url or _api_url(Settings.with_dev_stack()),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as http:
            return await follow_activation(http, journey_id, console, wait, force=force)

    try:
        progress = asyncio.run(run())
    except ApiFailure as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        console.print(f"[red]The API did not answer: {exc}[/]")
        raise typer.Exit(1) from exc
    if progress is not None and progress["status"] == "stopped":
        raise typer.Exit(3)


def _client(key: str, api_url: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api_url or _api_url(Settings.with_dev_stack()),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _run(job: Any) -> Any:
    try:
        return asyncio.run(job)
    except ApiFailure as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        console.print(f"[red]The API did not answer: {exc}[/]")
        raise typer.Exit(1) from exc


KEY = typer.Option(..., "--key", envvar="NURTURE_API_KEY", help="An API key of the workspace.")
API_URL = typer.Option(None, "--api-url", help="The API (default NURTURE_API_URL, else local).")


async def journey_table(http: httpx.AsyncClient) -> Table:
    """Every journey with status, version, enrolled, active and its goal's progress."""
    table = Table("journey", "status", "version", "enrolled", "active", "goal")
    cursor: str | None = None
    while True:
        page = await http.get("/v1/journeys", params={"cursor": cursor} if cursor else {})
        if page.status_code != 200:
            raise _failure(page)
        for j in page.json()["items"]:
            metrics = await http.get(f"/v1/journeys/{j['id']}/metrics")
            if metrics.status_code != 200:
                raise _failure(metrics)
            m = metrics.json()
            goal = m.get("goal")
            words = f"{goal['conversions']} ({goal['conversion_rate']}%)" if goal else "-"
            table.add_row(
                f"{j['name']}\n{j['id']}", j["status"], f"v{j['version']}", str(m["enrolled"]),
                str(m["active"]), words,
            )  # fmt: skip
        cursor = page.json().get("next_cursor")
        if not cursor:
            return table


async def journey_tree(http: httpx.AsyncClient, journey_id: str) -> Tree:
    """The journey's map as a tree: its stages in order, every path out with its count and
    % of those who left, branch paths and split variants, the ends and exits."""
    found = await http.get(f"/v1/journeys/{journey_id}")
    metrics = await http.get(f"/v1/journeys/{journey_id}/metrics")
    for answer in (found, metrics):
        if answer.status_code != 200:
            raise _failure(answer)
    j, m = found.json(), metrics.json()
    tree = Tree(f"[bold]{j['name']}[/] v{j['version']} · {j['status']} · {m['enrolled']} enrolled")
    goal = m.get("goal")
    if goal:
        met = {True: " · target met", False: " · target not met"}.get(goal.get("target_met"), "")
        tree.add(f"goal: {goal['conversions']} conversions ({goal['conversion_rate']}%){met}")
    for stage in m["stages"]:
        branch = tree.add(
            f"[bold]{stage['key']}[/]  {stage['entered']} entered · {stage['active']} here now"
        )
        for path in stage["paths"]:
            branch.add(f"→ {path['to']}  {path['count']} ({path['percent']}%)")
        for decision in stage.get("decisions", []):
            branch.add(f"↳ {decision['node']}  {decision['count']} ({decision['percent']}%)")
    for node, share in {**m["ends"], **m["exits"]}.items():
        tree.add(f"{node}  {share['count']} ({share['percent']}% of enrolled)")
    return tree


@app.command("list")
def list_journeys(key: str = KEY, api_url: str | None = API_URL) -> None:
    """Every journey of the workspace with its numbers."""

    async def run() -> Table:
        async with _client(key, api_url) as http:
            return await journey_table(http)

    console.print(_run(run()))


@app.command("show")
def show_journey(
    journey_id: str = typer.Argument(..., help="The journey's id (jrn_...)."),
    key: str = KEY,
    api_url: str | None = API_URL,
) -> None:
    """The journey's map as a tree, with counts and percentages."""

    async def run() -> Tree:
        async with _client(key, api_url) as http:
            return await journey_tree(http, journey_id)

    console.print(_run(run()))
