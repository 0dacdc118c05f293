"""Bracket languages: Dyck-1, Dyck-2, and the shuffle of two Dyck-1 languages.

All three are sampled exactly uniformly. Dyck-1 unranks a uniform rank with ballot numbers. A Dyck-2 word is a
Dyck-1 skeleton with an independent uniform type for each matched pair (a bijection, so uniform). A Shuffle-2 word is
a choice of which positions hold ( ), a Dyck-1 word there and another over [ ] elsewhere; each word arises from exactly
one such triple, so choosing the split with weight C(n, 2j) Cat(j) Cat(n/2 - j) and the rest uniformly is exact.
"""

import math
from functools import cache

import numpy as np

from languages.base import COUNTS_BOUNDS, Language, register
from languages.uniform_sampling import ballot, catalan, choose_weighted, random_index, uniform_below


def dyck_word(rng: np.random.Generator, n: int, open_: str = "(", close: str = ")") -> str | None:
    """A uniform balanced bracket word of length n (None for odd n)."""
    if n % 2:
        return None
    rank = uniform_below(rng, ballot(0, n))
    out, depth = [], 0
    for remaining in range(n - 1, -1, -1):
        opening = ballot(depth + 1, remaining)
        if rank < opening:
            out.append(open_)
            depth += 1
        else:
            rank -= opening
            out.append(close)
            depth -= 1
    return "".join(out)


def depth_profile_ok(s: str, open_: str, close: str) -> bool:
    """Balanced over the pair (open_, close): never below zero, zero at the end; other symbols are ignored."""
    depth = 0
    for c in s:
        depth += (c == open_) - (c == close)
        if depth < 0:
            return False
    return depth == 0


def dyck_near_misses(rng: np.random.Generator, s: str, open_: str = "(", close: str = ")") -> list[str]:
    """Balanced counts, wrong order: strings with a prefix that closes more brackets than it opened.

    A dip at a random return to depth 0 (the bracket opened there swapped with the next closing one), a random
    rotation, and a swap of a random opening bracket with a random later closing one.
    """
    n = len(s)
    if n < 2:
        return []
    out = []
    depth, returns = 0, []
    for i, c in enumerate(s):
        if depth == 0 and c == open_:
            returns.append(i)
        depth += 1 if c == open_ else -1
    if returns:
        p = returns[random_index(rng, len(returns))]
        q = s.index(close, p)
        out.append(s[:p] + close + s[p + 1:q] + open_ + s[q + 1:])
    r = 1 + random_index(rng, n - 1)
    out.append(s[r:] + s[:r])
    opens = [i for i, c in enumerate(s) if c == open_]
    i = opens[random_index(rng, len(opens))]
    closes = [j for j in range(i + 1, n) if s[j] == close]
    if closes:
        j = closes[random_index(rng, len(closes))]
        out.append(s[:i] + close + s[i + 1:j] + open_ + s[j + 1:])
    return out


