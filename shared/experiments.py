"""The statistics of an experiment: one variant's conversions against a baseline's (the
holdout, or the first variant when there is none). Pure.

Two views of the same counts, both reported:

- **Two-proportion z-test**: the difference of the conversion rates with a Wald confidence
  interval (unpooled standard error), and the two-sided p-value of the pooled z statistic.
- **Beta-Binomial posterior**: with a uniform prior, each rate's posterior is
  Beta(1 + conversions, 1 + misses); the probability that the variant's rate is above the
  baseline's is computed exactly (Evan Miller's closed form, in log space).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Arm:
    """One variant's (or the baseline's) counts."""

    entered: int
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


@dataclass(frozen=True)
class Comparison:
    lift: float
    """The variant's rate minus the baseline's (absolute)."""
    relative_lift: float | None
    """The lift over the baseline's rate; None when the baseline converted nobody."""
    ci_low: float
    ci_high: float
    """The confidence interval of `lift` at the confidence asked for."""
    z: float
    p_value: float
    """Two-sided, two-proportion z-test (pooled)."""
    probability_better: float
    """P(variant's rate > baseline's) under Beta(1 + converted, 1 + missed) posteriors."""


def compare(variant: Arm, baseline: Arm, confidence: float = 0.95) -> Comparison:
    """The variant against the baseline. Raises ValueError on impossible counts."""
    for arm in (variant, baseline):
        if arm.entered < 0 or not 0 <= arm.converted <= arm.entered:
            raise ValueError(f"impossible counts: {arm}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    p1, p2 = variant.rate, baseline.rate
    lift = p1 - p2
    relative = lift / p2 if p2 else None
    n1, n2 = variant.entered, baseline.entered
    if n1 == 0 or n2 == 0:
        return Comparison(lift, relative, -1.0, 1.0, 0.0, 1.0, 0.5)
    spread = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    margin = _NORMAL.inv_cdf(0.5 + confidence / 2) * spread
    pooled = (variant.converted + baseline.converted) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = lift / se if se else 0.0
    p_value = 2 * (1 - _NORMAL.cdf(abs(z)))
    return Comparison(
        lift=lift,
        relative_lift=relative,
        ci_low=lift - margin,
        ci_high=lift + margin,
        z=z,
        p_value=p_value,
        probability_better=probability_better(variant, baseline),
    )


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def probability_better(variant: Arm, baseline: Arm) -> float:
    """P(rate_variant > rate_baseline) for Beta(1 + converted, 1 + missed) posteriors:
    sum over i < a_v of B(a_b + i, b_b + b_v) / ((b_v + i) B(1 + i, b_v) B(a_b, b_b))."""
    a_v, b_v = 1 + variant.converted, 1 + variant.entered - variant.converted
    a_b, b_b = 1 + baseline.converted, 1 + baseline.entered - baseline.converted
    total = 0.0
    base = _log_beta(a_b, b_b)
    for i in range(a_v):
        total += math.exp(
            _log_beta(a_b + i, b_b + b_v) - math.log(b_v + i) - _log_beta(1 + i, b_v) - base
        )
    return min(1.0, max(0.0, total))


def winner(
    arms: dict[str, Arm], holdout: str | None, min_per_variant: int, confidence: float
) -> str | None:
    """The variant declared the winner: every arm has at least `min_per_variant` entries,
    and this variant (never the holdout) beats every other arm, the holdout included,
    with a posterior probability of at least `confidence`. None while none is there yet."""
    if any(arm.entered < min_per_variant for arm in arms.values()):
        return None
    best = max((name for name in arms if name != holdout), key=lambda n: arms[n].rate, default=None)
    if best is None:
        return None
    rivals = [name for name in arms if name != best]
    if all(probability_better(arms[best], arms[r]) >= confidence for r in rivals):
        return best
    return None
