"""Exact uniform sampling by counting: draw a rank below the number of strings, then unrank it.

The counts grow exponentially with the length (Catalan(50) > 2^89), so they are Python ints and the rank is drawn from
random bytes rather than from a float, which would make long strings only approximately uniform.
"""

import itertools
import math
from bisect import bisect_right
from functools import cache

import numpy as np


def uniform_below(rng: np.random.Generator, total: int) -> int:
    """An integer drawn uniformly from [0, total), exactly, for any size of `total`."""
    if total <= 0:
        raise ValueError(f"uniform_below needs total > 0, got {total}")
    bits = (total - 1).bit_length()
    if bits == 0:
        return 0
    # Raw 64-bit words of the generator, the top `bits` bits kept; rejection accepts with probability > 1/2.
    words = (bits + 63) // 64
    shift = 64 * words - bits
    while True:
        if words == 1:
            r = int(rng.bit_generator.random_raw()) >> shift
        else:
            r = int.from_bytes(rng.bit_generator.random_raw(words).tobytes(), "little") >> shift
        if r < total:
            return r


def choose_weighted(rng: np.random.Generator, weights: list[int]) -> int:
    """An index i drawn with probability weights[i] / sum(weights), exactly (integer weights)."""
    cumulative = list(itertools.accumulate(weights))
    return bisect_right(cumulative, uniform_below(rng, cumulative[-1]))


def random_index(rng: np.random.Generator, n: int) -> int:
    """A uniform index below a small n; cheaper than rng.integers for one scalar."""
    return min(int(rng.random() * n), n - 1)


@cache
def catalan(k: int) -> int:
    return math.comb(2 * k, k) // (k + 1)


@cache
def ballot(depth: int, steps: int) -> int:
    """Bracket sequences of `steps` symbols that take a stack of `depth` open brackets to empty, never below empty.

    Reflection principle: all paths from depth to 0 minus those that touch -1.
    """
    if depth < 0 or depth > steps or (steps - depth) % 2:
        return 0
    opens = (steps - depth) // 2
    return math.comb(steps, opens) - (math.comb(steps, opens - 1) if opens > 0 else 0)
