"""Uncertainty over seeds: means with Student-t intervals, and paired differences with a verdict.

Each seed trains its own base model on the same data split and prunes it with every method, so
two methods are compared *paired by seed* (the difference of their accuracies on the same base
model); the interval of the mean difference is a Student-t interval over seeds. The test split's
own sampling error is much smaller than the seed-to-seed spread when it holds tens of thousands
of frames (its standard error for one accuracy is at most 0.5 / sqrt(n_test)).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BETTER, WORSE, TIED, ONE_SEED = "better", "worse", "not distinguishable", "one seed: no interval"


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, sample standard deviation, half-width of the two-sided t interval) of ``values``;
    std and half-width are NaN for fewer than two values."""
    array = np.asarray([v for v in values if not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if len(array) == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if len(array) < 2:
        return mean, math.nan, math.nan
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(array) - 1) * std / math.sqrt(len(array)))
    return mean, std, half


def verdict(low: float, high: float, seeds: int) -> str:
    """better / worse when the interval of (reference - other) excludes 0, else not distinguishable."""
    if seeds < 2 or math.isnan(low) or math.isnan(high):
        return ONE_SEED
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return TIED


def sampling_standard_error(accuracy: float, n_test: int) -> float:
    """Binomial standard error of one accuracy measured on ``n_test`` frames."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n_test) if n_test else math.nan
