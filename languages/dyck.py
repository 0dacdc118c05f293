"""Bracket languages: Dyck-1, Dyck-k with k = 2, 3, 4 bracket types, the shuffle of k Dyck-1 languages (k = 2, 4, 6)
and Reset-Dyck-1.

All are sampled exactly uniformly by counting. Dyck-1 unranks a uniform rank with ballot numbers. A Dyck-k word is a
Dyck-1 skeleton with an independent uniform type for each matched pair (a bijection, so uniform). A Shuffle-k word is,
pair type by pair type, a choice of the positions that hold that type and a Dyck-1 word there; each word arises from
exactly one such sequence of choices, so drawing each type's share with weight (ways to place it) x (its Dyck-1 words)
x (shuffles of the remaining types on the remaining positions) and the rest uniformly is exact. A Reset-Dyck-1 word is
a Dyck-1 prefix, the reset symbol and a Dyck-1 word: the reset's position is drawn with weight the number of words
with it there, then both parts uniformly.
"""

import math
from functools import cache

import numpy as np

from satbench.languages.base import COUNTS_BOUNDS, Language, register
from satbench.languages.uniform_sampling import ballot, catalan, choose_weighted, random_index, uniform_below


def dyck_word(rng: np.random.Generator, n: int, open_: str = "(", close: str = ")", depth: int = 0) -> str | None:
    """A uniform bracket word of length n that closes `depth` already open brackets and everything it opens, never
    closing more than are open (a Dyck-1 word for depth 0); None when there is none."""
    total = ballot(depth, n)
    if total == 0:
        return None
    rank = uniform_below(rng, total)
    out = []
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


def dyck_prefix(rng: np.random.Generator, n: int, open_: str = "(", close: str = ")") -> str:
    """A uniform bracket word of length n that never closes more than are open (a prefix of some Dyck-1 word).

    Read backwards with the two brackets swapped, a prefix that ends d deep is a word that closes d open brackets, so
    the depth d is drawn with weight ballot(d, n) and the word with `dyck_word`.
    """
    depth = choose_weighted(rng, [ballot(d, n) for d in range(n + 1)])
    return dyck_word(rng, n, close, open_, depth)[::-1]


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
    sources = ("bhattamishra2020",)

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

    def next_symbols(self, s):
        # ( can always follow a live prefix; ) only while some bracket is open.
        out, depth = [], 0
        for i in range(len(s) + 1):
            out.append("" if depth < 0 else "()" if depth else "(")
            if i < len(s) and depth >= 0:
                depth = depth + 1 if s[i] == "(" else depth - 1 if s[i] == ")" else -1
        return out


