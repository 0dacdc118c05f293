"""Seeds read as samples (report/stats.py): the interval of a mean over seeds, the cell every accuracy table prints,
and the interval of a difference between two runs."""

import math

import numpy as np
import pytest
import scipy.stats

from satbench.report.stats import (
    RANDOM_STATE,
    difference_interval,
    excludes_zero,
    mean_interval,
    seed_cell,
    summarize_seeds,
)

SEEDS = [0.62, 0.71, 0.93, 0.88, 0.97]


def test_the_interval_holds_the_mean_and_is_scipys_percentile_bootstrap():
    low, high = mean_interval(SEEDS)
    assert low < np.mean(SEEDS) < high
    assert min(SEEDS) <= low and high <= max(SEEDS)  # a percentile interval stays inside what was measured
    expected = scipy.stats.bootstrap((np.array(SEEDS),), np.mean, method="percentile", n_resamples=9999,
                                     random_state=RANDOM_STATE).confidence_interval
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert mean_interval(SEEDS) == (low, high)  # a fixed random state: the same report every time
    assert mean_interval(SEEDS, random_state=RANDOM_STATE + 1) != (low, high)


def test_equal_values_give_a_point_one_seed_none_and_nan_seeds_are_left_out():
    assert mean_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert mean_interval([0.5]) is None
    assert mean_interval([0.5, math.nan]) is None
    assert mean_interval([]) is None
    assert mean_interval([0.6, math.nan, 0.8]) == mean_interval([0.6, 0.8])


def test_the_cell_shows_mean_interval_best_and_seeds_passing():
    assert seed_cell([0.5, 0.7, 1.0], 0.99) == "0.73 [0.50, 1.00] best 1.00, 1/3 ✓"
    assert seed_cell([0.5, 0.7, 0.9], 0.99) == "0.70 [0.50, 0.90] best 0.90, 0/3"
    assert seed_cell([1.0, 1.0], 0.99) == "1.00 [1.00, 1.00] best 1.00, 2/2 ✓"
    assert seed_cell([0.995], 0.99) == "0.99, 1/1 ✓"  # one seed: no interval, and its best is its mean
    assert seed_cell([math.nan, math.nan], 0.99) == "—"
    summary = summarize_seeds(SEEDS, 0.9)
    assert (summary.best, summary.passing, summary.seeds) == (0.97, 2, 5)
    assert summary.mean == pytest.approx(np.mean(SEEDS))


def test_a_clear_difference_excludes_0_and_no_difference_includes_it():
    worse, better = [0.50, 0.55, 0.52, 0.58, 0.51], [0.97, 0.99, 1.00, 0.96, 0.98]
    interval = difference_interval(worse, better)
    assert excludes_zero(interval) and interval[0] > 0.3
    assert excludes_zero(difference_interval(better, worse)) and difference_interval(better, worse)[1] < 0
    same = difference_interval(SEEDS, SEEDS)
    assert same[0] < 0 < same[1] and not excludes_zero(same)


def test_the_difference_interval_is_scipys_unpaired_two_sample_bootstrap():
    a, b = [0.6, 0.7, 0.8], [0.65, 0.9, 0.95, 0.7]  # unequal sizes: only an unpaired bootstrap takes them
    expected = scipy.stats.bootstrap((np.array(a), np.array(b)), lambda x, y, axis: y.mean(axis) - x.mean(axis),
                                     method="percentile", paired=False, vectorized=True, n_resamples=9999,
                                     random_state=RANDOM_STATE).confidence_interval
    assert difference_interval(a, b) == pytest.approx((expected.low, expected.high))


def test_difference_intervals_of_constant_or_single_samples():
    assert difference_interval([0.5, 0.5], [1.0, 1.0, 1.0]) == (0.5, 0.5)
    assert excludes_zero((0.5, 0.5)) and not excludes_zero((0.0, 0.0))
    assert difference_interval([0.5], [0.6, 0.7]) is None and not excludes_zero(None)
