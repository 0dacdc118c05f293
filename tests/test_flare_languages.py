"""FLaRe's non-regular languages (Butoi et al. 2025): oracles against independent references, counts against
enumeration and generated members, samplers (membership, uniformity, reproducibility), next_symbols against brute force,
near misses."""

import itertools
import math
import re
from collections import Counter
from functools import cache

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from satbench import languages
from satbench.languages.context_sensitive import addition_pairs, addition_sum

NAMES = ["marked_reversal", "unmarked_reversal", "stack_manipulation", "marked_copy", "missing_duplicate",
         "odds_first", "bucket_sort", "binary_addition", "binary_multiplication", "compute_sqrt"]
EXACTLY_UNIFORM = [name for name in NAMES if name != "binary_multiplication"]


# ---- independent references, written from FLaRe's definitions -----------------------------------------------------


def peel(s, core):
    """Strip equal outer binary symbols pair by pair; a reversal leaves exactly `core` in the middle."""
    while len(s) >= len(core) + 2 and s[0] == s[-1] and s[0] in "01":
        s = s[1:-1]
    return s == core


def halves(s, letters):
    """(w, v) for s = w#v with w over letters and |v| = |w|, else None."""
    parts = s.split("#")
    if len(parts) != 2 or len(parts[0]) != len(parts[1]) or not re.fullmatch(f"[{letters}]*", parts[0]):
        return None
    return parts


