"""Activation as a durable batch: a worker killed in the middle of an
activation (SIGKILL, no goodbye) and another started in its place; every eligible contact
ends up enrolled exactly once, and the progress adds up, in the API and in Temporal. A
chunk enrolled at once gives each contact what `enroll` would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from services.enrolling import enroll_many
from shared.activation import BatchProgress, BatchStatus
from shared.enrollment import workflow_id
from shared.entry import Enrolled, JourneyRecord, Refused
from shared.settings import Settings
from tests.helpers.journeys import journey, stage, wait
from tests.helpers.lifecycle import SEED_MEMBERS, activation_done, create, seed, waiting
from tests.helpers.stack import eventually, running_stack
from workers.worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
METADATA_QUERY = "__temporal_workflow_metadata"


def worker_process(
    env: WorkflowEnvironment, database_url: str, task_queue: str
) -> subprocess.Popen[bytes]:
    """`nurture worker` as its own process, so that the test can kill it outright."""
    settings = {
        "NURTURE_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_TASK_QUEUE": task_queue,
    }
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=ROOT,
        env={**environ, **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def shown_in_temporal(client: Client, workflow_id: str) -> tuple[BatchProgress, str]:
    """An activation's progress as Temporal shows it: the workflow's `progress` query and
    its current details (the UI's "Current Details", read as the UI does, by query)."""
    handle = client.get_workflow_handle(workflow_id)
    progress = await handle.query("progress", result_type=BatchProgress)
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return progress, metadata.current_details


async def test_a_worker_killed_mid_activation_is_replaced_and_each_contact_is_enrolled_once(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, database_url: str, task_queue: str
) -> None:
    contacts = [f"c{i:04d}" for i in range(300)]
    await seed(pool, contacts)
    await seed(pool, ["rival"])
    await pool.execute(SEED_MEMBERS, "blocked", ["rival"])
    async with running_stack(
        pool,
        dev_env.client,
        task_queue,
        worker=False,
        activation_rate=60,
        activation_page_size=100,
        activation_heartbeat_seconds=3,
    ) as http:
        journey_id = await create(http, waiting("P1D", suppression_lists=["blocked"]))
        first = worker_process(dev_env, database_url, task_queue)
        try:
            activated = await http.post(
                f"/v1/journeys/{journey_id}/activate", params={"force": "true"}
            )
            assert activated.status_code == 200, activated.text

            async def under_way() -> None:
                progress = (await http.get(f"/v1/journeys/{journey_id}/activation")).json()
                assert progress["eligible"] == 301 and progress["started"] >= 50, progress

            await eventually(under_way, timeout=60)
            activation = await http.get(f"/v1/journeys/{journey_id}/activation")
            workflow_id = activation.json()["workflow_id"]

            async def visible_in_temporal() -> None:
                # the batch workflow's `progress` query and its current details (what the
                # Temporal UI shows), as of the last page that ended
                progress, details = await shown_in_temporal(dev_env.client, workflow_id)
                assert progress.total == 301 and progress.processed >= 100, progress
                line = f"{progress.processed}/301 eligible handled · started {progress.done}"
                assert line in details, details

            await eventually(visible_in_temporal, timeout=30)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            await asyncio.to_thread(first.wait)
        killed_at = (await http.get(f"/v1/journeys/{journey_id}/activation")).json()
        assert killed_at["status"] == "running" and killed_at["processed"] < 301, killed_at

        async with build_worker(dev_env.client, pool, task_queue):
            progress = await activation_done(http, journey_id, timeout=90)
            # Postgres has the last word first; the workflow ends once its page returns
            handle = dev_env.client.get_workflow_handle(workflow_id)
            await asyncio.wait_for(handle.result(), timeout=60)
            shown, details = await shown_in_temporal(dev_env.client, workflow_id)

    assert progress["status"] == "completed", progress
    assert (progress["eligible"], progress["processed"]) == (301, 301)
    assert (progress["started"], progress["refused"]) == (300, {"suppressed": 1})
    assert (shown.status, shown.total, shown.processed) == (BatchStatus.COMPLETED, 301, 301)
    assert (shown.done, shown.skipped) == (300, {"suppressed": 1})
    assert "301/301 eligible handled · started 300 · refused: suppressed 1" in details, details
    assert "status: completed" in details, details
    rows = await pool.fetch("SELECT contact_id FROM enrollments WHERE journey_id = $1", journey_id)
    assert sorted(r["contact_id"] for r in rows) == contacts
    # every enrollment row has its one workflow (none orphaned, none started twice)
    query = f"JourneyId = '{journey_id}' AND WorkflowType = 'EnrollmentWorkflow'"

    async def all_counted() -> None:
        assert (await dev_env.client.count_workflows(query)).count == 300

    await eventually(all_counted)


async def test_a_chunk_enrolled_at_once_records_each_refusal_and_starts_each_enrollment_once(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    await seed(pool, ["ada", "bob", "eve", "lost", "old", "zed"])
    await pool.execute(SEED_MEMBERS, "blocked", ["eve"])
    await pool.execute("DELETE FROM list_members WHERE contact_id = 'zed'")
    record = JourneyRecord(
        workspace="default",
        id="jrn_chunk",
        version=1,
        status="active",
        goal_epoch=1,
        journey=journey(
            [stage("main", wait("P1D"))], eligible_lists=["trial"], suppression_lists=["blocked"]
        ),
    )
    # `old` was enrolled long ago (its row and its log); `lost`'s row was inserted by a
    # process that died before it started the workflow: the retry starts it
    for contact in ("old", "lost"):
        await pool.execute(
            "INSERT INTO enrollments (workspace, journey_id, contact_id, workflow_id,"
            " journey_version) VALUES ('default', $1, $2, $3, 1)",
            record.id,
            contact,
            workflow_id("default", record.id, contact),
        )
    await pool.execute(
        "INSERT INTO enrollment_steps (workflow_id, step_seq, workspace, journey_id, contact_id,"
        " at, stage, action, result) VALUES ($1, 1, 'default', $2, 'old', now(), 'main',"
        " 'enter_stage', 'entered')",
        workflow_id("default", record.id, "old"),
        record.id,
    )
    settings = Settings(task_queue=task_queue)
    chunk = ["ada", "bob", "eve", "gone", "lost", "old", "zed"]

    first = await enroll_many(pool, dev_env.client, settings, record, chunk, concurrency=2)
    assert list(first) == chunk
    assert first["ada"] == Enrolled(workflow_id("default", record.id, "ada"))
    assert first["bob"] == Enrolled(workflow_id("default", record.id, "bob"))
    assert first["lost"] == Enrolled(workflow_id("default", record.id, "lost"))
    reasons = {c: r.reason for c, r in first.items() if isinstance(r, Refused)}
    assert reasons == {
        "eve": "suppressed",
        "gone": "contact_not_found",
        "old": "already_enrolled",
        "zed": "not_eligible",
    }
    for contact in ("ada", "bob", "lost"):  # started, with the contact as the snapshot saw it
        handle = dev_env.client.get_workflow_handle(workflow_id("default", record.id, contact))
        assert (await handle.describe()).workflow_type == "EnrollmentWorkflow"

    again = await enroll_many(pool, dev_env.client, settings, record, chunk, concurrency=2)
    assert {c: r.reason for c, r in again.items() if isinstance(r, Refused)} == {
        **reasons,
        "ada": "already_enrolled",
        "bob": "already_enrolled",
        "lost": "already_enrolled",
    }
    rows = await pool.fetch(
        "SELECT contact_id, reason, explanation FROM refusals WHERE journey_id = $1"
        " ORDER BY refused_at, contact_id",
        record.id,
    )
    recorded = [(r["contact_id"], r["reason"]) for r in rows]
    # as `enroll`: every refusal recorded but a contact that does not exist
    assert sorted(recorded) == sorted(
        [(c, r) for c, r in reasons.items() if c != "gone"] * 2
        + [("ada", "already_enrolled"), ("bob", "already_enrolled")]
        + [("lost", "already_enrolled")]
    )
    explained = {r["reason"]: r["explanation"] for r in rows}
    assert explained["already_enrolled"] is None
    assert explained["suppressed"]["result"] is True, explained["suppressed"]
    enrolled = await pool.fetch(
        "SELECT contact_id FROM enrollments WHERE journey_id = $1 ORDER BY 1", record.id
    )
    assert [r["contact_id"] for r in enrolled] == ["ada", "bob", "lost", "old"]
