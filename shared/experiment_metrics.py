"""The experiments of a journey, as `/metrics` shows them: per split and variant, who
entered, who met the goal, the lift over the baseline and how sure it is, and the winner
(docs/metrics.md, "Experiments"). Pure: `store.experiments` reads the counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.experiments import Arm, compare, winner
from shared.journey import Journey, Split, Winner

METHOD = (
    "lift: two-proportion z-test with a Wald interval; probability_better: Beta(1 + "
    "converted, 1 + missed) posteriors, computed exactly; winner: probability_better at "
    "least `confidence` against every other variant, min_per_variant in each"
)


class VariantFigures(BaseModel):
    name: str
    holdout: bool
    percent: int | None
    """Its share in the journey's current definition (None: a variant no longer there)."""
    entered: int
    converted: int
    """Met the goal under the journey's goal rules except "a marketing message was sent"
    (a holdout cannot meet it by design): the comparison's conversions."""
    conversion_rate: float
    """`converted` in % of `entered`."""
    headline_conversions: int
    """Of those, the ones counted as the journey's conversions (its headline rate)."""
    lift: float | None = None
    """Conversion rate minus the baseline's, in percentage points (None: the baseline)."""
    relative_lift: float | None = None
    """`lift` in % of the baseline's rate (None when the baseline converted nobody)."""
    ci_low: float | None = None
    ci_high: float | None = None
    """The interval of `lift` (percentage points) at the split's confidence."""
    p_value: float | None = None
    probability_better: float | None = None
    """That its rate is above the baseline's."""


class Declared(BaseModel):
    variant: str
    version: int
    declared_at: datetime
    figures: dict[str, Any]
    """The variants' entered and converted when it was declared."""


class ExperimentMetrics(BaseModel):
    split: str
    stage: str | None
    baseline: str
    """The holdout, else the first variant."""
    method: str = METHOD
    confidence: float
    min_per_variant: int
    auto_winner: bool
    variants: list[VariantFigures]
    winner: str | None
    """Ahead now at `confidence`, with `min_per_variant` in every variant."""
    declared: Declared | None = None
    """Recorded once by a split with `winner.auto`: from then on new contacts take it."""


Counts = dict[str, tuple[int, int, int]]
"""variant → (entered, converted, counted as a headline conversion)."""


def splits_of(journey: Journey) -> list[tuple[str, Split]]:
    """(stage key, split) for every split of the journey, in journey order."""
    return [
        (stage.key, action)
        for stage in journey.stages
        for action in stage.actions
        if isinstance(action, Split)
    ]


def arms_of(split: Split, counts: Counts) -> dict[str, Arm]:
    names = [v.name for v in split.variants] + sorted(
        set(counts) - {v.name for v in split.variants}
    )
    return {n: Arm(counts.get(n, (0, 0, 0))[0], counts.get(n, (0, 0, 0))[1]) for n in names}


def holdout_of(split: Split) -> str | None:
    return next((v.name for v in split.variants if v.holdout), None)


def winner_now(split: Split, counts: Counts) -> str | None:
    """The winner the split's rule (or the default rule) declares on these counts."""
    rule = split.winner or Winner()
    arms = {v.name: arms_of(split, counts)[v.name] for v in split.variants}
    return winner(arms, holdout_of(split), rule.min_per_variant, rule.confidence)


def experiment(
    stage: str | None, split: Split, counts: Counts, declared: Declared | None
) -> ExperimentMetrics:
    rule = split.winner or Winner()
    arms = arms_of(split, counts)
    baseline = holdout_of(split) or split.variants[0].name
    percents = {v.name: v.percent for v in split.variants}
    holdouts = {v.name for v in split.variants if v.holdout}
    variants = []
    for name, arm in arms.items():
        figures = VariantFigures(
            name=name,
            holdout=name in holdouts,
            percent=percents.get(name),
            entered=arm.entered,
            converted=arm.converted,
            conversion_rate=round(100 * arm.rate, 2),
            headline_conversions=counts.get(name, (0, 0, 0))[2],
        )
        if name != baseline:
            c = compare(arm, arms[baseline], rule.confidence)
            figures.lift = round(100 * c.lift, 2)
            rel = c.relative_lift
            figures.relative_lift = round(100 * rel, 2) if rel is not None else None
            figures.ci_low, figures.ci_high = round(100 * c.ci_low, 2), round(100 * c.ci_high, 2)
            figures.p_value = round(c.p_value, 4)
            figures.probability_better = round(c.probability_better, 4)
        variants.append(figures)
    return ExperimentMetrics(
        split=split.name,
        stage=stage,
        baseline=baseline,
        confidence=rule.confidence,
        min_per_variant=rule.min_per_variant,
        auto_winner=rule.auto,
        variants=variants,
        winner=winner_now(split, counts),
        declared=declared,
    )


def experiments(
    journey: Journey, counts: dict[str, Counts], declared: dict[str, Declared]
) -> list[ExperimentMetrics]:
    """Every split of the journey's definition, with its counts (zero when none yet)."""
    return [
        experiment(stage, split, counts.get(split.name, {}), declared.get(split.name))
        for stage, split in splits_of(journey)
    ]


def snapshot(split: Split, counts: Counts) -> dict[str, Any]:
    """The figures a declaration records: each variant's entered and converted."""
    arms = arms_of(split, counts)
    return {name: {"entered": a.entered, "converted": a.converted} for name, a in arms.items()}
