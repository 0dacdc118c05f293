"""Context-sensitive languages of FLaRe (Butoi et al. 2025): marked copy, missing duplicate, odds first, bucket sort,
binary addition, binary multiplication and square root.

Every sampler here but multiplication's is exactly uniform over the members of the requested length. FLaRe's own
samplers are uniform at a length for copy, odds first and bucket sort only: its missing-duplicate sampler favours
words with few 1s, and its arithmetic samplers split the length among the fields by a Dirichlet draw, then draw
values, which is not uniform over the members of a length. How each is exact:
- copy, odds first, bucket sort: a uniform word w, which determines the member (languages.context_free).
- missing duplicate: a member is (w, a position j where w has a 1, which copy holds the gap), so j and the copy are
  uniform and w is uniform among the words with a 1 at j.
- addition and square root: a member is (operand widths, operand values); the members of each choice of widths are
  counted in closed form, the widths drawn with those counts, then the values uniformly.
- multiplication is the exception: exactly uniform within two strata, members with a zero operand (which would be
  almost all members otherwise) drawn with a fixed probability. Among nonzero operands the members of given widths
  are lattice points under a hyperbola, with no closed form; the sampler proposes uniformly from a superset that can
  be counted (operands of bit lengths p and q with a product field of at least p + q - 1 bits, which every product
  needs) and rejects the proposals whose product does not fit: rejection from a uniform proposal is exactly uniform
  over what it accepts.
"""

import math
import re
from functools import cache
from typing import ClassVar

from satbench.languages.base import Language, random_string, register
from satbench.languages.context_free import MarkedTransduction, flip, swap_two_different
from satbench.languages.uniform_sampling import choose_weighted, random_index, uniform_below

# ---- w # f(w) -------------------------------------------------------------------------------------------------


@register
class MarkedCopy(MarkedTransduction):
    """w#w: a binary word w, the marker #, and w again."""

    name = "marked_copy"
    family = "context-sensitive"
    alphabet = "01#"
    sources = ("butoi2025",)

    def transform(self, w):
        return w

    def wrong_outputs(self, w):
        return [w[::-1], w[1:] + w[:1]]  # reversed instead of copied; copied one place rotated


@register
class OddsFirst(MarkedTransduction):
    """w#v, w a binary word, v = the symbols of w at odd positions (1st, 3rd, ...), then those at even ones."""

    name = "odds_first"
    family = "context-sensitive"
    alphabet = "01#"
    sources = ("butoi2025",)

    def transform(self, w):
        return w[0::2] + w[1::2]

    def wrong_outputs(self, w):
        return [w, w[1::2] + w[0::2]]  # copied unchanged; evens first


@register
class BucketSort(MarkedTransduction):
    """w#sorted(w): a word w over the digits 1-5, the marker #, and the digits of w in increasing order."""

    name = "bucket_sort"
    family = "context-sensitive"
    letters = "12345"
    alphabet = "12345#"
    sources = ("butoi2025",)

    def transform(self, w):
        return "".join(sorted(w))

    def wrong_outputs(self, w):
        return [w, "".join(sorted(w, reverse=True))]  # copied unsorted; sorted the wrong way


# ---- missing duplicate ------------------------------------------------------------------------------------------


