"""Counter languages over letters: a^n b^n, a^n b^n c^n, majority and #a = #b.

Each is sampled exactly uniformly: a^n b^n and a^n b^n c^n have one member per admissible length, and majority and
equal draw the number of a's with binomial weights and then a uniform arrangement of that many a's.
"""

import math
from functools import cache

import numpy as np

from languages.base import COUNTS_BOUNDS, Language, register
from languages.uniform_sampling import choose_weighted, random_index


def arrangement(rng: np.random.Generator, n: int, a_count: int) -> str:
    """A uniform string of n symbols with exactly a_count a's, the rest b's."""
    return "".join(np.where(rng.permutation(n) < a_count, "a", "b"))


def cross_swap(rng, s, left, right):
    """s with one symbol of s[left] swapped with one of s[right] (ranges): same counts, wrong order."""
    i = left.start + random_index(rng, len(left))
    j = right.start + random_index(rng, len(right))
    chars = list(s)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


class EqualBlocks(Language):
    """Base of a^n b^n and a^n b^n c^n: one block per letter of the alphabet, in order, all of the same length n >= 1.

    A subclass sets `name` and `alphabet` and writes its own near misses."""

    family = "counter"
    negative_mixture = {"near_miss": 0.5, "edit": 0.2, "shuffle": 0.2, "random": 0.1}
    shortcut_bounds = COUNTS_BOUNDS

    def blocks(self, k: int) -> str:
        return "".join(letter * k for letter in self.alphabet)

    def accepts(self, s: str) -> bool:
        k = len(s) // len(self.alphabet)
        return k >= 1 and s == self.blocks(k)

    def count(self, n: int) -> int:
        return int(n >= len(self.alphabet) and n % len(self.alphabet) == 0)

    def sample(self, rng, n):
        return self.blocks(n // len(self.alphabet)) if self.count(n) else None

    def prefix_accepts(self, s):
        # The only member prefix is the blocks of length k, k the length of the leading run of a's.
        out = [False] * (len(s) + 1)
        k = len(s) - len(s.lstrip("a"))
        if k and s.startswith(self.blocks(k)):
            out[len(self.alphabet) * k] = True
        return out


@register
class AnBn(EqualBlocks):
    """a^n b^n, n >= 1: a block of a's followed by a block of b's of the same length."""

    name = "anbn"
    alphabet = "ab"
    counters = {"count_diff": ("a", "b")}

    def near_misses(self, rng, s):
        # Same length: one count off by one each way (a^(k+1) b^(k-1), the length-matched form of a^k b^(k+1)),
        # and three with the right counts in the wrong order, so that counting alone cannot separate them.
        k = len(s) // 2
        return ["a" * (k + 1) + "b" * (k - 1), "a" * (k - 1) + "b" * (k + 1),
                "a" * (k - 1) + "ba" + "b" * (k - 1), "b" * k + "a" * k,
                cross_swap(rng, s, range(0, k), range(k, 2 * k))]


@register
class AnBnCn(EqualBlocks):
    """a^n b^n c^n, n >= 1: blocks of a's, b's and c's, all three of the same length."""

    name = "anbncn"
    alphabet = "abc"
    counters = {"a_minus_b": ("a", "b"), "b_minus_c": ("b", "c")}

    def near_misses(self, rng, s):
        k = len(s) // 3
        off_by_one = [(k + 1, k - 1, k), (k - 1, k + 1, k), (k, k + 1, k - 1), (k, k - 1, k + 1),
                      (k + 1, k, k - 1), (k - 1, k, k + 1)]
        a, b, c = off_by_one[random_index(rng, len(off_by_one))]
        blocks = ["a" * k, "b" * k, "c" * k]
        order = rng.permutation(3)
        if list(order) == [0, 1, 2]:
            order = order[::-1]
        return ["a" * a + "b" * b + "c" * c,
                "".join(blocks[i] for i in order),
                cross_swap(rng, s, range(0, k), range(k, 2 * k)),
                cross_swap(rng, s, range(k, 2 * k), range(2 * k, 3 * k)),
                cross_swap(rng, s, range(0, k), range(2 * k, 3 * k))]


class LeadDecided(Language):
    """Base of majority and #a = #b: strings over {a, b} whose membership is a condition on the lead #a - #b alone.

    A subclass sets `name`, writes `accepts_lead` and its own count, sampler and near misses."""

    family = "counter"
    alphabet = "ab"
    decided_by = frozenset({"counts"})
    negative_mixture = {"near_miss": 0.5, "edit": 0.3, "random": 0.2}  # a shuffle never changes membership
    counters = {"count_diff": ("a", "b")}

    def accepts_lead(self, lead: int) -> bool:
        raise NotImplementedError

    def accepts(self, s: str) -> bool:
        a = s.count("a")
        return a + s.count("b") == len(s) and self.accepts_lead(2 * a - len(s))

    def prefix_accepts(self, s):
        out, lead, ok = [self.accepts_lead(0)], 0, True
        for c in s:
            ok = ok and c in "ab"
            lead += 1 if c == "a" else -1
            out.append(ok and self.accepts_lead(lead))
        return out


@register
class Majority(LeadDecided):
    """Strings over {a, b} with strictly more a's than b's."""

    name = "majority"

    def accepts_lead(self, lead):
        return lead > 0

    def count(self, n: int) -> int:
        return sum(math.comb(n, a) for a in range(n // 2 + 1, n + 1))

    def sample(self, rng, n):
        if n == 0:
            return None
        return arrangement(rng, n, n // 2 + 1 + choose_weighted(rng, majority_weights(n)))

    def near_misses(self, rng, s):
        # The closest non-members: a tie (even length) or b ahead by one (odd length), made by turning just enough
        # of s's a's into b's, so the rest of s is unchanged.
        n = len(s)
        flips = s.count("a") - (n - 1) // 2 if n % 2 else s.count("a") - n // 2
        where = [i for i, c in enumerate(s) if c == "a"]
        chars = list(s)
        for i in rng.choice(where, size=flips, replace=False):
            chars[i] = "b"
        return ["".join(chars)]


@cache
def majority_weights(n):
    """Members of length n with n // 2 + 1, n // 2 + 2, ..., n a's."""
    return [math.comb(n, a) for a in range(n // 2 + 1, n + 1)]


@register
class Equal(LeadDecided):
    """Strings over {a, b} with as many a's as b's."""

    name = "equal"
    prefix_flag = "balanced"

    def accepts_lead(self, lead):
        return lead == 0

    def count(self, n: int) -> int:
        return math.comb(n, n // 2) if n % 2 == 0 else 0

    def sample(self, rng, n):
        return arrangement(rng, n, n // 2) if n % 2 == 0 else None

    def near_misses(self, rng, s):
        # One symbol flipped either way: the count difference becomes +2 or -2, the nearest it can be.
        if not s:
            return []
        a_at = [i for i, c in enumerate(s) if c == "a"]
        b_at = [i for i, c in enumerate(s) if c == "b"]
        i, j = a_at[random_index(rng, len(a_at))], b_at[random_index(rng, len(b_at))]
        return [s[:i] + "b" + s[i + 1:], s[:j] + "a" + s[j + 1:]]
