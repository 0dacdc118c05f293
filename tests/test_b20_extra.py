"""The rest of the regular languages whose generators Bhattamishra, Ahuja & Goyal (2020) ship: aa*bb*, c*aac*,
c*aac*bbc*, c*aac*bc*aac*, c{a,b}*abd{a,b,d}*, (aa)*aa and the cyclic regular languages CRL-1 to CRL-5, all YAML
automata in languages/automata/.

Each is held to a reference oracle written differently from its automaton (a regular expression, arithmetic on the
length or the symbol counts, the peer's CRL transition tables re-typed as functions), to counts from closed forms and
enumeration, to next-symbol sets found by enumerating members, and its sampler to a chi-square test against the
uniform distribution over the members of a small length. Its theory entry is held to whether the transition monoid
of its automaton is aperiodic (star-free) or, where it is not, to a word whose powers the reference oracle accepts
and rejects in turn.
"""

import itertools
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import chisquare

from satbench import languages
from satbench.report.common import load_theory, predicted


def regex(pattern, alphabet):
    compiled = re.compile(pattern)
    return lambda s: set(s) <= set(alphabet) and compiled.fullmatch(s) is not None


def binary(test):
    return lambda s: set(s) <= {"0", "1"} and test(s)


def crl4_reference(s):
    """B20's CyclicRegularLang4 as a saturating count: 0 adds one up to 4; 1 takes one away down to 0, except that
    1 at 4 goes back to 0."""
    count = 0
    for c in s:
        if c == "0":
            count = min(count + 1, 4)
        elif c == "1":
            count = 0 if count == 4 else max(count - 1, 0)
        else:
            return False
    return count == 0


# B20's CyclicRegularLang5, typed from its transition function as (state, symbol) -> state.
CRL5_TABLE = {("q0", "0"): "q1", ("q0", "1"): "q2", ("q1", "0"): "q0", ("q1", "1"): "q0", ("q2", "0"): "q3",
              ("q2", "1"): "q3", ("q3", "0"): "q4", ("q3", "1"): "q3", ("q4", "0"): "q4", ("q4", "1"): "q5",
              ("q5", "0"): "q1", ("q5", "1"): "q4"}


def crl5_table_reference(s):
    state = "q0"
    for c in s:
        if (state, c) not in CRL5_TABLE:
            return False
        state = CRL5_TABLE[state, c]
    return state == "q0"


REFERENCE = {
    "aa_star_bb_star": regex(r"a+b+", "ab"),
    "c_aa_c": regex(r"c*aac*", "ac"),
    "c_aa_c_bb_c": regex(r"c*aac*bbc*", "abc"),
    "c_aa_c_b_c_aa_c": regex(r"c*aac*bc*aac*", "abc"),
    "cab_n_abd": regex(r"c[ab]*abd[abd]*", "abcd"),
    "aa_star_aa": regex(r"(aa)*aa", "a"),
    "crl1": binary(lambda s: len(s) % 2 == 0),
    "crl2": binary(lambda s: len(s) % 3 == 0),
    "crl3": binary(lambda s: s.count("1") % 2 == 0),
    "crl4": crl4_reference,
    "crl5": regex(r"(0[01]|1[01]1*00*1(10*1)*0[01])*", "01"),
}
NAMES = list(REFERENCE)
STAR_FREE = {"aa_star_bb_star", "c_aa_c", "c_aa_c_bb_c", "c_aa_c_b_c_aa_c", "cab_n_abd"}
# Not star-free: a word w with the reference's verdict on w^k periodic in k with this period (> 1).
PERIODIC_WORD = {"aa_star_aa": ("a", 2), "crl1": ("0", 2), "crl2": ("1", 3), "crl3": ("1", 2), "crl4": ("001", 3),
                 "crl5": ("0", 2)}


def all_strings(alphabet, n):
    return map("".join, itertools.product(alphabet, repeat=n))


def enumeration_lengths(lang, limit=20000):
    return [n for n in range(31) if len(lang.alphabet) ** n <= limit]


def test_registered_as_b20_regular_languages_with_table_safe_definitions():
    alphabets = {"aa_star_bb_star": "ab", "c_aa_c": "ac", "c_aa_c_bb_c": "abc", "c_aa_c_b_c_aa_c": "abc",
                 "cab_n_abd": "abcd", "aa_star_aa": "a", **{f"crl{k}": "01" for k in range(1, 6)}}
    for name in NAMES:
        lang = languages.get_language(name)
        assert (lang.family, lang.alphabet, lang.sources) == ("regular", alphabets[name], ("bhattamishra2020",))
        # The language table of docs/languages.md is Markdown: a | in a definition would split its row.
        assert "|" not in lang.definition and len(lang.definition) <= 100, name