@register
class MissingDuplicate(Language):
    """ww for a nonempty binary word w, with one of its 1s replaced by _ (FLaRe's "missing duplicate string").

    Sampling is exactly uniform: the gap's position j within w and the copy that holds it uniformly, then w uniform
    among the words with a 1 at j (each member is one such triple). FLaRe draws w uniformly with a 1 forced at a
    random place and then the gap among the 1s of ww, which favours words with few 1s.
    """

    name = "missing_duplicate"
    family = "context-sensitive"
    alphabet = "01_"
    sources = ("butoi2025",)

    def accepts(self, s: str) -> bool:
        k = len(s) // 2
        whole = s.replace("_", "1")
        return len(s) % 2 == 0 and s.count("_") == 1 and set(s) <= {"0", "1", "_"} and whole[:k] == whole[k:]

    def count(self, n: int) -> int:
        return n // 2 * 2 ** (n // 2) if n % 2 == 0 else 0  # k gap positions in w times 2^(k-1) words, two copies

    def sample(self, rng, n):
        k = n // 2
        if n % 2 or k == 0:
            return None
        j = uniform_below(rng, k)
        w = random_string(rng, k, "01")
        w = w[:j] + "1" + w[j + 1:]
        gap = j + k * uniform_below(rng, 2)
        whole = w + w
        return whole[:gap] + "_" + whole[gap + 1:]

    def near_misses(self, rng, s):
        k = len(s) // 2
        gap = s.index("_")
        whole = s.replace("_", "1")
        misses = []
        zeros = [i for i, c in enumerate(whole) if c == "0"]
        if zeros:
            # The gap where a 0 was: filling it with 1 no longer gives ww.
            i = zeros[random_index(rng, len(zeros))]
            misses.append(whole[:i] + "_" + whole[i + 1:])
        bits = [i for i in range(len(s)) if i != gap]
        if bits:
            # One other bit wrong, and two different symbols of one copy swapped (the gap may be one of them).
            i = bits[random_index(rng, len(bits))]
            misses.append(s[:i] + flip(s[i]) + s[i + 1:])
            half = random_index(rng, 2) * k
            swapped = swap_two_different(rng, s[half:half + k])
            if swapped is not None:
                misses.append(s[:half] + swapped + s[half + k:])
        return misses

    def prefix_accepts(self, s):
        return [i % 2 == 0 and self.accepts(s[:i]) for i in range(len(s) + 1)]

    def next_symbols(self, s):
        # A binary prefix u begins u1 _ u... (and with a longer w, any prefix with one gap is a prefix of some
        # member), so 0, 1 and the gap follow until the gap is placed, 0 and 1 after it.
        out, gaps = [], 0
        for i in range(len(s) + 1):
            out.append("01_" if gaps == 0 else "01")
            if i == len(s):
                break
            gaps += s[i] == "_"
            if s[i] not in self.alphabet or gaps > 1:
                return out + [""] * (len(s) - i)
        return out


# ---- binary arithmetic ------------------------------------------------------------------------------------------


def decode(bits: str) -> int:
    """The value of a binary numeral written least significant bit first (FLaRe's encoding)."""
    return int(bits[::-1], 2)


def encode(value: int, width: int) -> str:
    """value in `width` bits, least significant first: the high zeros are the numeral's trailing zeros."""
    return format(value, "b")[::-1].ljust(width, "0")


class BinaryArithmetic(Language):
    """Base of FLaRe's arithmetic languages: nonempty binary numerals, least significant bit first, high zeros allowed.

    The fields are separated by the symbols of `separators`, the last field holds the result. A subclass sets
    `name`, `separators` (alphabet = "01" + separators) and writes `result` and a sampler.
    """

    family = "context-sensitive"
    sources = ("butoi2025",)
    separators: ClassVar[str] = ""

    def __init__(self):
        self.pattern = re.compile("([01]+)" + "".join(re.escape(c) + "([01]+)" for c in self.separators))

    def result(self, *operands: int) -> int:
        raise NotImplementedError

    def wrong_results(self, *operands: int) -> list[int]:
        return []

    def accepts(self, s: str) -> bool:
        match = self.pattern.fullmatch(s)
        if match is None:
            return False
        *operands, value = map(decode, match.groups())
        return self.result(*operands) == value

    def near_misses(self, rng, s):
        *fields, z = self.pattern.fullmatch(s).groups()
        operands = [decode(f) for f in fields]
        head, width, value = s[:len(s) - len(z)], len(z), decode(z)
        misses = []
        # The result off in one bit, off by one, or one of the wrong results a model might compute.
        i = random_index(rng, width)
        misses.append(head + z[:i] + flip(z[i]) + z[i + 1:])
        for wrong in (value - 1, value + 1, *self.wrong_results(*operands)):
            if 0 <= wrong < 2 ** width and wrong != value:
                misses.append(head + encode(wrong, width))
        # An operand off in one bit, the result kept (a member only when the other operand is 0).
        i = random_index(rng, len(head))
        if head[i] in "01":
            misses.append(head[:i] + flip(head[i]) + head[i + 1:] + z)
        return misses

    def prefix_accepts(self, s):
        return self._scan(s)[0]

    def next_symbols(self, s):
        return self._scan(s)[1]

    def _scan(self, s):
        """(is a member, the symbols that can follow) for every prefix s[:i], i = 0..len(s), in one pass.

        Operand fields take any bits and end at their separator once nonempty. In the result field only one bit can
        follow, the next bit of the result (0 forever after its highest 1), and a prefix is a member once every bit
        of the result has been read.
        """
        accepted, follows = [], []
        last = len(self.separators)
        field, bits, operands, target, alive = 0, [], [], 0, True
        for i in range(len(s) + 1):
            if not alive:
                done, follow = False, ""
            elif field < last:
                done, follow = False, "01" + self.separators[field] if bits else "01"
            else:
                done, follow = len(bits) >= max(1, target.bit_length()), str(target >> len(bits) & 1)
            accepted.append(done)
            follows.append(follow)
            if i == len(s) or not alive:
                continue
            c = s[i]
            if field == last:
                alive = c == follows[-1]
                bits.append(c)
            elif c in "01":
                bits.append(c)
            elif bits and c == self.separators[field]:
                operands.append(decode("".join(bits)))
                field, bits = field + 1, []
                if field == last:
                    target = self.result(*operands)
            else:
                alive = False
        return accepted, follows


