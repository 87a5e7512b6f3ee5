"""Figures, the table they print as, and the JSON report."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil
from rich.console import Console
from rich.table import Table


@dataclass
class Figure:
    """One measured figure, next to its same-run baseline when it depends on the machine.

    `target` applies to the ratio (`on="ratio"`) or to the value itself (`on="value"`);
    `at_least` says which side of it is good. A figure's `note` stands in its result when
    it has no target, and follows the margin when it misses one (where the rest is)."""

    section: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: float | None = None
    on: Literal["ratio", "value"] = "ratio"
    at_least: bool = True
    note: str = ""
    ratio: float | None = field(init=False, default=None)
    met: bool | None = field(init=False, default=None)
    missed_by: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline
        checked = self.ratio if self.on == "ratio" else self.value
        if self.target is None or checked is None:
            return
        self.met = checked >= self.target if self.at_least else checked <= self.target
        if not self.met:
            side = "short" if self.at_least else "over"
            if self.target:
                self.missed_by = f"{abs(checked - self.target) / self.target:.0%} {side}"
            else:
                self.missed_by = f"{abs(checked):g} {side}"

    @property
    def result_text(self) -> str:
        """What the result column says, without markup."""
        if self.met is None:
            return self.note
        if self.met:
            return "met"
        return f"missed ({self.missed_by}{'; ' + self.note if self.note else ''})"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        sign = "≥" if self.at_least else "≤"
        if self.on == "ratio":
            return f"ratio {sign} {self.target:g}"
        return f"{sign} {self.target:g} {self.unit}"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def table(figures: list[Figure], title: str) -> Table:
    out = Table(title=title, show_lines=False)
    for column in ("", "figure", "nurture", "baseline", "ratio", "target", "result"):
        out.add_column(column)
    section = None
    for f in figures:
        label = f.section if f.section != section else ""
        section = f.section
        baseline = _num(f.baseline, f.unit) + (f" ({f.baseline_name})" if f.baseline_name else "")
        result = f.result_text
        if f.met is not None:
            result = f"[{'green' if f.met else 'red'}]{result}[/]"
        out.add_row(
            label,
            f.name,
            _num(f.value, f.unit) if f.value is not None else (f.note or "—"),
            baseline if f.baseline is not None else "",
            f"{f.ratio:.2f}" if f.ratio is not None else "",
            f.target_text,
            result if f.value is not None else "",
        )
    return out


def markdown(figures: list[Figure]) -> str:
    """The table for the README."""
    lines = [
        "| figure | nurture | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        baseline = _num(f.baseline, f.unit) + (f" ({f.baseline_name})" if f.baseline_name else "")
        result = "" if f.met is None else f.result_text
        value = _num(f.value, f.unit) if f.value is not None else (f.note or "—")
        lines.append(
            f"| {f.section}: {f.name} | {value} | "
            f"{baseline if f.baseline is not None else ''} | "
            f"{f'{f.ratio:.2f}' if f.ratio is not None else ''} | {f.target_text} | {result} |"
        )
    return "\n".join(lines)


def machine(temporal_binary: str) -> dict[str, Any]:
    try:
        version = subprocess.run(
            [temporal_binary, "--version"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except OSError:
        version = "unknown"
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporal": version,
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }


def write_json(
    path: Path, figures: list[Figure], details: dict[str, Any], meta: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "generated_at": datetime.now(UTC).isoformat(),
        **meta,
        "figures": [
            {**asdict(f), "ratio": f.ratio, "met": f.met, "missed_by": f.missed_by} for f in figures
        ],
        "details": details,
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")


def print_cpu(cpu: dict[str, dict[str, float]], seconds: dict[str, float]) -> None:
    """Where the time went: CPU seconds of each part of the stack during each benchmark."""
    parts = sorted({part for used in cpu.values() for part in used})
    out = Table(title="CPU seconds per part of the stack (wall seconds for scale)")
    for column in ("benchmark", "wall", *parts):
        out.add_column(column, justify="right")
    for name, used in cpu.items():
        out.add_row(name, f"{seconds[name]:.1f}", *(f"{used.get(p, 0):.1f}" for p in parts))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(out)


def print_table(figures: list[Figure], title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table(figures, title))
