"""The bench report's verdicts: a missed target says by how much and which process holds
what nurture adds (pure: no stack)."""

from __future__ import annotations

from bench.cpu import above_bare, contract_cost
from bench.report import Figure, markdown

NURTURE = {"temporal": 16.35, "worker": 7.2, "api": 2.75, "postgres": 2.35, "bench client": 2.35}
BARE = {"temporal": 14.55, "baseline-worker": 4.3, "bench client": 2.05}


def test_what_nurture_adds_is_named_per_process_the_most_first() -> None:
    assert above_bare(NURTURE, BARE) == (
        "above bare: worker +2.9 ms, API +2.8 ms, Postgres +2.4 ms, Temporal +1.8 ms, "
        "bench client +0.3 ms"
    )


def test_a_missed_target_says_by_how_much_and_where_the_rest_is() -> None:
    missed = Figure(
        "0. CPU",
        "ms per exit",
        30.85,
        "ms",
        baseline=20.9,
        target=1.4,
        at_least=False,
        note=above_bare(NURTURE, BARE),
    )
    assert missed.met is False
    assert missed.result_text == f"missed (5% over; {above_bare(NURTURE, BARE)})"
    assert "| missed (5% over; above bare: worker +2.9 ms" in markdown([missed])


def test_a_met_target_says_met_and_a_figure_without_one_shows_its_note() -> None:
    met = Figure(
        "0. CPU",
        "ms per exit",
        25.0,
        "ms",
        baseline=20.0,
        target=1.4,
        at_least=False,
        note="above bare: worker +5.0 ms",
    )
    assert met.result_text == "met"
    plain = Figure("6. x", "not available", None, "", note="not available")
    assert plain.result_text == "not available"


def test_an_exits_outcome_and_write_are_priced_in_a_bare_workflow() -> None:
    leave = {"temporal": 15.62, "baseline-worker": 6.87, "bench client": 2.42}
    bare = {"temporal": 14.22, "baseline-worker": 4.23, "bench client": 2.33}
    assert contract_cost(leave, bare) == (
        "the outcome and write alone: Temporal +1.4 ms, worker +2.6 ms"
    )