def odds_first(s):
    """Rebuild w from v by interleaving v's first half (odd places) with its second half (even places)."""
    parts = halves(s, "01")
    if parts is None:
        return False
    w, v = parts
    h = (len(w) + 1) // 2
    return w == "".join(v[h + i // 2] if i % 2 else v[i // 2] for i in range(len(w)))


def bucket_sort(s):
    parts = halves(s, "1-5")
    return parts is not None and Counter(parts[0]) == Counter(parts[1]) \
        and all(a <= b for a, b in zip(parts[1], parts[1][1:]))


def missing_duplicate(s):
    """One _, whose mirror in the other copy is a 1, and every other position equal to its mirror."""
    n, k = len(s), len(s) // 2
    if n % 2 or s.count("_") != 1 or not re.fullmatch("[01_]*", s):
        return False
    gap = s.index("_")
    return s[(gap + k) % n] == "1" and all(s[i] == s[i + k] for i in range(k) if i != gap % k)


def stack_manipulation(s):
    m = re.fullmatch(r"([01]*)((?:\+[01]|-)*)#([01]*)", s)
    if m is None:
        return False
    stack, ops, out = m.groups()
    for op in re.findall(r"\+[01]|-", ops):
        if op == "-" and not stack:
            return False
        stack = stack[:-1] if op == "-" else stack + op[1]
    return out == stack[::-1]


def value(bits):
    return sum(int(b) << i for i, b in enumerate(bits))


def arithmetic(pattern, holds):
    def oracle(s):
        m = re.fullmatch(pattern, s)
        return m is not None and holds(*map(value, m.groups()))
    return oracle


REFERENCE = {
    "marked_reversal": lambda s: peel(s, "#"),
    "unmarked_reversal": lambda s: peel(s, ""),
    "stack_manipulation": stack_manipulation,
    "marked_copy": lambda s: (parts := halves(s, "01")) is not None and parts[0] == parts[1],
    "missing_duplicate": missing_duplicate,
    "odds_first": odds_first,
    "bucket_sort": bucket_sort,
    "binary_addition": arithmetic(r"([01]+)\+([01]+)=([01]+)", lambda x, y, z: x + y == z),
    "binary_multiplication": arithmetic(r"([01]+)×([01]+)=([01]+)", lambda x, y, z: x * y == z),
    "compute_sqrt": arithmetic(r"([01]+)=([01]+)", lambda x, z: z * z <= x < (z + 1) ** 2),
}


# ---- members generated from the definitions (another reference, for lengths past enumeration) ---------------------


def bits(v, width):
    return "".join(str(v >> i & 1) for i in range(width))


def words(letters, k):
    return map("".join, itertools.product(letters, repeat=k))


def stack_members(max_len):
    def runs(stack, ops, budget):
        # budget: length left for pushes (3 symbols each, counting the output symbol); pops cost nothing
        yield ops + "#" + stack[::-1]
        if budget >= 3:
            for b in "01":
                yield from runs(stack + b, ops + "+" + b, budget - 3)
        if stack:
            yield from runs(stack[:-1], ops + "-", budget)
    for k in range((max_len - 1) // 2 + 1):
        for initial in words("01", k):
            for rest in runs(initial, "", max_len - 1 - 2 * k):
                yield initial + rest


def arithmetic_members(max_len, op, result):
    for a, b, c in itertools.product(range(1, max_len), repeat=3):
        if a + b + c + 2 <= max_len:
            for x, y in itertools.product(range(2 ** a), range(2 ** b)):
                if result(x, y) < 2 ** c:
                    yield bits(x, a) + op + bits(y, b) + "=" + bits(result(x, y), c)


def sqrt_members(max_len):
    for a in range(1, max_len):
        for c in range(1, max_len - a):
            for x in range(2 ** a):
                if math.isqrt(x) < 2 ** c:
                    yield bits(x, a) + "=" + bits(math.isqrt(x), c)


TRANSDUCTIONS = {"marked_reversal": ("01", lambda w: w[::-1]), "marked_copy": ("01", lambda w: w),
                 "odds_first": ("01", lambda w: "".join(w[i] for i in range(0, len(w), 2))
                                + "".join(w[i] for i in range(1, len(w), 2))),
                 "bucket_sort": ("12345", lambda w: "".join(sorted(w)))}
# Generated lengths, and the prefix length up to which every continuation shows up within them (checked by hand:
# the longest shortest member through a prefix of that length plus one symbol fits).
GENERATED = {"marked_reversal": (11, 4), "marked_copy": (11, 4), "odds_first": (11, 4), "bucket_sort": (9, 3),
             "unmarked_reversal": (14, 6), "missing_duplicate": (10, 3), "stack_manipulation": (10, 3),
             "binary_addition": (11, 3), "binary_multiplication": (11, 3), "compute_sqrt": (12, 3)}


@cache
def generated(name):
    """The set of members of length <= GENERATED[name][0], built from the definition rather than recognized."""
    max_len = GENERATED[name][0]
    if name in TRANSDUCTIONS:
        letters, f = TRANSDUCTIONS[name]
        out = {w + "#" + f(w) for k in range((max_len - 1) // 2 + 1) for w in words(letters, k)}
    elif name == "unmarked_reversal":
        out = {w + w[::-1] for k in range(max_len // 2 + 1) for w in words("01", k)}
    elif name == "missing_duplicate":
        out = {(w + w)[:i] + "_" + (w + w)[i + 1:] for k in range(1, max_len // 2 + 1) for w in words("01", k)
               for i in range(2 * k) if (w + w)[i] == "1"}
    elif name == "stack_manipulation":
        out = set(stack_members(max_len))
    elif name == "binary_addition":
        out = set(arithmetic_members(max_len, "+", lambda x, y: x + y))
    elif name == "binary_multiplication":
        out = set(arithmetic_members(max_len, "×", lambda x, y: x * y))
    else:
        out = set(sqrt_members(max_len))
    return frozenset(out)


def enumeration_lengths(lang):
    return [n for n in range(15) if len(lang.alphabet) ** n <= 20000]


# ---- oracles and counts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    lang = languages.get_language(name)
    assert lang.sources == ("butoi2025",)
    assert lang.family == ("context-free" if name in ("marked_reversal", "unmarked_reversal", "stack_manipulation")
                           else "context-sensitive")
    assert lang.definition and len(lang.definition) <= 120
    assert not lang.decided_by


@pytest.mark.parametrize("name", NAMES)
def test_oracle_matches_reference_exhaustively(name):
    lang, reference = languages.get_language(name), REFERENCE[name]
    for n in enumeration_lengths(lang):
        strings = list(words(lang.alphabet, n))
        accepted = [s for s in strings if lang.accepts(s)]
        assert accepted == [s for s in strings if reference(s)], f"length {n}"
        assert set(accepted) == {s for s in generated(name) if len(s) == n}, f"length {n}"
        if lang.count(n) is not None:
            assert lang.count(n) == len(accepted), f"length {n}"


@pytest.mark.parametrize("name", NAMES)
def test_generated_members_and_counts_beyond_enumeration(name):
    lang = languages.get_language(name)
    members = generated(name)
    assert all(REFERENCE[name](s) and lang.accepts(s) for s in members)
    by_length = Counter(map(len, members))
    for n in range(GENERATED[name][0] + 1):
        assert lang.count(n) in (None, by_length[n]), f"length {n}"
        assert (lang.sample(np.random.default_rng(n), n) is None) == (by_length[n] == 0), f"length {n}"


@pytest.mark.parametrize("name", NAMES)
def test_oracle_is_total_and_agrees_on_random_strings(name):
    lang, reference = languages.get_language(name), REFERENCE[name]
    rng = np.random.default_rng(5)
    symbols = list(set(lang.alphabet) | set("01#+=×_x é\n"))
    member = lang.sample(rng, 9) or lang.sample(rng, 10)
    for i in range(len(member) + 1):
        for foreign in ("x", "é", "\n", "0" if "0" not in lang.alphabet else "a"):
            assert lang.accepts(member[:i] + foreign + member[i:]) is False
    for _ in range(1500):
        s = "".join(rng.choice(symbols, size=int(rng.integers(0, 16))))
        assert lang.accepts(s) == reference(s), s
        assert lang.prefix_accepts(s) == [lang.accepts(s[:i]) for i in range(len(s) + 1)], s
        assert len(lang.next_symbols(s)) == len(s) + 1


def inclusion_exclusion_pairs(a, b, c):
    """x < 2^a, y < 2^b, x + y <= 2^c - 1: triangle counts T(m) = (m+1)(m+2)/2 added and taken away."""
    def triangle(m):
        return (m + 1) * (m + 2) // 2 if m >= 0 else 0
    top = 2 ** c - 1
    return triangle(top) - triangle(top - 2 ** a) - triangle(top - 2 ** b) + triangle(top - 2 ** a - 2 ** b)


def stack_count(n):
    """Members of length n by a dynamic program over safe operation sequences (not the class's closed form)."""
    @cache
    def orders(height, pushes):  # safe sequences with exactly `pushes` pushes left, from `height`
        return (pushes == 0) + (orders(height + 1, pushes - 1) if pushes else 0) \
            + (orders(height - 1, pushes) if height else 0)
    return sum(2 ** (k + p) * orders(k, p) for k in range(n) for p in range(n) if 2 * k + 3 * p + 1 == n)


def test_closed_form_counts_at_long_lengths():
    for a, b, c in itertools.product(range(1, 12), repeat=3):
        assert addition_pairs(a, b, c) == inclusion_exclusion_pairs(a, b, c)
    for s, c in itertools.product(range(2, 40), range(1, 40)):
        assert addition_sum(s, c) == sum(inclusion_exclusion_pairs(a, s - a, c) for a in range(1, s))
    get = languages.get_language
    for n in (40, 100, 500):
        if n < 500:  # the reference sums over every pair of operand widths
            assert get("binary_addition").count(n) == sum(inclusion_exclusion_pairs(a, b, n - 2 - a - b)
                                                         for a in range(1, n) for b in range(1, n - 2 - a))
        # x of a bits has floor(sqrt(x)) in c bits exactly when x < 4^c
        assert get("compute_sqrt").count(n) == sum(min(2 ** a, 4 ** (n - 1 - a)) for a in range(1, n - 1))
        assert get("missing_duplicate").count(n) == n // 2 * 2 ** (n // 2 - 1) * 2
        assert get("bucket_sort").count(n + 1) == 5 ** (n // 2)
    for n in (40, 100, 101):
        assert get("stack_manipulation").count(n) == stack_count(n)


# ---- samplers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_members_of_the_length_and_reproducible(name):
    lang, reference = languages.get_language(name), REFERENCE[name]
    for n in (*range(0, 12), 39, 40, 100, 101, 500, 501):
        draws = [lang.sample(np.random.default_rng([n, 1]), n) for _ in range(2)]
        assert draws[0] == draws[1]
        rng = np.random.default_rng(n)
        # multiplication does not count its members; it has some at every length from 5 on
        exists = lang.count(n) > 0 if lang.count(n) is not None else n >= 5
        for s in [draws[0]] + [lang.sample(rng, n) for _ in range(3 if n >= 500 else 10)]:
            if not exists:
                assert s is None
            else:
                assert s is not None and len(s) == n and reference(s), (n, s)


def uniformity_length(name):
    """The longest generated length with at most 200 members (the longer, the more shapes of member it mixes)."""
    by_length = Counter(map(len, generated(name)))
    return max(n for n in by_length if by_length[n] <= 200)


@pytest.mark.parametrize("name", EXACTLY_UNIFORM)
def test_exact_samplers_are_uniform(name):
    lang = languages.get_language(name)
    n = uniformity_length(name)
    members = sorted(s for s in generated(name) if len(s) == n)
    rng = np.random.default_rng(11)
    draws = Counter(lang.sample(rng, n) for _ in range(50 * len(members)))
    assert len(members) >= 8 and set(draws) == set(members), f"length {n}"
    assert chisquare([draws[s] for s in members]).pvalue > 1e-4


def zero_operand(s):
    x, y, _ = re.split("[×=]", s)
    return "1" not in x or "1" not in y


def test_multiplication_is_uniform_within_its_two_strata():
    lang = languages.get_language("binary_multiplication")
    rng = np.random.default_rng(12)
    for n in (7, 9):
        members = [s for s in generated("binary_multiplication") if len(s) == n]
        draws = Counter(lang.sample(rng, n) for _ in range(40 * len(members)))
        assert set(draws) == set(members)
        zero = sum(v for s, v in draws.items() if zero_operand(s))
        assert binomtest(zero, draws.total(), 1 / 8).pvalue > 1e-4
        for stratum in (True, False):
            chosen = [s for s in members if zero_operand(s) == stratum]
            assert chisquare([draws[s] for s in chosen]).pvalue > 1e-4
    long_draws = [lang.sample(rng, 60) for _ in range(400)]
    assert 0.05 < sum(map(zero_operand, long_draws)) / 400 < 0.25  # a uniform sampler would give nearly 1


# ---- next symbols, prefixes, near misses ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_next_symbols_against_generated_members(name):
    """Every prefix over the alphabet up to the checked length: the symbols that continue it into some member, both
    ways (nothing missing, nothing extra), and the per-prefix lists agree with the prefix's own last entry."""
    lang = languages.get_language(name)
    longest = GENERATED[name][1]
    follows = {}
    for s in generated(name):
        for i in range(min(len(s), longest + 1)):
            follows.setdefault(s[:i], set()).add(s[i])
    for n in range(longest + 1):
        for prefix in words(lang.alphabet, n):
            claimed = lang.next_symbols(prefix)
            expected = "".join(c for c in lang.alphabet if c in follows.get(prefix, ()))
            assert claimed[-1] == expected, prefix
            assert claimed[:-1] == [lang.next_symbols(prefix[:i])[-1] for i in range(n)], prefix


@pytest.mark.parametrize("name", NAMES)
def test_members_follow_their_next_symbols_and_prefix_flags(name):
    lang = languages.get_language(name)
    rng = np.random.default_rng(13)
    for n in (9, 10, 30, 31):
        s = lang.sample(rng, n)
        if s is None:
            continue
        assert all(c in follow for c, follow in zip(s, lang.next_symbols(s)))
        assert lang.prefix_accepts(s) == [REFERENCE[name](s[:i]) for i in range(n + 1)]


@pytest.mark.parametrize("name", NAMES)
def test_near_misses_are_mostly_non_members_of_the_same_length(name):
    lang = languages.get_language(name)
    rng = np.random.default_rng(14)
    kept = total = 0
    for n in range(9, 24):
        for _ in range(6):
            s = lang.sample(rng, n)
            if s is None:
                continue
            misses = lang.near_misses(rng, s)
            assert misses and all(len(m) == n and set(m) <= set(lang.alphabet) for m in misses), s
            assert any(not REFERENCE[name](m) for m in misses), s
            total += len(misses)
            kept += sum(not REFERENCE[name](m) for m in misses)
    assert kept / total > 0.85


@pytest.mark.parametrize("name", [name for name in NAMES if name not in ("binary_addition", "binary_multiplication",
                                                                       "compute_sqrt")])
def test_count_preserving_near_misses(name):
    """Near misses with a member's symbol counts and the wrong order (swaps), so counting cannot reject them."""
    lang = languages.get_language(name)
    rng = np.random.default_rng(15)
    found = 0
    for _ in range(30):
        s = lang.sample(rng, 21 if lang.count(21) else 20)
        found += any(sorted(m) == sorted(s) and not REFERENCE[name](m) for m in lang.near_misses(rng, s))
    assert found >= 25


@pytest.mark.parametrize("name", ["binary_addition", "binary_multiplication", "compute_sqrt"])
def test_arithmetic_near_misses_include_a_wrong_result(name):
    """A near miss that keeps the operands and changes only the result field (one bit, or off by one)."""
    lang = languages.get_language(name)
    rng = np.random.default_rng(16)
    for _ in range(30):
        s = lang.sample(rng, 20)
        head = s[:s.rindex("=") + 1]
        assert any(m.startswith(head) and m != s and not REFERENCE[name](m) for m in lang.near_misses(rng, s))


def test_flare_encodings():
    """Spot checks of FLaRe's conventions: least significant bit first with high zeros, stack bottom first in and
    top first out, odd places first, one gap replacing a 1."""
    get = languages.get_language
    assert get("binary_addition").accepts("1+1=01") and get("binary_addition").accepts("1+1=010")
    assert not get("binary_addition").accepts("1+1=10") and not get("binary_addition").accepts("1+=1")
    assert get("binary_multiplication").accepts("11×11=1001") and get("binary_multiplication").accepts("0×111=0")
    assert get("compute_sqrt").accepts("1001=11") and not get("compute_sqrt").accepts("1001=01")
    assert get("stack_manipulation").accepts("01+1-#10") and get("stack_manipulation").accepts("#")
    assert not get("stack_manipulation").accepts("0--#") and not get("stack_manipulation").accepts("01#01")
    assert get("odds_first").accepts("0011#0101") and get("bucket_sort").accepts("3121#1123")
    assert get("missing_duplicate").accepts("1_11") and not get("missing_duplicate").accepts("0_00")
    assert get("marked_reversal").accepts("#") and get("unmarked_reversal").accepts("")
    assert get("missing_duplicate").sample(np.random.default_rng(0), 0) is None
