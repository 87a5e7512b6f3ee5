"""Events with arbitrary (hypothesis-generated) types, targets and
properties, posted to running enrollments whose journey filters and counts events by
property, never crash the workflow: zero workflow task failures in the histories."""

from __future__ import annotations

from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from shared.enrollment import EnrollmentView
from tests.helpers.histories import interrupted
from tests.helpers.journeys import definition
from tests.helpers.relay import activate
from tests.helpers.stack import eventually, running_stack

EXAMPLES = 80
"""The fuzz budget: events generated (fixed seed)."""
CONTACTS = ["ada", "bob", "cyd"]
TYPES = ["form_submitted", "purchase", "page_viewed"]
READ = {"form_submitted", "purchase"}
"""The event types the journey below reads."""

WHERE = {"plan": "gold", "amount": 5, "vip": True, "coupon": None}
FUZZ_JOURNEY = definition(
    [
        {
            "key": "waiting",
            "value": "waiting",
            "actions": [
                {
                    "type": "wait_for_event",
                    "event": {"type": "form_submitted", "target": "demo", "where": WHERE},
                    "timeout": "P1D",
                    "on_event": {"go_to": "engaged"},
                }
            ],
        },
        {"key": "engaged", "value": "engaged", "actions": [{"type": "wait", "duration": "P1D"}]},
    ],
    name="Fuzzed events",
    start_stage="waiting",
    enroll_empty_stage=False,
    goal={
        "criteria": {
            "any": [
                {"event": "purchase", "where": WHERE, "min_count": 1_000_000},
                {"event": "form_submitted", "target": "pricing", "min_count": 1_000_000},
            ]
        }
    },
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(list(WHERE.values())),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {
        "contact_id": st.sampled_from(CONTACTS),
        "type": st.sampled_from(TYPES) | st.text(min_size=1, max_size=30),
        "target": st.none() | st.sampled_from(["demo", "pricing"]) | st.text(max_size=30),
        "properties": st.dictionaries(
            st.sampled_from(list(WHERE)) | st.text(max_size=10), json_values, max_size=5
        ),
    }
)


def _generated() -> list[dict[str, Any]]:
    drawn: list[dict[str, Any]] = []

    @seed(10)
    @settings(max_examples=EXAMPLES, database=None, suppress_health_check=list(HealthCheck))
    @given(event=events)
    def collect(event: dict[str, Any]) -> None:
        drawn.append(event)

    collect()
    return drawn


async def test_fuzzed_events_never_fail_a_workflow_task(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    generated = _generated()
    async with running_stack(pool, dev_env.client, task_queue) as http:
        journey_id = await activate(http, FUZZ_JOURNEY)
        for contact_id in CONTACTS:
            await http.put(f"/v1/contacts/{contact_id}", json={"properties": {}})
            enrolled = await http.post(
                f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": contact_id}
            )
            assert enrolled.status_code == 201, enrolled.text
        last_seq: dict[str, int] = {}
        refused = 0
        for n, event in enumerate(generated):
            if event["target"] == "":
                event["target"] = None
            answer = await http.post("/v1/events", json={**event, "idempotency_key": f"e{n}"})
            if answer.status_code == 422:  # e.g. a type with control characters
                refused += 1
                continue
            assert answer.status_code == 202, answer.text
            if event["type"] in READ:  # routed only to journeys that read the type
                last_seq[event["contact_id"]] = answer.json()["seq"]
        assert refused < len(generated) // 2 and len(last_seq) == len(CONTACTS)

        workflow_ids = [f"enrollment/default/{journey_id}/{c}" for c in CONTACTS]

        async def all_delivered() -> None:
            assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
            for contact_id, workflow_id in zip(CONTACTS, workflow_ids, strict=True):
                view = await dev_env.client.get_workflow_handle(workflow_id).query(
                    "state", result_type=EnrollmentView
                )
                assert view.contact_seq >= last_seq.get(contact_id, 0)

        await eventually(all_delivered, timeout=60)

    failures = await interrupted(dev_env.client, workflow_ids)
    assert failures["workflow_task_failures"] == 0, failures
    for workflow_id in workflow_ids:
        description = await dev_env.client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
