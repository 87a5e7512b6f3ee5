"""The pytest example of docs/testing.md runs, as written, against the real API."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.testing import WorkflowEnvironment

from tests.helpers.stack import running_stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _example() -> str:
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    return code


async def test_the_documented_example_passes(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue) as http:
        key = http.headers["Authorization"].removeprefix("Bearer ")
        templates = {"subject": "Welcome", "text": "Hi"}
        assert (await http.put("/v1/templates/welcome", json=templates)).status_code == 200
        os.environ["NURTURE_API_URL"], os.environ["NURTURE_API_KEY"] = str(http.base_url), key
        found: dict[str, Any] = {}
        exec(compile(_example(), str(DOC), "exec"), found)
        tests = [v for k, v in found.items() if k.startswith("test_") and callable(v)]
        assert len(tests) == 1
        # the example's client is sync: run it off the loop that serves the API
        await asyncio.to_thread(tests[0])
