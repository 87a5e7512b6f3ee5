"""The API's documentation: `/docs` renders from the app's own assets (no CDN), every
operation has a summary, and the bodies people write by hand have examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from api.main import create_app
from api.openapi import JOURNEY_EXAMPLE
from shared.validation import validate_journey

ROOT = Path(__file__).resolve().parents[2]


async def _client() -> httpx.AsyncClient:
    # no lifespan: the pages need neither Postgres nor Temporal
    transport = httpx.ASGITransport(app=create_app())
    return httpx.AsyncClient(transport=transport, base_url="http://nurture.test")


async def test_docs_load_every_asset_from_the_app() -> None:
    async with await _client() as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assets += re.findall(r"""url: ?['"]([^'"]+)['"]""", page.text)
        assert len(assets) >= 4, page.text
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            got = await http.get(asset)
            assert got.status_code == 200, asset
            assert len(got.content) > 100, asset
        assert not re.search(r"https?://", page.text.replace("http://nurture.test", ""))
        assert (await http.get("/redoc")).status_code == 404


async def test_every_operation_has_a_summary_and_the_hand_written_bodies_examples() -> None:
    async with await _client() as http:
        spec = (await http.get("/openapi.json")).json()
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert len(operations) >= 36
    generated = {op["operationId"].replace("_", " ").title() for op in operations}
    for op in operations:
        assert op.get("summary") and op["summary"] not in generated, op["operationId"]
    ops = {op["operationId"]: op for op in operations}
    body = ops["create_journey"]["requestBody"]["content"]["application/json"]
    assert body["example"] == JOURNEY_EXAMPLE
    one, batch = ops["post_events"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert one["examples"][0]["type"] == "form_submitted"
    assert len(batch["examples"][0]["events"]) == 2
    assert spec["components"]["schemas"]["EnrollRequest"]["examples"] == [{"contact_id": "ada"}]


def test_the_journey_example_is_the_shipped_example_and_valid() -> None:
    shipped = json.loads((ROOT / "examples" / "trial_to_paid.json").read_text())
    assert shipped == JOURNEY_EXAMPLE
    result = validate_journey(JOURNEY_EXAMPLE)
    assert result.journey is not None and result.problems == []
