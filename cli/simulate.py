"""`nurture simulate JOURNEY --contact FILE --timeline FILE`: a journey (an id, or a JSON
file with a definition not yet saved) simulated for one contact over a timeline, through
the API's `POST …/simulate` (docs/testing.md). Prints the path as a readable timeline, or
the API's JSON with `--json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cli.journeys import API_URL, KEY, _client, _failure, _run

console = Console()


def _load(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        console.print(f"[red]{what} {path}: {exc}[/]")
        raise typer.Exit(2) from exc


async def simulate_over(
    http: httpx.AsyncClient, journey: str | dict[str, Any], body: dict[str, Any]
) -> Any:
    """The simulation of `journey` (an id, or a definition)."""
    if isinstance(journey, dict):
        answer = await http.post("/v1/journeys/simulate", json={"journey": journey, **body})
    else:
        answer = await http.post(f"/v1/journeys/{journey}/simulate", json=body)
    if answer.status_code != 200:
        raise _failure(answer)
    return answer.json()


def timeline_table(found: dict[str, Any]) -> Table:
    """Every step at its simulated offset, with the messages it would have sent."""
    table = Table("when", "stage", "action", "result", "what")
    said = {m["offset"]: m for m in found["messages"]}
    for step in found["steps"]:
        what = step["detail"].get("reason") or ""
        if step["action"] == "send_message" and (m := said.get(step["offset"])):
            what = m["content"].get("subject") or m["content"].get("text") or m.get("template")
        elif step["action"] in ("branch", "split"):
            what = step["detail"].get("path") or step["detail"].get("variant") or ""
        table.add_row(step["offset"], step["stage"] or "", step["action"], step["result"], what)
    return table


def simulate(
    journey: str = typer.Argument(..., help="A journey id, or a JSON file with a definition."),
    contact: Path | None = typer.Option(None, "--contact", help="JSON: id, properties, lists."),
    timeline: Path | None = typer.Option(None, "--timeline", help="JSON: a list of moments."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's answer as JSON."),
    key: str = KEY,
    api_url: str | None = API_URL,
) -> None:
    """Simulate a journey for one contact over a timeline: nothing is sent or stored."""
    body: dict[str, Any] = {}
    if (found_contact := _load(contact, "contact")) is not None:
        body["contact"] = found_contact
    if (found_timeline := _load(timeline, "timeline")) is not None:
        body["timeline"] = found_timeline

    path = Path(journey)
    definition = _load(path, "journey") if path.suffix == ".json" or path.exists() else None

    async def run() -> Any:
        async with _client(key, api_url) as http:
            return await simulate_over(http, definition or journey, body)

    found = _run(run())
    if as_json:
        console.print_json(json.dumps(found))
        return
    console.print(timeline_table(found))
    state = "finished" if found["finished"] else "still running at the horizon"
    conversion = "counts as a conversion" if found["converted"] else "no conversion"
    console.print(f"outcome: [bold]{found['outcome']}[/] ({state}) · {conversion}")
