"""Intervals that hold their level: simulated coverage at n=16 and n=300, and the verdicts they give."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from maximalcai.evaluation.stats import (
    BETTER,
    DIFFERENT,
    NEWCOMBE,
    PAIRED_T,
    SAME,
    TOO_FEW,
    WILSON,
    WORSE,
    newcombe_paired,
    paired_difference,
    rate_or_mean,
    student_t,
    verdict,
    wilson,
)

LEVEL = 0.93  # nominal 95% intervals must cover the truth at least this often
REPLICATIONS = 2000


@pytest.mark.parametrize("n", [16, 300])
def test_wilson_covers_every_rate_at_least_93_percent(n):
    """Exact coverage (summed over the binomial distribution), for true rates 0.05 to 0.95."""
    intervals = [wilson(k, n) for k in range(n + 1)]
    for p in np.linspace(0.05, 0.95, 19):
        pmf = scipy_stats.binom.pmf(np.arange(n + 1), n, p)
        coverage = sum(w for w, ci in zip(pmf, intervals) if ci.low <= p <= ci.high)
        assert coverage >= LEVEL, (n, p, coverage)


def paired_binary(rng, n, p1, p2, rho):
    spread = math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    both = min(p1 * p2 + rho * spread, p1, p2)  # as correlated as the two rates allow
    cells = rng.multinomial(1, [both, p1 - both, p2 - both, 1 - p1 - p2 + both], size=n).argmax(1)
    return (cells <= 1).astype(float), ((cells == 0) | (cells == 2)).astype(float)


@pytest.mark.parametrize("n", [16, 300])
def test_newcombe_paired_difference_covers_at_least_93_percent(n):
    """Correlated answers of two models on the same prompts (the case the uncorrected method fails)."""
    rng = np.random.default_rng(0)
    for p1, p2, rho in itertools.product((0.2, 0.5, 0.8), (0.3, 0.6), (0.0, 0.4)):
        hits = 0
        for _ in range(REPLICATIONS // 4):
            ours, theirs = paired_binary(rng, n, p1, p2, rho)
            ci = newcombe_paired(ours, theirs)
            hits += ci.low <= p1 - p2 <= ci.high
        assert hits / (REPLICATIONS // 4) >= LEVEL, (n, p1, p2, rho, hits)


def repetition_rates(rng, size):
    """Per-answer repeated 4-gram rates: some answers loop (0.4-0.9), most barely repeat."""
    loops = rng.random(size) < 0.4
    return np.where(loops, rng.uniform(0.4, 0.9, size), rng.beta(1, 12, size))


def lengths(rng, size, loop_share):
    return np.where(rng.random(size) < loop_share, 128, rng.integers(5, 80, size)).astype(float)


CONTINUOUS = {
    "normal": lambda rng, n: rng.normal(0.3, 1.0, (REPLICATIONS, n)),
    "repetition difference": lambda rng, n: (
        repetition_rates(rng, (REPLICATIONS, n)) - repetition_rates(rng, (REPLICATIONS, n))
    ),
    "length difference": lambda rng, n: lengths(rng, (REPLICATIONS, n), 0.6) - lengths(rng, (REPLICATIONS, n), 0.2),
    "share of instructions": lambda rng, n: rng.beta(2, 5, (REPLICATIONS, n)),
}


@pytest.mark.parametrize("n", [16, 300])
@pytest.mark.parametrize("kind", sorted(CONTINUOUS))
def test_t_interval_covers_at_least_93_percent_on_metric_like_data(kind, n):
    rng = np.random.default_rng(1)
    truth = CONTINUOUS[kind](np.random.default_rng(2), 2000).mean()  # 2000 x 2000 draws: the mean to ~0.001
    samples = CONTINUOUS[kind](rng, n)
    hits = sum(ci.low <= truth <= ci.high for ci in map(student_t, samples))
    assert hits / REPLICATIONS >= LEVEL, (kind, n, hits / REPLICATIONS)


def test_interval_choice_follows_the_data():
    assert rate_or_mean([1.0, 0.0, 1.0]).method == WILSON
    assert rate_or_mean([0.2, 0.0, 1.0]).method.startswith("Student")
    assert paired_difference([1.0, 0.0], [0.0, 0.0]).method == NEWCOMBE
    assert paired_difference([0.5, 0.0], [0.0, 0.0]).method == PAIRED_T
    ci = wilson(0, 20)
    assert ci.low == 0 and 0.15 < ci.high < 0.21 and wilson(20, 20).high == 1.0
    same = newcombe_paired([1, 0, 1, 0] * 4, [1, 0, 1, 0] * 4)
    assert same.estimate == 0 and same.low < 0 < same.high
    better = newcombe_paired([1.0] * 20, [0.0] * 20)
    assert better.estimate == 1 and better.low > 0.5
    assert student_t([2.0]).low == student_t([2.0]).high == 2.0
    assert all(math.isnan(x) for x in (wilson(0, 0).low, student_t([]).high, newcombe_paired([], []).low))


def test_verdicts():
    assert verdict(0.1, 0.3, 0.0, True) == BETTER and verdict(0.1, 0.3, 0.0, False) == WORSE
    assert verdict(-0.1, 0.3, 0.0, True) == SAME and verdict(0.2, 0.4, 0.5, True) == WORSE
    assert verdict(0.1, 0.3, 0.0, None) == DIFFERENT and verdict(-0.3, -0.1, 0.0, None) == DIFFERENT
    assert verdict(-0.1, 0.3, 0.0, None) == SAME
    assert verdict(1.0, 1.0, 0.5, True, n=2, min_items=8) == TOO_FEW and verdict(1.0, 1.0, 0.5, True, 8, 8) == BETTER
