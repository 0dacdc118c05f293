"""Counter languages: a^n b^n, a^n b^n c^n, a^n b^n c^n d^n, majority, #a = #b, and n-ary Boolean expressions.

Each is sampled exactly uniformly: the block languages have one member per admissible length; majority and equal draw
the number of a's with binomial weights and then a uniform arrangement of that many a's; Boolean expressions unrank a
uniform rank with counts of the ways to complete an expression that still needs c operands in r symbols.
"""

import itertools
import math
from functools import cache

import numpy as np

from satbench.languages.base import COUNTS_BOUNDS, Language, register
from satbench.languages.uniform_sampling import choose_weighted, random_index, uniform_below


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
    sources = ("bhattamishra2020",)

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

    def next_symbols(self, s):
        # A live prefix is some full blocks of length k (k the length of the first block) and a started block of at
        # most k. Its letter can follow while the first block is being written or the block is shorter than k; the
        # next letter once the block is k long (or, in the first block, once it is not empty).
        letters, out = self.alphabet, []
        block = run = k = 0
        for i in range(len(s) + 1):
            if block < 0:
                out.append("")
            else:
                first = block == 0
                more = letters[block] if first or run < k else ""
                follow = letters[block + 1] if block + 1 < len(letters) and run and (first or run == k) else ""
                out.append(more + follow)
            if i < len(s) and block >= 0:
                if s[i] not in out[-1]:
                    block = -1
                elif s[i] == letters[block]:
                    run += 1
                else:
                    k = k or run
                    block, run = block + 1, 1
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


@register
class AnBnCnDn(EqualBlocks):
    """a^n b^n c^n d^n, n >= 1: blocks of a's, b's, c's and d's, all four of the same length."""

    name = "anbncndn"
    alphabet = "abcd"
    counters = {"a_minus_b": ("a", "b"), "b_minus_c": ("b", "c"), "c_minus_d": ("c", "d")}

    def near_misses(self, rng, s):
        # As for a^n b^n c^n: one block one longer and another one shorter, the blocks in another order, and one symbol
        # swapped between two blocks (each adjacent pair, and a random pair), the last two keeping every count.
        k = len(s) // 4
        longer, shorter = rng.choice(4, size=2, replace=False)
        lengths = [k] * 4
        lengths[longer] += 1
        lengths[shorter] -= 1
        order = rng.permutation(4)
        if list(order) == [0, 1, 2, 3]:
            order = order[::-1]
        first, second = sorted(rng.choice(4, size=2, replace=False))
        block = [range(i * k, (i + 1) * k) for i in range(4)]
        return ["".join(c * m for c, m in zip("abcd", lengths)),
                "".join("abcd"[i] * k for i in order),
                *(cross_swap(rng, s, block[i], block[i + 1]) for i in range(3)),
                cross_swap(rng, s, block[first], block[second])]


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

    def next_symbols(self, s):
        # Either symbol can always follow: appending enough a's (majority) or the missing symbols (equal) turns any
        # string over {a, b} into a member. Only a foreign symbol kills the prefix.
        out, ok = ["ab"], True
        for c in s:
            ok = ok and c in "ab"
            out.append("ab" if ok else "")
        return out


@register
class Majority(LeadDecided):
    """Strings over {a, b} with strictly more a's than b's."""

    name = "majority"
    sources = ("butoi2025",)

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


