"""`nurture dev` for real: the whole stack comes up, a second one refuses, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from cli.stack import port_open

PORTS = (7233, 8233, 8000, 55432, 1025)  # 1025: the dev SMTP sink


@pytest.mark.timeout(240)
def test_dev_starts_everything_refuses_a_second_and_stops_cleanly(tmp_path: Path) -> None:
    if any(port_open("127.0.0.1", p) for p in PORTS):
        pytest.skip("a nurture dev stack (or something else) already uses the dev ports")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_DATA_DIR"] = str(tmp_path / "state")
    dev = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline:
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            try:
                health = httpx.get("http://127.0.0.1:8000/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health is not None and health.status_code == 200, health and health.text
        assert health.json()["temporal"]["ok"] and health.json()["postgres"]["ok"]
        assert httpx.get("http://127.0.0.1:8233/", timeout=5).status_code == 200
        assert httpx.get("http://127.0.0.1:8000/docs", timeout=5).status_code == 200
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) >= 4  # temporal, postgres (+ its workers), worker, api
        _a_journeys_email_shows_at_v1_messages(tmp_path / "state" / "dev-api-key")

        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "dev"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already running" in second.stdout
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=90)
    assert dev.returncode == 0, output
    assert "http://127.0.0.1:8233" in output and "http://127.0.0.1:8000" in output
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {alive}"
    assert (tmp_path / "state" / "temporal.db").exists()


WELCOME_JOURNEY = {
    "name": "Welcome",
    "owner": "marketing@acme.test",
    "stage_property": "journey_stage",
    "start_stage": "welcome",
    "enroll_empty_stage": True,
    "stages": [
        {
            "key": "welcome",
            "value": "welcome",
            "actions": [
                {"type": "send_message", "channels": ["email"], "template": "welcome"},
                {"type": "go_to", "target": "success"},
            ],
        }
    ],
    "ends": {"success": {"value": "customer"}},
}


def _a_journey_email_request(http: httpx.Client) -> str:
    template = {"subject": "Welcome, {{ contact.first_name }}", "text": "Hi!"}
    assert http.put("/v1/templates/welcome", json=template).status_code == 200
    journey_id = http.post("/v1/journeys", json=WELCOME_JOURNEY).json()["id"]
    assert http.post(f"/v1/journeys/{journey_id}/activate").status_code == 200
    ada = {"properties": {"email": "ada@example.test", "first_name": "Ada"}}
    assert http.put("/v1/contacts/ada", json=ada).status_code == 200
    enrolled = http.post(f"/v1/journeys/{journey_id}/enrollments", json={"contact_id": "ada"})
    # the contact upsert may already have enrolled ada (no eligible lists: everyone)
    assert enrolled.status_code in (201, 409), enrolled.text
    return f"enrollment/default/{journey_id}/ada"


def _a_journeys_email_shows_at_v1_messages(key_file: Path) -> None:
    """The sender in the API `nurture dev` runs hands the worker's queued email to the SMTP
    sink it runs, and the API shows it: what a user of the dev stack sees of a journey's
    emails."""
    headers = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
    with httpx.Client(base_url="http://127.0.0.1:8000", headers=headers, timeout=10) as http:
        workflow_id = _a_journey_email_request(http)
        deadline = time.monotonic() + 60
        messages: list[dict[str, object]] = []
        while time.monotonic() < deadline and not messages:
            messages = http.get("/v1/messages").json()
            time.sleep(0.2)
        [message] = messages
        assert message["subject"] == "Welcome, Ada"
        assert message["rcpt_to"] == ["ada@example.test"]
        assert message["idempotency_key"] == f"{workflow_id}:2:email"
