"""`python -m bench [--size N] [--report PATH] [--markdown PATH] [--memory N] [--keep]
[--temporal-file]`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench import DEFAULT_SIZE
from bench.report import markdown
from bench.run import run_suite

DEFAULT_REPORT = Path(".nurture/bench/report.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help="enrollments per throughput run"
    )
    parser.add_argument(
        "--memory", type=int, help="enrollments waiting on timers at the end (default: 6 x size)"
    )
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report path")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data and logs")
    parser.add_argument(
        "--temporal-file",
        action="store_true",
        help="keep Temporal's state in a SQLite file, as `nurture dev` does (default: memory)",
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(
        run_suite(
            args.size,
            args.report,
            keep=args.keep,
            temporal_file=args.temporal_file,
            memory_count=args.memory,
        )
    )
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
