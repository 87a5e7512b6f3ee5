"""Regenerates tests/histories/: runs the worker tests (real servers, time-skipping and
dev) with NURTURE_RECORD_HISTORIES set, so each passing test writes the histories of the
enrollments it started, one JSON file per run.

    python scripts/record_histories.py            # all worker tests
    python scripts/record_histories.py -k exits   # only some (keeps the other files)

Record again only on purpose: the replay test checks today's code against these files,
so a history recorded after an unguarded change hides that change from it. Histories in
tests/histories/kept/ were recorded by older code (a run that took the path a patch
changed, before the patch) and are never regenerated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"


def main(args: list[str]) -> int:
    HISTORIES.mkdir(exist_ok=True)
    if not args:
        for old in HISTORIES.glob("*.json"):
            old.unlink()
    env = {**os.environ, "NURTURE_RECORD_HISTORIES": str(HISTORIES)}
    command = [sys.executable, "-m", "pytest", "tests/workers", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run([*command, *args], cwd=ROOT, env=env, check=False)
    print(f"{len(list(HISTORIES.glob('*.json')))} histories in {HISTORIES.relative_to(ROOT)}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
