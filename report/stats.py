"""Seeds read as samples: the mean over seeds with a 95% bootstrap interval, the best seed and the seeds passing, and
the difference between two runs with its interval. Training is chaotic under rounding, so no claim rests on one seed
or on the best one alone (DESIGN.md, "Rules of the house").

Intervals are percentile bootstrap intervals from scipy.stats.bootstrap with a fixed random state, so a report is the
same every time it is written. Percentile rather than BCa: BCa needs a jackknife that is undefined or unstable for a
handful of seeds, while the percentile interval stays inside the range of what was measured. With few seeds any
bootstrap interval is too narrow (with 3 seeds the percentile interval is about [min, max]); read it with k/n.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

CONFIDENCE = 0.95
RANDOM_STATE = 0  # fixed: the same rows give the same report, byte for byte
RESAMPLES = 9999


@dataclass(frozen=True)
class SeedSummary:
    """One cell's accuracies over seeds (NaN seeds left out)."""

    mean: float
    interval: tuple[float, float] | None  # 95% bootstrap interval of the mean; None for fewer than two seeds
    best: float
    passing: int  # seeds at or above the threshold
    seeds: int


def mean_interval(values, confidence=CONFIDENCE, random_state=RANDOM_STATE):
    """(low, high): the percentile bootstrap interval of the mean of `values` (NaN left out). None for fewer than two
    values (one seed says nothing about the spread of seeds); (v, v) when every value is v, where resampling cannot
    vary and scipy would warn of degenerate data."""
    values = _numbers(values)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = scipy.stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                                   method="percentile", random_state=random_state)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def difference_interval(a, b, confidence=CONFIDENCE, random_state=RANDOM_STATE):
    """(low, high): the percentile bootstrap interval of mean(b) - mean(a), the two samples resampled independently
    (unpaired: seeds of two runs are independent draws, and seed i of one run is no twin of seed i of the other). None
    when either sample has fewer than two values; (d, d) when both are constant."""
    a, b = _numbers(a), _numbers(b)
    if len(a) < 2 or len(b) < 2:
        return None
    if np.all(a == a[0]) and np.all(b == b[0]):
        return float(b[0] - a[0]), float(b[0] - a[0])

    def shift(x, y, axis=-1):
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    result = scipy.stats.bootstrap((a, b), shift, confidence_level=confidence, n_resamples=RESAMPLES,
                                   method="percentile", paired=False, vectorized=True, random_state=random_state)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def excludes_zero(interval):
    """Whether an interval of a difference lies wholly on one side of 0 (None, no interval: it does not)."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


def summarize_seeds(values, threshold):
    """The SeedSummary of one cell's accuracies over seeds; None when no seed has a number."""
    values = _numbers(values)
    if not len(values):
        return None
    return SeedSummary(float(values.mean()), mean_interval(values), float(values.max()),
                       int((values >= threshold).sum()), len(values))


def seed_cell(values, threshold):
    """The compact cell of every accuracy table: `mean [low, high] best b, k/n` over seeds, with ✓ when the best seed
    reaches the threshold. One seed: `mean, k/1` (no interval, and its best is its mean); no seed: `—`."""
    summary = summarize_seeds(values, threshold)
    if summary is None:
        return "—"
    mark = " ✓" if summary.best >= threshold else ""
    if summary.interval is None:
        return f"{summary.mean:.2f}, {summary.passing}/{summary.seeds}{mark}"
    low, high = summary.interval
    return (f"{summary.mean:.2f} [{low:.2f}, {high:.2f}] best {summary.best:.2f}, "
            f"{summary.passing}/{summary.seeds}{mark}")


def _numbers(values):
    """The values as a float array, NaN (a seed with nothing measured there) left out."""
    return pd.Series(values, dtype=float).dropna().to_numpy()