def test_crl5_regular_expression_is_b20s_automaton():
    for n in range(15):
        for s in all_strings("01", n):
            assert REFERENCE["crl5"](s) == crl5_table_reference(s), s


@pytest.mark.parametrize("name", NAMES)
def test_oracle_agrees_with_the_reference_on_every_short_string(name):
    lang, reference = languages.get_language(name), REFERENCE[name]
    for n in enumeration_lengths(lang):
        for s in all_strings(lang.alphabet, n):
            assert lang.accepts(s) == reference(s), s
    member = next(lang.sample(np.random.default_rng(0), n) for n in range(2, 9) if lang.count(n))
    for foreign in ("x", "2", " ", "é"):
        assert not lang.accepts(member[:1] + foreign + member[1:]) and not lang.accepts(foreign)
        assert not lang.accepts(member + foreign)


@pytest.mark.parametrize("name", NAMES)
def test_count_is_the_number_of_accepted_strings(name):
    lang, reference = languages.get_language(name), REFERENCE[name]
    for n in enumeration_lengths(lang):
        assert lang.count(n) == sum(map(reference, all_strings(lang.alphabet, n))), n


def test_counts_at_longer_lengths_match_closed_forms():
    closed = {
        "aa_star_bb_star": lambda n: max(n - 1, 0),  # where the b block starts
        "c_aa_c": lambda n: max(n - 1, 0),  # where the aa block starts
        "c_aa_c_bb_c": lambda n: math.comb(n - 2, 2) if n >= 4 else 0,  # n - 4 c's in 3 places
        "c_aa_c_b_c_aa_c": lambda n: math.comb(n - 2, 3) if n >= 5 else 0,  # n - 5 c's in 4 places
        "aa_star_aa": lambda n: int(n >= 2 and n % 2 == 0),
        "crl1": lambda n: 2 ** n if n % 2 == 0 else 0,
        "crl2": lambda n: 2 ** n if n % 3 == 0 else 0,
        "crl3": lambda n: 2 ** (n - 1) if n else 1,
    }
    for name, formula in closed.items():
        lang = languages.get_language(name)
        for n in [*range(40), 99, 100, 300]:
            assert lang.count(n) == formula(n), (name, n)


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_members_of_the_length_and_reproducible(name):
    lang = languages.get_language(name)
    for n in [*range(0, 26), 100, 500]:
        draws = [lang.sample(np.random.default_rng([4, n]), n) for _ in range(2 if n > 100 else 4)]
        if lang.count(n) == 0:
            assert draws[0] is None, n
            continue
        for s in draws:
            assert len(s) == n and REFERENCE[name](s), (n, s)
        assert lang.prefix_accepts(draws[0]) == [REFERENCE[name](draws[0][:i]) for i in range(n + 1)]
    rng, again = np.random.default_rng(9), np.random.default_rng(9)
    assert [lang.sample(rng, 24) for _ in range(5)] == [lang.sample(again, 24) for _ in range(5)]


@pytest.mark.parametrize("name, n", [("aa_star_bb_star", 8), ("c_aa_c", 8), ("c_aa_c_bb_c", 8),
                                     ("c_aa_c_b_c_aa_c", 8), ("cab_n_abd", 6), ("crl1", 4), ("crl2", 3),
                                     ("crl3", 5), ("crl4", 6), ("crl5", 7)])
def test_sampler_is_uniform(name, n):
    lang = languages.get_language(name)
    members = [s for s in all_strings(lang.alphabet, n) if REFERENCE[name](s)]
    rng = np.random.default_rng([11, n])
    draws = Counter(lang.sample(rng, n) for _ in range(40 * len(members)))
    assert set(draws) == set(members)
    assert chisquare([draws[s] for s in members]).pvalue > 1e-4


def test_negatives_are_non_members_of_the_length_and_some_keep_the_symbol_counts():
    for name in NAMES:
        lang = languages.get_language(name)
        rng = np.random.default_rng(5)
        same_counts = 0
        for n in (8, 9, 12, 13, 24):
            for _ in range(10):
                member, miss = lang.sample(rng, n), lang.negative(rng, n)
                if miss is None:  # a length with no non-members (crl1, crl2 and aa_star_aa at member lengths)
                    assert lang.count(n) == len(lang.alphabet) ** n, (name, n)
                    continue
                assert len(miss) == n and set(miss) <= set(lang.alphabet) and not REFERENCE[name](miss), (name, miss)
                same_counts += member is not None and sorted(miss) == sorted(member)
        # The hard negatives of the block languages: the same symbols, in an order the language forbids.
        assert same_counts > 0 or name not in STAR_FREE, name


