"""The 18 built-in languages: oracles against independent references, exact counts, uniform samplers, negatives."""

import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from satbench import languages
from satbench.languages.uniform_sampling import uniform_below

BUILTIN = ["aa_star", "ab_star", "anbn", "anbncn", "dyck1", "dyck2", "equal", "first", "majority", "parity",
           "shuffle2", "tomita1", "tomita2", "tomita3", "tomita4", "tomita5", "tomita6", "tomita7"]


def catalan(k):
    return math.comb(2 * k, k) // (k + 1)


def balanced(s, pairs):
    """Dyck membership by repeatedly deleting adjacent matched pairs: a different algorithm from the oracles'."""
    while True:
        shorter = s
        for pair in pairs:
            shorter = shorter.replace(pair, "")
        if shorter == s:
            return s == ""
        s = shorter


def blocks(s, letters):
    m = re.fullmatch("".join(f"({c}*)" for c in letters), s)
    return m is not None and len(m.group(1)) >= 1 and len({len(g) for g in m.groups()}) == 1


# Independent reference oracles, written from the definitions (Tomita 3 as the regular expression for its complement
# used by Weiss, Goldberg & Yahav 2018).
NOT_TOMITA3 = re.compile(r"((0|1)*0)*1(11)*(0(0|1)*1)*0(00)*(1(0|1)*)*")
REFERENCE = {
    "aa_star": lambda s: re.fullmatch(r"(aa)*", s) is not None,
    "ab_star": lambda s: re.fullmatch(r"(ab)*", s) is not None,
    "anbn": lambda s: blocks(s, "ab"),
    "anbncn": lambda s: blocks(s, "abc"),
    "dyck1": lambda s: balanced(s, ["()"]),
    "dyck2": lambda s: balanced(s, ["()", "[]"]),
    "equal": lambda s: s.count("a") == s.count("b") and set(s) <= set("ab"),
    "first": lambda s: s[:1] == "1" and set(s) <= set("01"),
    "majority": lambda s: s.count("a") > s.count("b") and set(s) <= set("ab"),
    "parity": lambda s: s.count("1") % 2 == 1 and set(s) <= set("01"),
    "shuffle2": lambda s: set(s) <= set("()[]") and balanced(re.sub(r"[\[\]]", "", s), ["()"])
    and balanced(re.sub(r"[()]", "", s), ["[]"]),
    "tomita1": lambda s: re.fullmatch(r"1*", s) is not None,
    "tomita2": lambda s: re.fullmatch(r"(10)*", s) is not None,
    "tomita3": lambda s: set(s) <= set("01") and NOT_TOMITA3.fullmatch(s) is None,
    "tomita4": lambda s: set(s) <= set("01") and "000" not in s,
    "tomita5": lambda s: set(s) <= set("01") and s.count("0") % 2 == 0 and s.count("1") % 2 == 0,
    "tomita6": lambda s: set(s) <= set("01") and (s.count("0") - s.count("1")) % 3 == 0,
    "tomita7": lambda s: re.fullmatch(r"0*1*0*1*", s) is not None,
}

