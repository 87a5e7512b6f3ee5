"""The domain (`shared/`) does no I/O: none of its modules imports a database, HTTP, SMTP or
Temporal client library, nor the store, the services, the workers, the API or the CLI,
directly or through what it imports."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import shared

FORBIDDEN = ("asyncpg", "httpx", "aiosmtplib", "aiosmtpd", "temporalio.client", "uvicorn")
LAYERS = ("store", "services", "workers", "api", "cli", "bench")
MODULES = sorted(f"shared.{m.name}" for m in pkgutil.iter_modules(shared.__path__))


def _imports(module: str) -> set[str]:
    path = Path(shared.__path__[0]) / f"{module.removeprefix('shared.')}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _banned(name: str) -> bool:
    return any(name == b or name.startswith(f"{b}.") for b in (*FORBIDDEN, *LAYERS))


def test_no_domain_module_imports_io_or_another_layer() -> None:
    assert len(MODULES) > 15
    offenders = {m: sorted(i for i in _imports(m) if _banned(i)) for m in MODULES}
    assert {m: found for m, found in offenders.items() if found} == {}


def test_nor_through_what_it_imports() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {LAYERS!r} "
        f"or any(n == b or n.startswith(b + '.') for b in {FORBIDDEN!r})))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
