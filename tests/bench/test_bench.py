"""The benchmark suite runs end to end at a tiny size (its figures are not judged here:
timing belongs in the benchmark's report, not in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import collect_optional, figures_from, run_suite

SECTIONS = ("1. throughput", "2. history", "3. event → exit", "4. ingest", "5. memory")


@pytest.mark.timeout(240)
async def test_the_suite_runs_on_its_own_stack_and_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    figures = await run_suite(5, report, optional=False)

    body = json.loads(report.read_text())
    assert body["size"] == 5
    assert body["machine"]["cpus"] >= 1 and "Server" in body["machine"]["temporal"]
    written = {(f["section"], f["name"]) for f in body["figures"]}
    assert written == {(f.section, f.name) for f in figures}
    for section in SECTIONS:
        measured = [f for f in figures if f.section == section]
        assert measured, section
        assert all(f.value is not None and f.value >= 0 for f in measured), measured
    # every machine-dependent figure has its same-run baseline and ratio
    for f in figures:
        if f.section in ("1. throughput", "3. event → exit", "4. ingest"):
            assert f.baseline and f.ratio is not None, f
    # an exit's outcome and write, priced in a bare workflow (it closed: the phase ended)
    [leave] = [f for f in figures if "bare with an exit's outcome and write" in f.name]
    assert leave.value and leave.baseline and leave.note.startswith("the outcome and write")
    history = {f.name: f for f in figures if f.section == "2. history"}
    assert history["events per send_message"].baseline == 6  # scheduled/started/completed + WFT
    assert history["events per wait"].baseline == 5  # started/fired + WFT
    # branches and splits are decisions of the workflow: no event of their own
    assert history["events per branch (continuing)"].value == 0
    assert history["events per split (continuing)"].value == 0


async def test_a_missing_module_of_another_issue_is_marked_not_available() -> None:
    [row], detail = await collect_optional("6. x", "bench.no_such_benchmark", 1)
    assert (row.name, row.value, row.note, detail) == ("not available", None, "not available", {})


def test_another_issues_result_becomes_rows() -> None:
    rows = figures_from(
        "6. x",
        {
            "figures": [
                {
                    "name": "p99",
                    "value": 120.0,
                    "unit": "ms",
                    "target": 250,
                    "on": "value",
                    "at_least": False,
                }
            ],
            "ignored": "text",
        },
    )
    assert [(r.name, r.value, r.met) for r in rows] == [("p99", 120.0, True)]
    flat = figures_from(
        "6. x", {"n": 40, "ok": True, "get": {"p99_ms": 60.0}, "target_p99_ms": 50.0}
    )
    assert [(r.name, r.value, r.unit, r.met) for r in flat] == [
        ("n", 40.0, "", None),
        ("get p99", 60.0, "ms", False),
    ]


async def test_another_issues_benchmark_runs_sync_or_async_with_or_without_a_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench_sized.py").write_text(
        "async def run(size):\n    return {'contacts': size, 'target_contacts': 10}\n"
    )
    (tmp_path / "bench_own_size.py").write_text("def run():\n    return {'rss_mb': 80.5}\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    [sized], detail = await collect_optional("6. x", "bench_sized", 25)
    assert (sized.name, sized.value, sized.met) == ("contacts", 25.0, False)
    assert detail == {"contacts": 25, "target_contacts": 10}
    [own], _ = await collect_optional("soak", "bench_own_size", 25)
    assert (own.name, own.value) == ("rss_mb", 80.5)


async def test_another_issues_benchmark_failing_becomes_a_row_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench_broken.py").write_text(
        "async def run(size):\n    raise RuntimeError('worker never started')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    [row], detail = await collect_optional("6. x", "bench_broken", 1)
    assert (row.name, row.value) == ("failed", None)
    assert row.note == detail["error"] == "RuntimeError: worker never started"
