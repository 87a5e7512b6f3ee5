"""The product's own processes, started for real as `nurture worker` / `nurture api` would
be (`python -m cli.main ...` with NURTURE_* settings), so a test can SIGKILL or SIGTERM them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def start(
    command: str,
    *,
    temporal_address: str,
    database_url: str,
    task_queue: str,
    log: Path,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """Starts `nurture <command>` with the given settings; output goes to `log`."""
    env = {
        **os.environ,
        "NURTURE_TEMPORAL_ADDRESS": temporal_address,
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_TASK_QUEUE": task_queue,
        "PYTHONUNBUFFERED": "1",
        **{f"NURTURE_{name.upper()}": value for name, value in settings.items()},
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def smtp(settings: Settings) -> dict[str, str]:
    """`start` keywords that point a process at the SMTP server of `settings`."""
    return {
        "smtp_host": str(settings.smtp_host),
        "smtp_port": str(settings.smtp_port),
        "smtp_security": settings.smtp_security,
        "smtp_from": settings.smtp_from,
    }


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no handler runs, nothing is flushed, in-flight work is simply lost."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