class BooleanExpressions(Language):
    """Base of BoolExp-n: Boolean expressions in prefix notation over the operands 0 and 1 and one operator of each
    arity 1 .. n. A subclass sets `name` and `alphabet`: 0, 1, then the operators in order of arity.

    Membership is well-formedness, not the expression's value. Reading left to right, an expression that still needs c
    operands needs c - 1 after an operand and c + a - 1 after an operator of arity a; a string is a member when that
    count, 1 at the start, first reaches 0 at its last symbol.

    The sampler unranks with a table of completion counts that grows with the longest length asked for: n^2 / 2
    integers of up to about 3n bits, 15 MB at n = 500 and 100 MB at n = 1000 (lengths in the thousands need GBs).
    """

    family = "counter"
    shortcut_bounds = COUNTS_BOUNDS
    prefix_flag = "complete"
    sources = ("bhattamishra2020",)

    def __init__(self):
        self.step = {"0": -1, "1": -1} | {op: arity - 1 for arity, op in enumerate(self.alphabet[2:], start=1)}
        # completions[r][c]: strings of r symbols that complete an expression still needing c operands (0 for c > r).
        self.completions = [[1]]

    def _completions_up_to(self, n):
        arities = len(self.alphabet) - 2
        while len(self.completions) <= n:
            last = self.completions[-1]
            r = len(last)
            below = list(itertools.accumulate(last, initial=0))
            # From c: an operand (two of them) leads to c - 1, the operators to c .. c + arities - 1.
            self.completions.append([0] + [2 * last[c - 1] + below[min(c + arities, r)] - below[c]
                                           for c in range(1, r + 1)])
        return self.completions

    def _needed(self, s):
        """The operands still needed before each symbol of s and after the last; None once the prefix is dead."""
        needed = 1
        yield needed
        for c in s:
            needed = None if needed is None or needed == 0 or c not in self.step else needed + self.step[c]
            yield needed

    def accepts(self, s: str) -> bool:
        return self.prefix_accepts(s)[-1]

    def prefix_accepts(self, s):
        return [needed == 0 for needed in self._needed(s)]

    def next_symbols(self, s):
        # Any symbol can follow a prefix that still needs operands: the operands it then needs can always be given.
        return [self.alphabet if needed else "" for needed in self._needed(s)]

    def count(self, n: int) -> int:
        return self._completions_up_to(n)[n][1] if n else 0

    def sample(self, rng, n):
        total = self.count(n)
        if not total:
            return None
        rank = uniform_below(rng, total)
        out, needed = [], 1
        for remaining in range(n - 1, -1, -1):
            row = self.completions[remaining]
            for c in self.alphabet:
                after = needed + self.step[c]
                ways = row[after] if after < len(row) else 0
                if rank < ways:
                    out.append(c)
                    needed = after
                    break
                rank -= ways
        return "".join(out)

    def near_misses(self, rng, s):
        # Both keep every count, which is what the operand count must match; a negative with other counts (one operand
        # short, say) would be easy for a linear classifier on counts. A rotation is never a member: of the rotations
        # of a string whose counts fit, exactly one completes at its end (the cycle lemma). An operator swapped with a
        # later operand makes the expression close too early unless it needed more than enough operands in between.
        n = len(s)
        if n < 2:
            return []
        r = 1 + random_index(rng, n - 1)
        out = [s[r:] + s[:r]]
        operators = [i for i, c in enumerate(s) if c not in "01"]
        if operators:
            i = operators[random_index(rng, len(operators))]
            operands = [j for j in range(i + 1, n) if s[j] in "01"]
            j = operands[random_index(rng, len(operands))]
            out.append(s[:i] + s[j] + s[i + 1:j] + s[i] + s[j + 1:])
        return out


@register
class BoolExp3(BooleanExpressions):
    """BoolExp-3: Boolean expressions in prefix notation over 0, 1 and the operators ~ + > of arity 1, 2, 3.

    Bhattamishra et al.'s BoolExp-3, with their symbols. Membership is well-formedness (their next-symbol targets mark
    only the end of a complete expression). Sampling is exactly uniform: a uniform rank, unranked symbol by symbol with
    the counts of completions.
    """

    name = "boolexp3"
    alphabet = "01~+>"


@register
class BoolExp5(BooleanExpressions):
    """BoolExp-5: Boolean expressions in prefix notation over 0, 1 and operators ~ + > * & of arity 1 to 5.

    Bhattamishra et al.'s BoolExp-5. Their generator stops at arity 3 (~ + >, the symbols kept here); * and & for
    arities 4 and 5 are the suite's choice. Sampling is exactly uniform, as for boolexp3.
    """

    name = "boolexp5"
    alphabet = "01~+>*&"