@register
class Dyck1(Language):
    """Dyck-1: balanced strings of one bracket pair ( ), every prefix opening at least as many as it closes.

    Sampling is exactly uniform: a uniform rank below Catalan(n/2), unranked with ballot numbers.
    """

    name = "dyck1"
    family = "counter"
    alphabet = "()"
    shortcut_bounds = COUNTS_BOUNDS
    counters = {"depth": ("(", ")")}
    prefix_flag = "balanced"

    def accepts(self, s: str) -> bool:
        return depth_profile_ok(s, "(", ")") and s.count("(") + s.count(")") == len(s)

    def count(self, n: int) -> int:
        return catalan(n // 2) if n % 2 == 0 else 0

    def sample(self, rng, n):
        return dyck_word(rng, n)

    def near_misses(self, rng, s):
        return dyck_near_misses(rng, s)

    def prefix_accepts(self, s):
        out, depth = [True], 0
        for c in s:
            if depth >= 0:
                depth = depth + 1 if c == "(" else depth - 1 if c == ")" else -1
            out.append(depth == 0)
        return out


PAIRS = {")": "(", "]": "["}


@register
class Dyck2(Language):
    """Dyck-2: properly nested strings of two bracket pairs ( ) and [ ].

    Sampling is exactly uniform: a uniform Dyck-1 skeleton and an independent uniform type for each matched pair.
    """

    name = "dyck2"
    family = "context-free"
    alphabet = "()[]"
    shortcut_bounds = COUNTS_BOUNDS
    prefix_flag = "balanced"

    def accepts(self, s: str) -> bool:
        return self.prefix_accepts(s)[-1]

    def count(self, n: int) -> int:
        return 2 ** (n // 2) * catalan(n // 2) if n % 2 == 0 else 0

    def sample(self, rng, n):
        skeleton = dyck_word(rng, n)
        if skeleton is None:
            return None
        square = iter(rng.random(n // 2) < 0.5)  # one type per matched pair, in the order the pairs open
        out, stack = [], []
        for c in skeleton:
            if c == "(":
                stack.append(next(square))
                out.append("[" if stack[-1] else "(")
            else:
                out.append("]" if stack.pop() else ")")
        return "".join(out)

    def near_misses(self, rng, s):
        # Skeleton near misses (a closing bracket too early), and a crossing such as ( [ ) ]: two closing brackets
        # of different types swapped, which keeps every count and every depth but breaks the nesting.
        out = dyck_near_misses(rng, s.replace("[", "(").replace("]", ")"))
        out = [_retype(m, s) for m in out]
        round_closes = [i for i, c in enumerate(s) if c == ")"]
        square_closes = [i for i, c in enumerate(s) if c == "]"]
        if round_closes and square_closes:
            i = round_closes[random_index(rng, len(round_closes))]
            j = square_closes[random_index(rng, len(square_closes))]
            chars = list(s)
            chars[i], chars[j] = chars[j], chars[i]
            out.append("".join(chars))
        return out

    def prefix_accepts(self, s):
        out, stack, broken = [True], [], False
        for c in s:
            if not broken:
                if c in "([":
                    stack.append(c)
                elif c in PAIRS and stack and stack[-1] == PAIRS[c]:
                    stack.pop()
                else:
                    broken = True
            out.append(not broken and not stack)
        return out


def _retype(skeleton_miss: str, original: str) -> str:
    """Give the k-th opening (closing) bracket of a skeleton string the type of the k-th one in the original."""
    opens = iter(c for c in original if c in "([")
    closes = iter(c for c in original if c in ")]")
    return "".join(next(opens) if c == "(" else next(closes) for c in skeleton_miss)


@register
class Shuffle2(Language):
    """Shuffle-Dyck-2: strings over ( ) [ ] whose ( ) symbols and whose [ ] symbols each form a Dyck-1 word.

    Sampling is exactly uniform, not approximately: a member of length n is one triple (the 2j positions that hold
    ( ), a Dyck-1 word there, a Dyck-1 word over [ ] in the other n - 2j), so j is drawn with weight
    C(n, 2j) Cat(j) Cat(n/2 - j) and the rest uniformly. tests/test_languages.py measures it (chi-square and total
    variation against uniform at lengths 6 and 8).
    """

    name = "shuffle2"
    family = "counter"
    alphabet = "()[]"
    shortcut_bounds = COUNTS_BOUNDS
    counters = {"round_depth": ("(", ")"), "square_depth": ("[", "]")}
    prefix_flag = "balanced"

    def accepts(self, s: str) -> bool:
        round_ = "".join(c for c in s if c in "()")
        square = "".join(c for c in s if c in "[]")
        return len(round_) + len(square) == len(s) and depth_profile_ok(round_, "(", ")") \
            and depth_profile_ok(square, "[", "]")

    def count(self, n: int) -> int:
        return sum(shuffle_split_weights(n)) if n % 2 == 0 else 0

    def sample(self, rng, n):
        if n % 2:
            return None
        j = choose_weighted(rng, shuffle_split_weights(n))
        round_at = np.zeros(n, dtype=bool)
        round_at[rng.choice(n, size=2 * j, replace=False)] = True
        return _interleave(round_at, dyck_word(rng, 2 * j), dyck_word(rng, n - 2 * j, "[", "]"))

    def near_misses(self, rng, s):
        # Break one of the two projections with a Dyck-1 near miss and put it back at the same positions: the
        # counts of all four symbols stay those of a member.
        round_at = np.array([c in "()" for c in s], dtype=bool)
        round_ = "".join(c for c in s if c in "()")
        square = "".join(c for c in s if c in "[]")
        out = [_interleave(round_at, miss, square) for miss in dyck_near_misses(rng, round_)]
        out += [_interleave(round_at, round_, miss) for miss in dyck_near_misses(rng, square, "[", "]")]
        return out

    def prefix_accepts(self, s):
        out, round_, square = [True], 0, 0
        for c in s:
            if round_ >= 0 and square >= 0:
                if c == "(":
                    round_ += 1
                elif c == ")":
                    round_ -= 1
                elif c == "[":
                    square += 1
                elif c == "]":
                    square -= 1
                else:
                    round_ = -1
            out.append(round_ == 0 and square == 0)
        return out


@cache
def shuffle_split_weights(n):
    """Weight of "2j of the n positions hold ( )": the members of length n with that split."""
    m = n // 2
    return [math.comb(n, 2 * j) * catalan(j) * catalan(m - j) for j in range(m + 1)]


def _interleave(round_at, round_word, square_word):
    """The word with round_word at the positions where round_at is True and square_word elsewhere."""
    out = np.empty(len(round_at), dtype=np.uint8)
    out[round_at] = np.frombuffer(round_word.encode("ascii"), dtype=np.uint8)
    out[~round_at] = np.frombuffer(square_word.encode("ascii"), dtype=np.uint8)
    return out.tobytes().decode("ascii")
