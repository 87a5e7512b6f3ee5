"""The experiment statistics against values worked out by hand and a seeded simulation:
the two-proportion z-test, its Wald interval, the Beta-Binomial probability of being
better, and when a winner is declared."""

from __future__ import annotations

import random

import pytest

from shared.experiments import Arm, compare, probability_better, winner


def test_two_proportions_as_worked_by_hand() -> None:
    # 130/1000 against 100/1000: pooled p = 0.115, SE = sqrt(0.115 * 0.885 * 2/1000)
    # = 0.014267, z = 0.03 / 0.014267 = 2.1027, two-sided p = 0.0355; unpooled SE =
    # sqrt(0.13 * 0.87/1000 + 0.10 * 0.90/1000) = 0.014251, 95 % margin 1.96 * SE = 0.02793
    c = compare(Arm(1000, 130), Arm(1000, 100))
    assert c.lift == pytest.approx(0.03)
    assert c.relative_lift == pytest.approx(0.30)
    assert c.z == pytest.approx(2.1027, abs=1e-4)
    assert c.p_value == pytest.approx(0.0355, abs=1e-4)
    assert (c.ci_low, c.ci_high) == (
        pytest.approx(0.03 - 0.02793, abs=1e-5),
        pytest.approx(0.03 + 0.02793, abs=1e-5),
    )
    # no difference: z 0, p 1, an interval around 0, even odds
    same = compare(Arm(500, 50), Arm(500, 50))
    assert (same.z, same.p_value) == (0.0, pytest.approx(1.0))
    assert same.ci_low < 0 < same.ci_high
    assert same.probability_better == pytest.approx(0.5, abs=1e-9)


def test_the_probability_of_being_better_matches_a_simulation() -> None:
    rng = random.Random(20261129)
    for variant, baseline in ((Arm(1000, 130), Arm(1000, 100)), (Arm(40, 3), Arm(60, 5))):
        exact = probability_better(variant, baseline)
        draws = 100_000
        wins = sum(
            rng.betavariate(1 + variant.converted, 1 + variant.entered - variant.converted)
            > rng.betavariate(1 + baseline.converted, 1 + baseline.entered - baseline.converted)
            for _ in range(draws)
        )
        assert exact == pytest.approx(wins / draws, abs=0.006), (variant, baseline)
    assert probability_better(Arm(1000, 130), Arm(1000, 100)) == pytest.approx(0.9822, abs=1e-3)


def test_a_winner_needs_enough_contacts_in_every_arm_and_the_confidence() -> None:
    arms = {"control": Arm(300, 30), "A": Arm(300, 60), "B": Arm(300, 33)}
    assert winner(arms, "control", min_per_variant=200, confidence=0.95) == "A"
    assert winner(arms, "control", min_per_variant=301, confidence=0.95) is None  # too few
    close = {"control": Arm(300, 30), "A": Arm(300, 36), "B": Arm(300, 33)}
    assert winner(close, "control", min_per_variant=200, confidence=0.95) is None
    # ahead of the baseline but not of the other variant: no winner yet
    rivals = {"control": Arm(300, 10), "A": Arm(300, 41), "B": Arm(300, 40)}
    assert winner(rivals, "control", min_per_variant=200, confidence=0.95) is None
    # no holdout: the first variant is the baseline of the figures, and may win itself
    plain = {"A": Arm(300, 60), "B": Arm(300, 30)}
    assert winner(plain, None, min_per_variant=200, confidence=0.95) == "A"
    # a holdout ahead of every variant is never the winner
    behind = {"control": Arm(300, 60), "A": Arm(300, 30), "B": Arm(300, 31)}
    assert winner(behind, "control", min_per_variant=200, confidence=0.95) is None


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        compare(Arm(10, 11), Arm(10, 1))
    with pytest.raises(ValueError):
        compare(Arm(10, 1), Arm(10, 1), confidence=1.0)
    empty = compare(Arm(0, 0), Arm(10, 1))
    assert empty.p_value == 1.0 and empty.probability_better == 0.5
