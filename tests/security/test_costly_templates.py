"""Templates that cannot stall anything (docs/reliability.md, "Security"): a template
that computed for seconds held the API's event loop (every workspace waited) or the
worker's (every journey waited), and its send was retried forever. Now renders run in
child processes with a time and memory limit: the costly template fails
`template_too_costly` (refused at save time, failed for good at send time) while other
requests and other journeys go on."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import Outcome
from shared.settings import Settings
from store.api_keys import create_key
from tests.helpers.channels import put_template, smtp_sink
from tests.helpers.enrollments import enroll
from tests.helpers.journeys import definition, go_to, journey, send, stage
from tests.helpers.stack import running_stack
from workers.worker import build_worker

SLOW = "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}done"
"""About 80 million loop steps: many seconds of CPU, no output, no refused construct."""


async def test_a_costly_template_is_refused_at_save_while_another_workspace_is_served(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    async with running_stack(pool, dev_env.client, task_queue, render_seconds=1.5) as http:
        other_key = await create_key(pool, "other-workspace")
        async with httpx.AsyncClient(
            base_url=str(http.base_url), headers={"Authorization": f"Bearer {other_key}"}
        ) as other:
            costly = asyncio.create_task(
                http.put("/v1/templates/slow", json={"subject": "Hi", "text": SLOW})
            )
            await asyncio.sleep(0.3)  # the render has begun
            answered = await other.get("/v1/journeys")
            assert answered.status_code == 200
            assert not costly.done()  # served while the render still ran
            refused = await costly
        assert refused.status_code == 422, refused.text
        assert refused.json()["reason"] == "template_too_costly"
        assert refused.json()["problems"][0]["path"] == "text"
        assert (await http.get("/v1/templates/slow")).status_code == 404

        for source in ('{{ "a" * 10**9 }}', "{{ 2 ** 9999999 }}", "{{ 'x'|center(10**9) }}"):
            put = await http.put("/v1/templates/big", json={"text": source})
            assert put.json().get("reason") == "template_too_costly", (source, put.text)

        # a task title that costs too much is a problem of the journey
        task = {"type": "create_task", "title": SLOW, "assign_to": "owner"}
        flow = definition([stage("s", task, go_to("success"))])
        created = await http.post("/v1/journeys", json=flow)
        assert created.status_code == 422, created.text
        problems = created.json()["problems"]
        assert [(p["path"], p["reason"]) for p in problems] == [
            ("stages[s].actions[0].title", "template_too_costly")
        ]


async def test_a_costly_template_fails_its_send_for_good_and_other_journeys_go_on(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await put_template(pool, "slow", subject="Hi", text=SLOW)  # saved before the limits
    await put_template(pool, "fine", subject="Hi", text="Hello {{ contact.name }}")
    slow_flow = journey([stage("s", send("slow", "email"), go_to("success"))])
    fine_flow = journey([stage("s", send("fine", "email"), go_to("success"))])
    props = {"email": "ada@example.test", "name": "Ada"}
    async with smtp_sink(pool) as sink:
        settings = Settings(**{**sink.model_dump(), "render_seconds": 1.5})
        async with build_worker(ts_env.client, pool, task_queue, settings, sender=True):
            slow = await enroll(ts_env.client, pool, task_queue, slow_flow, properties=props)
            fine = await enroll(
                ts_env.client, pool, task_queue, fine_flow, contact_id="bob", properties=props
            )
            fine_view = await fine.result()
            slow_view = await slow.result()
    assert fine_view.outcome is Outcome.SUCCESS and fine_view.failed_sends == 0
    assert slow_view.outcome is Outcome.SUCCESS and slow_view.failed_sends == 1
    failed = next(s for s in await slow.steps() if s["action"] == "send_message")
    assert failed["detail"]["delivery"]["reason"] == "template_too_costly", failed
    attempts = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE workflow_id = $1", slow.workflow_id
    )
    assert attempts == 1  # decided once, never retried