# Known numbers of members of length n.
KNOWN_COUNTS = {
    "aa_star": lambda n: int(n % 2 == 0),
    "ab_star": lambda n: int(n % 2 == 0),
    "anbn": lambda n: int(n >= 2 and n % 2 == 0),
    "anbncn": lambda n: int(n >= 3 and n % 3 == 0),
    "dyck1": lambda n: catalan(n // 2) if n % 2 == 0 else 0,
    "dyck2": lambda n: 2 ** (n // 2) * catalan(n // 2) if n % 2 == 0 else 0,
    "equal": lambda n: math.comb(n, n // 2) if n % 2 == 0 else 0,
    "first": lambda n: 2 ** (n - 1) if n else 0,
    "majority": lambda n: sum(math.comb(n, k) for k in range(n + 1) if 2 * k > n),
    "parity": lambda n: 2 ** (n - 1) if n else 0,
    "shuffle2": lambda n: sum(math.comb(n, 2 * j) * catalan(j) * catalan(n // 2 - j) for j in range(n // 2 + 1))
    if n % 2 == 0 else 0,
    "tomita1": lambda n: 1,
    "tomita2": lambda n: int(n % 2 == 0),
    "tomita3": None,  # no closed form: checked against the reference oracle by enumeration only
    "tomita4": lambda n: tribonacci(n),
    "tomita5": lambda n: 1 if n == 0 else 2 ** (n - 1) if n % 2 == 0 else 0,
    "tomita6": lambda n: sum(math.comb(n, k) for k in range(n + 1) if (2 * k - n) % 3 == 0),
    "tomita7": lambda n: 1 if n == 0 else sum(math.comb(n - 1, r) for r in range(4)) + sum(
        math.comb(n - 1, r) for r in range(3)),
}


def tribonacci(n):
    """Binary strings of length n without 000: the last 1 ends a prefix of length n-1, n-2 or n-3."""
    counts = [1, 2, 4]
    while len(counts) <= n:
        counts.append(sum(counts[-3:]))
    return counts[n]


def small_lengths(lang):
    """Lengths up to 12 whose strings number at most 2^12: those are enumerated."""
    return [n for n in range(13) if len(lang.alphabet) ** n <= 2 ** 12]


def all_strings(lang, n):
    return ["".join(t) for t in itertools.product(lang.alphabet, repeat=n)]


def test_registry_holds_the_18_builtins_sorted():
    names = languages.language_names()
    assert set(BUILTIN) <= set(names)
    assert names == sorted(names)


def test_unknown_language_suggests_the_closest_name():
    with pytest.raises(languages.UnknownLanguage) as error:
        languages.get_language("dyk1")
    assert str(error.value) == "unknown language 'dyk1' (did you mean 'dyck1'?)"
    assert isinstance(error.value, ValueError)
    with pytest.raises(ValueError, match="unknown language 'qqqqqq' \\(known: "):
        languages.get_language("qqqqqq")


@pytest.mark.parametrize("name", BUILTIN)
def test_metadata(name):
    lang = languages.get_language(name)
    assert lang.name == name
    assert lang.family in {"counter", "context-free", "regular"}
    assert lang.definition == type(lang).__doc__.strip().splitlines()[0]
    assert lang.vocab_size == 3 + len(lang.alphabet)
    assert lang.encode(lang.alphabet) == list(range(3, 3 + len(lang.alphabet)))
    assert languages.get_language(name) is lang  # one instance, so counting tables are built once


@pytest.mark.parametrize("name", BUILTIN)
def test_oracle_matches_reference_and_known_counts(name):
    lang = languages.get_language(name)
    reference = REFERENCE[name]
    for n in small_lengths(lang):
        strings = all_strings(lang, n)
        accepted = [s for s in strings if lang.accepts(s)]
        assert accepted == [s for s in strings if reference(s)], f"length {n}"
        assert lang.count(n) == len(accepted)
        if KNOWN_COUNTS[name] is not None:
            assert len(accepted) == KNOWN_COUNTS[name](n), f"length {n}"
        for s in strings[:64]:
            assert lang.prefix_accepts(s) == [lang.accepts(s[:i]) for i in range(n + 1)]


@pytest.mark.parametrize("name", [name for name in BUILTIN if KNOWN_COUNTS[name] is not None])
def test_counts_beyond_enumeration(name):
    """The exact counts at lengths too long to enumerate still match the closed forms (big integers)."""
    lang = languages.get_language(name)
    for n in (13, 40, 99, 100):
        assert lang.count(n) == KNOWN_COUNTS[name](n)


@pytest.mark.parametrize("name", BUILTIN)
def test_oracle_is_total(name):
    lang = languages.get_language(name)
    member = lang.sample(np.random.default_rng(0), next(n for n in range(1, 8) if lang.count(n)))
    for foreign in ("x", "A", " ", "\n", "é", "0" if "0" not in lang.alphabet else "a"):
        for i in (0, len(member) // 2, len(member)):
            assert lang.accepts(member[:i] + foreign + member[i:]) is False
            assert lang.prefix_accepts(member[:i] + foreign + member[i:])[-1] is False
    assert isinstance(lang.accepts(""), bool)


def uniformity_lengths(lang):
    """Up to two small lengths with between 2 and 200 members (fewer where a language has none)."""
    return [n for n in small_lengths(lang) if 2 <= lang.count(n) <= 200][-2:]


@pytest.mark.parametrize("name", BUILTIN)
def test_sampler_support_is_the_language_and_uniform(name):
    lang = languages.get_language(name)
    rng = np.random.default_rng(1)
    for n in small_lengths(lang)[:6]:  # lengths with 0 or 1 members: exact support
        members = [s for s in all_strings(lang, n) if lang.accepts(s)]
        draws = {lang.sample(rng, n) for _ in range(8)}
        if not members:
            assert draws == {None}
        elif len(members) == 1:
            assert draws == set(members)
    for n in uniformity_lengths(lang):
        members = [s for s in all_strings(lang, n) if lang.accepts(s)]
        draws = Counter(lang.sample(rng, n) for _ in range(60 * len(members)))
        assert set(draws) == set(members), f"length {n}: support differs from the accepted set"
        p = chisquare([draws[s] for s in members]).pvalue
        assert p > 1e-4, f"length {n}: chi-square p = {p:.2g}"


@pytest.mark.parametrize("n", [6, 8])
def test_shuffle2_sampler_is_uniform(n):
    """Shuffle-2 is sampled exactly (split, positions, two Dyck-1 words); measure it: chi-square and total variation
    against the uniform distribution over all members of length n."""
    lang = languages.get_language("shuffle2")
    members = [s for s in all_strings(lang, n) if lang.accepts(s)]
    per_member = 100
    rng = np.random.default_rng(7)
    draws = Counter(lang.sample(rng, n) for _ in range(per_member * len(members)))
    assert set(draws) == set(members)
    counts = np.array([draws[s] for s in members])
    assert chisquare(counts).pvalue > 1e-3
    total_variation = 0.5 * np.abs(counts / counts.sum() - 1 / len(members)).sum()
    # Sampling noise alone gives about sqrt(members / (2 pi draws)); a biased sampler would sit well above it.
    assert total_variation < 2 * math.sqrt(len(members) / (2 * math.pi * counts.sum()))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(BUILTIN), n=st.integers(0, 64), seed=st.integers(0, 2**63))
def test_samples_are_exact_members_and_negatives_exact_non_members(name, n, seed):
    lang = languages.get_language(name)
    rng = np.random.default_rng(seed)
    member, other = lang.sample(rng, n), lang.negative(rng, n)
    if lang.count(n) == 0:
        assert member is None
    else:
        assert len(member) == n and lang.accepts(member)
    if lang.count(n) == lang.strings_of_length(n):
        assert other is None
    else:
        assert len(other) == n and not lang.accepts(other)
    again = np.random.default_rng(seed)
    assert (lang.sample(again, n), lang.negative(again, n)) == (member, other)
    for s in filter(None, (member, other)):
        assert lang.prefix_accepts(s) == [lang.accepts(s[:i]) for i in range(n + 1)]


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(BUILTIN), n=st.integers(1, 40), seed=st.integers(0, 2**63))
def test_near_misses_are_strings_over_the_alphabet(name, n, seed):
    lang = languages.get_language(name)
    rng = np.random.default_rng(seed)
    member = lang.sample(rng, n)
    if member is None:
        return
    for miss in lang.near_misses(rng, member):
        assert isinstance(miss, str) and set(miss) <= set(lang.alphabet)


@pytest.mark.parametrize("name", ["anbn", "anbncn", "dyck1", "dyck2", "shuffle2", "majority", "equal"])
def test_near_misses_of_the_right_length_are_mostly_non_members(name):
    """Near misses are hard negatives: at the member's length, most are rejected (the sampler drops the rest)."""
    lang = languages.get_language(name)
    rng = np.random.default_rng(3)
    n = next(n for n in range(12, 20) if lang.count(n))
    kept = total = 0
    for _ in range(50):
        for miss in lang.near_misses(rng, lang.sample(rng, n)):
            if len(miss) == n:
                total += 1
                kept += not lang.accepts(miss)
    assert total > 0 and kept / total > 0.7


def test_count_preserving_near_misses():
    """Near misses with a member's counts but the wrong order exist for the bracket and block languages."""
    rng = np.random.default_rng(0)
    for name in ("anbn", "anbncn", "dyck1", "dyck2", "shuffle2"):
        lang = languages.get_language(name)
        member = lang.sample(rng, 12)
        same_counts = [m for m in lang.near_misses(rng, member)
                       if sorted(m) == sorted(member) and not lang.accepts(m)]
        assert same_counts, name


def test_majority_near_misses_are_ties_or_margin_one():
    lang = languages.get_language("majority")
    rng = np.random.default_rng(0)
    for n in (9, 10):
        for _ in range(20):
            (miss,) = lang.near_misses(rng, lang.sample(rng, n))
            assert miss.count("b") - miss.count("a") == n % 2


def test_negatives_draw_from_the_declared_mixture():
    """dyck1's negatives include count-preserving ones (near misses, shuffles) and count-changing ones (edits)."""
    lang = languages.get_language("dyck1")
    rng = np.random.default_rng(0)
    negatives = [lang.negative(rng, 20) for _ in range(400)]
    balanced_counts = sum(s.count("(") == 10 for s in negatives)
    assert 0.3 < balanced_counts / len(negatives) < 0.95
    assert len(set(negatives)) > 300


def test_empty_string_and_lengths_without_members():
    rng = np.random.default_rng(0)
    get = languages.get_language
    assert get("dyck1").sample(rng, 0) == "" and get("dyck1").negative(rng, 0) is None
    assert get("majority").sample(rng, 0) is None and get("majority").negative(rng, 0) == ""
    assert get("anbn").sample(rng, 7) is None
    assert len(get("anbn").negative(rng, 7)) == 7
    assert get("aa_star").negative(rng, 8) is None and get("aa_star").sample(rng, 7) is None
    with pytest.raises(ValueError, match="length must be an integer >= 0"):
        get("dyck1").negative(rng, -1)


def test_uniform_below_is_exact_for_big_totals():
    rng = np.random.default_rng(0)
    total = 3 * 2**64 + 1  # needs two 64-bit words and rejects about a quarter of them
    top = Counter(uniform_below(rng, total) // 2**64 for _ in range(6000))
    assert set(top) <= {0, 1, 2, 3} and top[3] <= 2
    assert chisquare([top[0], top[1], top[2]]).pvalue > 1e-3
    assert Counter(uniform_below(rng, 1) for _ in range(10)) == {0: 10}


# ---- registering a language --------------------------------------------------------------------------------------


def test_a_dfa_is_all_a_regular_language_needs(registry):
    @languages.register
    class NoBB(languages.DFALanguage):
        """Strings over {a, b} without two b's in a row."""

        name = "no_bb"
        alphabet = "ab"
        transitions = {"ok": {"a": "ok", "b": "after_b"}, "after_b": {"a": "ok"}}
        start = "ok"
        accepting = {"ok", "after_b"}

    lang = languages.get_language("no_bb")
    assert lang.definition == "Strings over {a, b} without two b's in a row."
    fibonacci = [1, 2, 3, 5, 8, 13, 21, 34]
    assert [lang.count(n) for n in range(8)] == fibonacci
    rng = np.random.default_rng(0)
    draws = Counter(lang.sample(rng, 6) for _ in range(21 * 60))
    assert len(draws) == 21 and all("bb" not in s for s in draws)
    assert chisquare(list(draws.values())).pvalue > 1e-4
    assert "bb" in lang.negative(rng, 6)


def test_registration_errors(registry):
    class Nameless(languages.Language):
        """No name."""

    with pytest.raises(languages.PluginError, match="name ''"):
        languages.register(Nameless)

    class NoSampler(languages.Language):
        """A language without a sampler."""

        name = "no_sampler"
        alphabet = "ab"

        def accepts(self, s):
            return True

    with pytest.raises(languages.PluginError, match="sample\\(\\) is not implemented"):
        languages.register(NoSampler)

    class Clash(languages.Language):
        """A second dyck1."""

        name = "dyck1"
        alphabet = "()"

        def accepts(self, s):
            return False

        def sample(self, rng, n):
            return None

    with pytest.raises(languages.PluginError, match="language 'dyck1' is defined twice"):
        languages.register(Clash)

    class BadArrow(languages.DFALanguage):
        """A DFA with a symbol outside its alphabet."""

        name = "bad_arrow"
        alphabet = "ab"
        transitions = {"s": {"c": "s"}}
        start = "s"
        accepting = {"s"}

    languages.register(BadArrow)
    with pytest.raises(languages.PluginError, match="'c'.* outside the alphabet 'ab'"):
        languages.get_language("bad_arrow")


def test_token_ids():
    assert (languages.PAD, languages.BOS, languages.EOS) == (0, 1, 2)
    lang = languages.get_language("dyck2")
    assert lang.encode("([])") == [3, 5, 6, 4]
    with pytest.raises(ValueError, match="outside the alphabet"):
        lang.encode("(x)")
