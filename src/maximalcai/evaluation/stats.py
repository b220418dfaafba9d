"""Bootstrap confidence intervals and the capability-differentiation verdict.

Every figure is a mean over prompts (or held-out pairs) with a percentile bootstrap interval. Comparing a
stage with a baseline on the same prompts uses the paired difference; a verdict is "better" or "worse"
only when the interval excludes no difference, in the metric's good direction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BETTER, WORSE, SAME = "better", "worse", "no measurable difference"


def bootstrap_mean(values: Sequence[float], resamples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``values``; an empty sample gives NaNs."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(data.mean()), float(low), float(high)


def verdict(low: float, high: float, null: float, higher_is_better: bool) -> str:
    """Whether an interval (of a difference, or of a rate compared with ``null``) shows a real effect."""
    if np.isnan(low) or np.isnan(high):
        return SAME
    if low > null:
        return BETTER if higher_is_better else WORSE
    if high < null:
        return WORSE if higher_is_better else BETTER
    return SAME
