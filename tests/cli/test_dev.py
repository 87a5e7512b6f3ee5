"""`nurture dev` for real: the whole stack comes up, a second one refuses, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import shutil
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
        _a_second_terminal_needs_nothing_exported(tmp_path, env)

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
    assert not (tmp_path / "state" / "dev.env").exists()


WELCOME_JOURNEY = {
    "name": "Welcome",
    "owner": "marketing@acme.test",
    # not the README's stage property: every new contact enters this journey too, and its
    # success end must not end theirs (`when_stage_matches_end`)
    "stage_property": "welcome_stage",
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
    # ready: its template is saved and `nurture dev` configures email (the SMTP sink)
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


ROOT = Path(__file__).resolve().parents[2]


def _readme_try_it() -> str:
    """The README's "Try it" commands, exactly as printed."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def _a_second_terminal_needs_nothing_exported(tmp_path: Path, env: dict[str, str]) -> None:
    """What a newcomer does in a second terminal while `nurture dev` runs, in a checkout
    (here: a directory with the checkout's examples and the stack's .nurture): create a key
    with nothing exported, and run the README's "Try it" twice, verbatim; each run enrolls a
    fresh contact, sends the welcome email and ends with the goal met and counted."""
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the README's Try it needs curl and jq")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".nurture").symlink_to(tmp_path / "state")
    (checkout / "examples").symlink_to(ROOT / "examples")
    bare = {k: v for k, v in env.items() if k != "NURTURE_DATA_DIR"}
    created = subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", "create", "--workspace", "acme"],
        cwd=checkout,
        env={**bare, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.strip().splitlines()[-1]
    acme = {"Authorization": f"Bearer {key}"}
    assert httpx.get("http://127.0.0.1:8000/v1/journeys", headers=acme).status_code == 200
    script = checkout / "try-it.sh"
    script.write_text(_readme_try_it())
    for _ in range(2):
        ran = subprocess.run(
            ["bash", "-e", str(script)],
            cwd=checkout,
            env=bare,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Welcome, Ada" in ran.stdout, ran.stdout
    headers = {
        "Authorization": f"Bearer {(tmp_path / 'state' / 'dev-api-key').read_text().strip()}"
    }
    with httpx.Client(base_url="http://127.0.0.1:8000", headers=headers, timeout=10) as http:
        journeys = http.get("/v1/journeys").json()["items"]
        tried = [j for j in journeys if j["owner"].startswith("try-")]
        assert len(tried) == 2
        for journey in tried:
            deadline = time.monotonic() + 60
            while True:
                metrics = http.get(f"/v1/journeys/{journey['id']}/metrics").json()
                if metrics["goal"]["conversions"] == 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert metrics["enrolled"] == 1 and metrics["goal"]["conversions"] == 1, metrics
            assert metrics["ended"].get("goal_met", {}).get("count") == 1, metrics
