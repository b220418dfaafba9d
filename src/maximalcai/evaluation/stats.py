"""Bootstrap confidence intervals and the capability-differentiation verdict.

Every figure is a mean over prompts (or held-out pairs) with a percentile bootstrap interval. Comparing a
stage with a baseline on the same prompts uses the paired difference; a verdict is "better" or "worse"
only when the interval excludes no difference, in the metric's good direction. A metric with no good
direction (how far a stage moved from its baseline) is "measurably different" when its interval
excludes zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BETTER, WORSE, SAME, DIFFERENT = "better", "worse", "no measurable difference", "measurably different"
TOO_FEW = "too few items"


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


def verdict(low: float, high: float, null: float, higher_is_better: bool | None, n: int | None = None,
            min_items: int = 1) -> str:
    """Whether an interval (of a difference, or of a rate compared with ``null``) shows a real effect.

    ``higher_is_better=None`` is for a metric without a good direction: an effect is only "different".
    An interval over fewer than ``min_items`` items gives no verdict.
    """
    if n is not None and n < min_items:
        return TOO_FEW
    if np.isnan(low) or np.isnan(high):
        return SAME
    if higher_is_better is None:
        return DIFFERENT if low > null or high < null else SAME
    if low > null:
        return BETTER if higher_is_better else WORSE
    if high < null:
        return WORSE if higher_is_better else BETTER
    return SAME