def addition_pairs(a: int, b: int, c: int) -> int:
    """Pairs x < 2^a, y < 2^b with x + y < 2^c: the members x + y = z with fields of a, b and c bits."""
    if a < c and b < c:
        return 2 ** (a + b)  # every pair: x + y <= 2^a + 2^b - 2 < 2^c
    if a >= c and b >= c:
        return 2 ** (c - 1) * (2 ** c + 1)  # x + y < 2^c alone bounds both: (2^c + 1) choose 2
    a = min(a, b)  # one narrow operand x < 2^a <= 2^(c-1): the other takes 2^c - x values
    return 2 ** (a + c) - 2 ** (a - 1) * (2 ** a - 1)


def addition_sum(s: int, c: int) -> int:
    """Sum of addition_pairs(a, s - a, c) over a = 1 .. s - 1, in closed form (the sampler's weight of a + b = s)."""
    both_narrow = max(0, min(s - 1, c - 1) - max(1, s - c + 1) + 1)
    both_wide = max(0, s - 2 * c + 1)
    total = both_narrow * 2 ** s + both_wide * 2 ** (c - 1) * (2 ** c + 1)
    m = min(c - 1, s - c)  # one narrow, one wide: the narrow one has 1 .. m bits, on either side
    if m >= 1:
        total += 2 * (2 ** c * (2 ** (m + 1) - 2) - 2 * (4 ** m - 1) // 3 + 2 ** m - 1)
    return total


@cache
def addition_weights(n: int) -> list[int]:
    """Members of length n with a + b = s operand bits, for s = 2 .. n - 3 (the result has the other c bits)."""
    return [addition_sum(s, n - 2 - s) for s in range(2, n - 2)]


@register
class BinaryAddition(BinaryArithmetic):
    """x+y=z with z = x + y, the numbers in binary, least significant bit first, high zeros allowed.

    Each field is nonempty and may carry high zeros (trailing in the string): "1+1=01" and "1+1=010" are members.
    Sampling is exactly uniform: a + b operand bits, then a, with their closed-form member counts, then x < 2^a and
    y < 2^b uniform among the pairs whose sum fits in c bits (uniform proposals, rejected when it does not fit).
    """

    name = "binary_addition"
    alphabet = "01+="
    separators = "+="

    def result(self, x, y):
        return x + y

    def wrong_results(self, x, y):
        return [x ^ y]  # the carries dropped

    def count(self, n: int) -> int:
        return sum(addition_weights(n))

    def sample(self, rng, n):
        weights = addition_weights(n)
        if not sum(weights):
            return None
        s = 2 + choose_weighted(rng, weights)
        c = n - 2 - s
        a = 1 + choose_weighted(rng, [addition_pairs(a, s - a, c) for a in range(1, s)])
        b = s - a
        while True:  # accepts at least half the proposals
            x, y = uniform_below(rng, 2 ** min(a, c)), uniform_below(rng, 2 ** min(b, c))
            if x + y < 2 ** c:
                return encode(x, a) + "+" + encode(y, b) + "=" + encode(x + y, c)


@cache
def multiplication_proposals(n: int) -> tuple[list[int], list[int], list[int]]:
    """The proposal weights of length n, in three disjoint kinds (the fields have a, b, c bits, a + b + c = n - 2).

    x = 0, by y's width b = 1 .. n - 4: 2^b values of y times n - 3 - b splits of the rest into a and c.
    y = 0 < x, by a: 2^a - 1 values of x times n - 3 - a splits. Both members by definition.
    x, y > 0, by t = p + q, p and q their bit lengths: a member needs c >= t - 1 (since x y >= 2^(t-2)), so a = p + a',
    b = q + b', c = t - 1 + c' with a' + b' + c' = r = n - 1 - 2t; t - 1 splits of t, 2^(t-2) values, C(r + 2, 2)
    splits of r. Only the proposals with c = t - 1 can fail.
    """
    zero_x = [2 ** b * (n - 3 - b) for b in range(1, n - 3)]
    zero_y = [(2 ** a - 1) * (n - 3 - a) for a in range(1, n - 3)]
    nonzero = [(t - 1) * 2 ** (t - 2) * math.comb(n + 1 - 2 * t, 2) for t in range(2, (n - 1) // 2 + 1)]
    return zero_x, zero_y, nonzero


# Multiplication's sampler draws a member with a zero operand once in ZERO_OPERAND_ODDS draws.
ZERO_OPERAND_ODDS = 8


@register
class BinaryMultiplication(BinaryArithmetic):
    """x×y=z with z = xy, the numbers in binary, least significant bit first, high zeros allowed.

    FLaRe's operator symbol × is kept. Each field is nonempty and may carry high zeros. The sampler is uniform within
    two strata, not over all members: x = 0 admits every y, so members with a zero operand are 79% of those of length 7
    and 99.99% of those of length 40, and a uniform sample would be almost all 0×y=0...0. It draws one with a zero
    operand with probability 1/8 (uniformly among those), otherwise one with both operands nonzero, exactly uniformly
    among those: uniform proposals from a counted superset (multiplication_proposals), rejected when the product does
    not fit its field. FLaRe's sampler (widths from a Dirichlet split, x uniform, y uniform below what fits) gives a
    zero operand in about 38% of its strings of lengths up to 40 and 13% of lengths 41-500 (simulated). The members of
    a length are not counted (lattice points under a hyperbola): count() is None.
    """

    name = "binary_multiplication"
    alphabet = "01×="
    separators = "×="

    def result(self, x, y):
        return x * y

    def wrong_results(self, x, y):
        # One partial product left out: x times y without one of its 1 bits.
        ones = [k for k in range(y.bit_length()) if y >> k & 1]
        return [x * (y - 2 ** ones[len(ones) // 2])] if ones else []

    def sample(self, rng, n):
        zero_x, zero_y, nonzero = multiplication_proposals(n)
        if not nonzero:
            return None
        if uniform_below(rng, ZERO_OPERAND_ODDS) == 0:
            if choose_weighted(rng, [sum(zero_x), sum(zero_y)]) == 0:
                b = 1 + choose_weighted(rng, zero_x)
                a = 1 + uniform_below(rng, n - 3 - b)
                x, y = 0, uniform_below(rng, 2 ** b)
            else:
                a = 1 + choose_weighted(rng, zero_y)
                b = 1 + uniform_below(rng, n - 3 - a)
                x, y = 1 + uniform_below(rng, 2 ** a - 1), 0
            return encode(x, a) + "×" + encode(y, b) + "=" + encode(0, n - 2 - a - b)
        while True:  # accepts more than a third of the proposals
            t = 2 + choose_weighted(rng, nonzero)
            p = 1 + uniform_below(rng, t - 1)
            q, r = t - p, n - 1 - 2 * t
            # Two distinct cuts among r + 2 places split r into a', b', c' (stars and bars), uniformly.
            i, j = uniform_below(rng, r + 2), uniform_below(rng, r + 1)
            j += j >= i
            i, j = min(i, j), max(i, j)
            a, b, c = p + i, q + j - i - 1, t - 1 + r + 1 - j
            x = 2 ** (p - 1) + uniform_below(rng, 2 ** (p - 1))
            y = 2 ** (q - 1) + uniform_below(rng, 2 ** (q - 1))
            if x * y < 2 ** c:
                return encode(x, a) + "×" + encode(y, b) + "=" + encode(x * y, c)


@cache
def sqrt_weights(n: int) -> list[int]:
    """Members of length n whose x has a = 1 .. n - 2 bits: x < 2^min(a, 2c), c = n - 1 - a the result's width."""
    return [2 ** min(a, 2 * (n - 1 - a)) for a in range(1, n - 1)]


@register
class ComputeSqrt(BinaryArithmetic):
    """x=z with z = floor(sqrt(x)), the numbers in binary, least significant bit first, high zeros allowed.

    Each field is nonempty and may carry high zeros. Sampling is exactly uniform: x's width a with its member count
    (z fits in c bits exactly when x < 2^(2c)), then x uniform below 2^min(a, 2c).
    """

    name = "compute_sqrt"
    alphabet = "01="
    separators = "="

    def result(self, x):
        return math.isqrt(x)

    def count(self, n: int) -> int:
        return sum(sqrt_weights(n))

    def sample(self, rng, n):
        weights = sqrt_weights(n)
        if not weights:
            return None
        a = 1 + choose_weighted(rng, weights)
        c = n - 1 - a
        x = uniform_below(rng, 2 ** min(a, 2 * c))
        return encode(x, a) + "=" + encode(math.isqrt(x), c)