# ---- next_symbols -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_next_symbols_are_the_followers_in_enumerated_members(name, next_symbols_match_members):
    """Every live state of these automata reaches acceptance within 5 symbols, so a prefix of length m that extends
    to a member at all extends to one of length at most m + 1 + 5: the members up to that length show its followers."""
    lang, reference = languages.get_language(name), REFERENCE[name]
    longest_prefix = max(m for m in range(8) if len(lang.alphabet) ** (m + 6) <= 300000)
    members = [s for n in range(longest_prefix + 7) for s in all_strings(lang.alphabet, n) if reference(s)]
    next_symbols_match_members(lang, members, longest_prefix)


def test_next_symbols_of_the_block_languages_follow_b20s_targets():
    """B20's next-symbol targets, spelled out: c*aac* allows a or c before its a's, only a between them, only c after;
    CAB_n_ABD allows d only right after ab."""
    assert languages.get_language("c_aa_c").next_symbols("ccaacc") == ["ac", "ac", "ac", "a", "c", "c", "c"]
    assert languages.get_language("cab_n_abd").next_symbols("cbabdc") == ["c", "ab", "ab", "ab", "abd", "abd", ""]
    assert languages.get_language("aa_star_bb_star").next_symbols("aab") == ["a", "ab", "ab", "b"]


# ---- theory -----------------------------------------------------------------------------------------------------


def transition_monoid_is_aperiodic(lang):
    """Whether the transition monoid of the language's automaton is aperiodic: every element f has f^k = f^(k+1)
    for some k. The syntactic monoid is a quotient of it, so aperiodic here means star-free (Schützenberger)."""
    size = len(lang.next_state)
    generators = [tuple(lang.next_state[q][k] for q in range(size)) for k in range(len(lang.alphabet))]
    monoid, todo = {tuple(range(size))}, [tuple(range(size))]
    while todo:
        f = todo.pop()
        for g in generators:
            h = tuple(g[q] for q in f)
            if h not in monoid:
                monoid.add(h)
                todo.append(h)

    def aperiodic(f):
        power = f
        for _ in range(len(monoid)):
            following = tuple(f[q] for q in power)
            if following == power:
                return True
            power = following
        return False

    return all(aperiodic(f) for f in monoid)


@pytest.mark.parametrize("name", NAMES)
def test_star_freeness_matches_the_theory_entry(name):
    """Star-free: the automaton's monoid is aperiodic. Not star-free: in an aperiodic syntactic monoid w^k and
    w^(k+1) agree once k reaches the size of the minimal automaton (here under 30), so a word w whose powers from
    the 30th on the reference accepts and rejects in turn shows that the language is not star-free."""
    lang = languages.get_language(name)
    theory = yaml.safe_load((Path(__file__).parents[1] / "report" / "theory.yaml").read_text())
    entry = theory["languages"][name]
    assert set(entry["cite"]) <= set(theory["sources"]) and "yang2024" in entry["cite"]
    if name in STAR_FREE:
        assert transition_monoid_is_aperiodic(lang)
        assert (entry["soft"], entry["saturated"], entry["hard"]) == (True, True, True)
    else:
        assert len(lang.next_state) < 30
        word, period = PERIODIC_WORD[name]
        verdicts = [REFERENCE[name](word * k) for k in range(30, 30 + 2 * period)]
        assert verdicts[:period] == verdicts[period:] and len(set(verdicts)) == 2
        assert not transition_monoid_is_aperiodic(lang)
        # A function of the length reads like (aa)*: yes with an encoding that carries i (soft and saturated), and
        # for hard attention no without positions (not star-free), open with them. A count mod 2 reads like parity:
        # yes with i/n positions, no for hard attention under any. The other cyclic ones are open.
        theory = load_theory()["languages"][name]
        with_positions = {"sinusoidal": (True, True, "open"), "learned": (True, True, "open"),
                          "fraction": ("open", "open", "open"), "none": ("open", "open", False)}
        with_i_over_n = {"sinusoidal": ("open", "open", False), "none": ("open", "open", False),
                         "fraction": (True, True, False)}
        by_positional = (with_positions if name in ("aa_star_aa", "crl1", "crl2") else with_i_over_n if name == "crl3"
                         else {"none": ("open", "open", False), "fraction": ("open", "open", False)})
        word = {True: "yes", False: "no", "open": "open"}
        for positional, expected in by_positional.items():
            assert tuple(predicted(theory, v, positional) for v in ("soft", "saturated", "hard")) == \
                tuple(word[e] for e in expected), (name, positional)