class Dyck(Language):
    """Base of Dyck-k: properly nested strings of k bracket pairs, the alphabet read two by two as (opening, closing).

    A subclass sets `name` and `alphabet`. Sampling is exactly uniform: a uniform Dyck-1 skeleton and an independent
    uniform type for each matched pair, so count(n) = k^(n/2) Catalan(n/2).
    """

    family = "context-free"
    shortcut_bounds = COUNTS_BOUNDS
    prefix_flag = "balanced"
    sources = ("bhattamishra2020",)

    def __init__(self):
        self.opening, self.closing = self.alphabet[0::2], self.alphabet[1::2]
        self.partner = dict(zip(self.closing, self.opening))
        types = len(self.opening)
        self.to_skeleton = str.maketrans(self.opening + self.closing, "(" * types + ")" * types)
        # What may follow a live prefix whose innermost open bracket is o (None: nothing open): any opening bracket,
        # and the closing partner of o.
        self.followers = {o: "".join(c for c in self.alphabet if c in self.opening or self.partner.get(c) == o)
                          for o in (None, *self.opening)}

    def accepts(self, s: str) -> bool:
        return self.prefix_accepts(s)[-1]

    def count(self, n: int) -> int:
        return len(self.opening) ** (n // 2) * catalan(n // 2) if n % 2 == 0 else 0

    def pair_types(self, rng, pairs):
        """The type of each matched pair, in the order the pairs open: independent and uniform."""
        return rng.integers(len(self.opening), size=pairs).tolist()

    def sample(self, rng, n):
        skeleton = dyck_word(rng, n)
        if skeleton is None:
            return None
        types = iter(self.pair_types(rng, n // 2))
        out, stack = [], []
        for c in skeleton:
            if c == "(":
                stack.append(next(types))
                out.append(self.opening[stack[-1]])
            else:
                out.append(self.closing[stack.pop()])
        return "".join(out)

    def near_misses(self, rng, s):
        # Skeleton near misses (a closing bracket too early), and a crossing such as ( [ ) ]: two closing brackets
        # of different types swapped, which keeps every count and every depth but breaks the nesting.
        out = [self._retype(miss, s) for miss in dyck_near_misses(rng, s.translate(self.to_skeleton))]
        closes = [[i for i, c in enumerate(s) if c == close] for close in self.closing]
        present = [t for t, where in enumerate(closes) if where]
        if len(present) >= 2:
            # With two types present (always so in dyck2) there is no pair of types to draw.
            a, b = present if len(present) == 2 else sorted(rng.choice(present, size=2, replace=False))
            i = closes[a][random_index(rng, len(closes[a]))]
            j = closes[b][random_index(rng, len(closes[b]))]
            chars = list(s)
            chars[i], chars[j] = chars[j], chars[i]
            out.append("".join(chars))
        return out

    def _retype(self, skeleton_miss, original):
        """Give the k-th opening (closing) bracket of a skeleton string the type of the k-th one in the original."""
        opens = iter(c for c in original if c in self.opening)
        closes = iter(c for c in original if c in self.closing)
        return "".join(next(opens) if c == "(" else next(closes) for c in skeleton_miss)

    def _innermost(self, s):
        """For i = 0 .. len(s): the innermost open bracket after s[:i] ("" with none open), or None once the prefix
        is broken (a closing bracket that does not match). One left-to-right pass over a stack."""
        out, stack = [""], []
        for c in s:
            if out[-1] is not None:
                if c in self.opening:
                    stack.append(c)
                elif c in self.partner and stack and stack[-1] == self.partner[c]:
                    stack.pop()
                else:
                    out.append(None)
                    continue
            out.append(None if out[-1] is None else (stack[-1] if stack else ""))
        return out

    def prefix_accepts(self, s):
        return [top == "" for top in self._innermost(s)]

    def next_symbols(self, s):
        return ["" if top is None else self.followers[top or None] for top in self._innermost(s)]


@register
class Dyck2(Dyck):
    """Dyck-2: properly nested strings of two bracket pairs ( ) and [ ].

    Sampling is exactly uniform: a uniform Dyck-1 skeleton and an independent uniform type for each matched pair.
    """

    name = "dyck2"
    alphabet = "()[]"

    def pair_types(self, rng, pairs):
        # A fair coin per pair, [ ] on heads, as dyck2 has always drawn them: its samples for a seed stay the same.
        return (rng.random(pairs) < 0.5).tolist()


@register
class Dyck3(Dyck):
    """Dyck-3: properly nested strings of three bracket pairs ( ), [ ] and { }.

    Sampling is exactly uniform: a uniform Dyck-1 skeleton and an independent uniform type for each matched pair.
    """

    name = "dyck3"
    alphabet = "()[]{}"


@register
class Dyck4(Dyck):
    """Dyck-4: properly nested strings of four bracket pairs ( ), [ ], { } and < >.

    Sampling is exactly uniform: a uniform Dyck-1 skeleton and an independent uniform type for each matched pair.
    """

    name = "dyck4"
    alphabet = "()[]{}<>"


class ShuffleDyck(Language):
    """Base of Shuffle-k: strings whose projection onto each of k bracket pairs is a Dyck-1 word.

    A subclass sets `name`, `alphabet` (read two by two as (opening, closing)) and `counters`. Sampling is exactly
    uniform: the first type's share 2j of the n positions is drawn with weight C(n, 2j) Catalan(j) S(k-1, n-2j), S
    counting the shuffles of the other types, then its positions and its Dyck-1 word uniformly, and so on.
    """

    family = "counter"
    shortcut_bounds = COUNTS_BOUNDS
    prefix_flag = "balanced"
    sources = ("bhattamishra2020",)

    def __init__(self):
        self.pairs = [self.alphabet[i:i + 2] for i in range(0, len(self.alphabet), 2)]
        # symbol -> (its pair type, +1 opening / -1 closing)
        self.step = {c: (t, 1 - 2 * side) for t, pair in enumerate(self.pairs) for side, c in enumerate(pair)}

    def accepts(self, s: str) -> bool:
        depth = [0] * len(self.pairs)
        for c in s:
            if c not in self.step:
                return False
            t, step = self.step[c]
            depth[t] += step
            if depth[t] < 0:
                return False
        return not any(depth)

    def count(self, n: int) -> int:
        return shuffle_count(len(self.pairs), n)

    def sample(self, rng, n):
        if n % 2:
            return None
        types = len(self.pairs)
        last = types - 1
        owner = np.full(n, last)  # the pair type at each position; the last type takes what the others leave
        free = np.arange(n)
        words = []
        for t in range(last):
            j = choose_weighted(rng, shuffle_split_weights(types - t, len(free)))
            owner[free[rng.choice(len(free), size=2 * j, replace=False)]] = t
            free = free[owner[free] == last]
            words.append(dyck_word(rng, 2 * j, *self.pairs[t]))
        words.append(dyck_word(rng, len(free), *self.pairs[last]))
        out = np.empty(n, dtype=np.uint8)
        for t, word in enumerate(words):
            out[owner == t] = np.frombuffer(word.encode("ascii"), dtype=np.uint8)
        return out.tobytes().decode("ascii")

    def near_misses(self, rng, s):
        # Break one projection with a Dyck-1 near miss and put it back at the same positions: the counts of all the
        # symbols stay those of a member.
        chars = np.frombuffer(s.encode("ascii"), dtype=np.uint8)
        out = []
        for pair in self.pairs:
            at = (chars == ord(pair[0])) | (chars == ord(pair[1]))
            for miss in dyck_near_misses(rng, chars[at].tobytes().decode("ascii"), *pair):
                broken = chars.copy()
                broken[at] = np.frombuffer(miss.encode("ascii"), dtype=np.uint8)
                out.append(broken.tobytes().decode("ascii"))
        return out

    def prefix_accepts(self, s):
        out, depth, broken = [True], [0] * len(self.pairs), False
        for c in s:
            if not broken:
                t, step = self.step.get(c, (0, None))
                broken = step is None or depth[t] + step < 0
                if not broken:
                    depth[t] += step
            out.append(not broken and not any(depth))
        return out

    def next_symbols(self, s):
        # Every opening bracket can follow a live prefix; a closing one while its own type has an open bracket.
        out, depth, broken = [], [0] * len(self.pairs), False
        for i in range(len(s) + 1):
            out.append("" if broken else "".join(o + c if d else o for (o, c), d in zip(self.pairs, depth)))
            if i < len(s) and not broken:
                t, step = self.step.get(s[i], (0, None))
                broken = step is None or depth[t] + step < 0
                if not broken:
                    depth[t] += step
        return out


@cache
def shuffle_count(types: int, n: int) -> int:
    """Members of length n of the shuffle of `types` Dyck-1 languages over distinct bracket pairs."""
    if n % 2:
        return 0
    if types == 1:
        return catalan(n // 2)
    return sum(shuffle_split_weights(types, n))


def shuffle_split_weights(types, n):
    """Weight of "the first of `types` pair types fills 2j of the n positions": the members of length n with that split.

    Not cached: below the top level the remaining length differs from draw to draw (a few ms at n = 500). The
    binomials C(n, 2j) are stepped from one j to the next, much cheaper than computing each afresh.
    """
    weights, binomial = [], 1
    for j in range(n // 2 + 1):
        weights.append(binomial * catalan(j) * shuffle_count(types - 1, n - 2 * j))
        binomial = binomial * (n - 2 * j) * (n - 2 * j - 1) // ((2 * j + 1) * (2 * j + 2))
    return weights


@register
class Shuffle2(ShuffleDyck):
    """Shuffle-Dyck-2: strings over ( ) [ ] whose ( ) symbols and whose [ ] symbols each form a Dyck-1 word.

    Sampling is exactly uniform, not approximately: a member of length n is one triple (the 2j positions that hold
    ( ), a Dyck-1 word there, a Dyck-1 word over [ ] in the other n - 2j), so j is drawn with weight
    C(n, 2j) Cat(j) Cat(n/2 - j) and the rest uniformly. tests/test_languages.py measures it (chi-square and total
    variation against uniform at lengths 6 and 8).
    """

    name = "shuffle2"
    alphabet = "()[]"
    counters = {"round_depth": ("(", ")"), "square_depth": ("[", "]")}


@register
class Shuffle4(ShuffleDyck):
    """Shuffle-4: strings over ( ) [ ] { } < > whose projection onto each of the four pairs is a Dyck-1 word.

    The pairs are those of Bhattamishra et al.'s Shuffle-4. Sampling is exactly uniform (see ShuffleDyck).
    """

    name = "shuffle4"
    alphabet = "()[]{}<>"
    counters = {"round_depth": ("(", ")"), "square_depth": ("[", "]"), "curly_depth": ("{", "}"),
                "angle_depth": ("<", ">")}


@register
class Shuffle6(ShuffleDyck):
    """Shuffle-6: strings over ( ) [ ] { } < > + - a b whose projection onto each of the six pairs is a Dyck-1 word.

    The pairs are those of Bhattamishra et al.'s Shuffle-6, whose fifth and sixth pairs are + - and a b (+ and a
    open). Sampling is exactly uniform (see ShuffleDyck).
    """

    name = "shuffle6"
    alphabet = "()[]{}<>+-ab"
    counters = {"round_depth": ("(", ")"), "square_depth": ("[", "]"), "curly_depth": ("{", "}"),
                "angle_depth": ("<", ">"), "plus_minus_depth": ("+", "-"), "ab_depth": ("a", "b")}


@register
class ResetDyck(Language):
    """Reset-Dyck-1: a prefix of a Dyck-1 word, one reset symbol 1, then a Dyck-1 word.

    Bhattamishra et al.'s generator writes exactly these strings (any prefix of a Dyck-1 word, 1, a Dyck-1 word); their
    next-symbol targets count the depth from the last 1, which also reads strings with several 1s, but the generator
    never writes one, so the suite follows the generator: exactly one 1. Sampling is exactly uniform: the reset's
    position k is drawn with weight C(k, floor(k/2)) Catalan((n-1-k)/2), the number of members with it there.
    """

    name = "reset_dyck"
    family = "counter"
    alphabet = "()1"
    shortcut_bounds = COUNTS_BOUNDS
    prefix_flag = "balanced_since_reset"
    sources = ("bhattamishra2020",)

    def _states(self, s):
        """(resets read, depth since the last reset) before each symbol of s and after the last; None once dead."""
        state = (0, 0)
        yield state
        for c in s:
            if state is not None:
                resets, depth = state
                if c == "1":
                    state = (1, 0) if resets == 0 else None
                elif c in "()":
                    depth += 1 if c == "(" else -1
                    state = (resets, depth) if depth >= 0 else None
                else:
                    state = None
            yield state

    def accepts(self, s: str) -> bool:
        return self.prefix_accepts(s)[-1]

    def prefix_accepts(self, s):
        return [state == (1, 0) for state in self._states(s)]

    def next_symbols(self, s):
        # ( can always follow a live prefix; ) while a bracket opened since the reset is open; 1 until it is read.
        return ["" if state is None else "(" + ")" * (state[1] > 0) + "1" * (state[0] == 0)
                for state in self._states(s)]

    def count(self, n: int) -> int:
        return sum(reset_weights(n))

    def sample(self, rng, n):
        weights = reset_weights(n)
        if not any(weights):
            return None
        k = choose_weighted(rng, weights)
        return dyck_prefix(rng, k) + "1" + dyck_word(rng, n - 1 - k)

    def near_misses(self, rng, s):
        # All keep the counts of s. The reset moved elsewhere (the part after it no longer balances, unless it lands
        # on a return to depth 0 of the Dyck-1 word); Dyck-1 near misses of the word after the reset (they would balance
        # if the reset were ignored and the prefix were open deep enough); and a dip below zero before the reset.
        reset = s.index("1")
        before, after = s[:reset], s[reset + 1:]
        rest = before + after
        where = random_index(rng, len(rest))
        out = [rest[:where] + "1" + rest[where:]] if where != reset else []
        out += [before + "1" + miss for miss in dyck_near_misses(rng, after)]
        depth, dips = 0, []
        for i, c in enumerate(before):
            if depth == 0 and c == "(" and ")" in before[i:]:
                dips.append(i)
            depth += 1 if c == "(" else -1
        if dips:
            p = dips[random_index(rng, len(dips))]
            q = before.index(")", p)
            out.append(before[:p] + ")" + before[p + 1:q] + "(" + before[q + 1:] + "1" + after)
        return out


@cache
def reset_weights(n):
    """Members of length n with the reset at position k, k = 0 .. n-1: C(k, floor(k/2)) prefixes of Dyck-1 words of
    length k (ballot(d, k) of them end d deep) times Catalan((n-1-k)/2) Dyck-1 words after it."""
    return [math.comb(k, k // 2) * catalan((n - 1 - k) // 2) if (n - 1 - k) % 2 == 0 else 0 for k in range(n)]
