"""Regular languages as YAML automata (languages/automata.py) and the peers' regular languages: oracles against
independent references, exact counts, uniform samplers, next_symbols against brute force, and the loader's errors."""

import importlib.metadata
import itertools
import math
import operator
import re
from collections import Counter
from functools import reduce

import numpy as np
import pytest
import yaml
from scipy.stats import chisquare

from satbench import languages
from satbench.cli import main
from satbench.data.check import check_language
from satbench.harness.results import read_run
from satbench.languages import automata, base
from satbench.report.common import load_theory


def within_depth(s, pattern, depth):
    """Bounded-depth Dyck by rounds: each round deletes every innermost matched pair at once, which lowers the height
    of every pair by one, so a word of depth d is empty after exactly d rounds."""
    for _ in range(depth):
        s = re.sub(pattern, "", s)
    return s == ""


def left_to_right(s):
    """modular_arithmetic by evaluation: operands and operators split apart, folded left to right, mod 5."""
    if not re.fullmatch(r"[0-4]([-+*][0-4])*=[0-4]", s):
        return False
    expression, result = s.split("=")
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul}
    value = reduce(lambda v, i: ops[expression[i]](v, int(expression[i + 1])), range(1, len(expression), 2),
                   int(expression[0]))
    return value % 5 == int(result)


# Independent reference oracles, written from the definitions (regular expressions, rounds of pair deletion, runs).
REFERENCE = {
    "dyck1_depth2": lambda s: re.fullmatch(r"(a(ab)*b)*", s) is not None,
    "dyck1_depth3": lambda s: re.fullmatch(r"(a(a(ab)*b)*b)*", s) is not None,
    "dyck1_depth4": lambda s: set(s) <= {"a", "b"} and within_depth(s, "ab", 4),
    "dyck1_depth12": lambda s: set(s) <= {"a", "b"} and within_depth(s, "ab", 12),
    "dyck2_depth3": lambda s: set(s) <= set("()[]") and within_depth(s, r"\(\)|\[\]", 3),
    "aaaa_star": lambda s: re.fullmatch(r"(aaaa)*", s) is not None,
    "abab_star": lambda s: re.fullmatch(r"(abab)*", s) is not None,
    "abcde_plus": lambda s: re.fullmatch(r"a+b+c+d+e+", s) is not None,
    "ab_d_bc": lambda s: re.fullmatch(r"[ab]*d[bc]*", s) is not None,
    "ends_02star": lambda s: re.fullmatch(r"[012]*02*", s) is not None,
    "even_pairs": lambda s: set(s) <= {"0", "1"} and sum(a != b for a, b in zip(s, s[1:])) % 2 == 0,
    "repeat_01": lambda s: re.fullmatch(r"(01)*", s) is not None,
    "cycle_navigation": lambda s: re.fullmatch(r"[<=>]*[0-4]", s) is not None
    and int(s[-1]) == (s.count(">") - s.count("<")) % 5,
    "modular_arithmetic": left_to_right,
}
NEW = sorted(REFERENCE)
YAML_FILES = ["aaaa_star", "ab_d_bc", "abab_star", "abcde_plus", "cycle_navigation", "dyck1_depth2", "dyck1_depth3",
              "dyck1_depth4", "ends_02star", "even_pairs", "repeat_01"]


def catalan(k):
    return math.comb(2 * k, k) // (k + 1)


def strip_paths(n, height):
    """Dyck-1 words of length n and depth at most `height`: paths in a strip, counted by repeated reflection."""
    def binomial(k):
        return math.comb(n, k) if 0 <= k <= n else 0

    if n % 2:
        return 0
    shifts = [n // 2 + j * (height + 2) for j in range(-n, n + 1)]
    return sum(binomial(k) - binomial(k + height + 1) for k in shifts)


# Member counts from closed forms, checked also at lengths too long to enumerate.
KNOWN_COUNTS = {
    "dyck1_depth2": lambda n: 0 if n % 2 else 1 if n == 0 else 2 ** (n // 2 - 1),  # (a(ab)*b)*: compositions of n/2
    "dyck1_depth3": lambda n: strip_paths(n, 3),
    "dyck1_depth4": lambda n: strip_paths(n, 4),
    "dyck1_depth12": lambda n: strip_paths(n, 12),
    "aaaa_star": lambda n: int(n % 4 == 0),
    "abab_star": lambda n: int(n % 4 == 0),
    "abcde_plus": lambda n: math.comb(n - 1, 4) if n >= 5 else 0,
    "ab_d_bc": lambda n: n * 2 ** (n - 1),  # where the d stands, and two choices elsewhere
    "ends_02star": lambda n: (3 ** n - 1) // 2,
    "even_pairs": lambda n: 2 ** (n - 1) if n >= 2 else n + 1,  # first = last: 2 ** (n - 2) middles, 2 ends
    "repeat_01": lambda n: int(n % 2 == 0),
    "cycle_navigation": lambda n: 3 ** (n - 1) if n else 0,  # any moves, then the one right digit
    "modular_arithmetic": lambda n: 5 ** ((n - 1) // 2) * 3 ** ((n - 3) // 2) if n >= 3 and n % 2 else 0,
}

# The longest length enumerated per language (at most ~30,000 strings per length).
ENUMERATED = {name: 12 for name in NEW} | {"abcde_plus": 6, "ab_d_bc": 7, "ends_02star": 9, "dyck2_depth3": 7,
                                          "cycle_navigation": 5, "modular_arithmetic": 5, "dyck1_depth12": 14}


def all_strings(alphabet, n):
    return map("".join, itertools.product(alphabet, repeat=n))


@pytest.mark.parametrize("name", NEW)
def test_metadata_and_theory_entry(name):
    lang = languages.get_language(name)
    assert lang.family == "regular"
    assert lang.definition == type(lang).__doc__.strip().splitlines()[0] and len(lang.definition) <= 100
    assert set(lang.sources) <= {"bhattamishra2020", "butoi2025"} and lang.sources
    theory = load_theory()
    entry = theory["languages"][name]
    for variant in ("soft", "saturated", "hard"):  # a word, or a word for each positional encoding
        words = entry[variant].values() if isinstance(entry[variant], dict) else [entry[variant]]
        assert set(words) <= {"yes", "no", "open"}
    assert set(entry["cite"]) <= set(theory["sources"])
    assert (getattr(type(lang), "automaton_file", None) is not None) == (name in YAML_FILES)


@pytest.mark.parametrize("name", NEW)
def test_oracle_matches_reference_and_counts(name):
    lang = languages.get_language(name)
    for n in range(ENUMERATED[name] + 1):
        strings = list(all_strings(lang.alphabet, n))
        accepted = [s for s in strings if lang.accepts(s)]
        assert accepted == [s for s in strings if REFERENCE[name](s)], f"length {n}"
        assert lang.count(n) == len(accepted), f"length {n}"
        for s in strings[:: max(1, len(strings) // 64)]:
            assert lang.prefix_accepts(s) == [lang.accepts(s[:i]) for i in range(n + 1)]
    member = lang.sample(np.random.default_rng(0), next(n for n in range(1, 9) if lang.count(n)))
    for foreign in ("x", " ", "é", "A"):
        for i in range(len(member) + 1):
            assert lang.accepts(member[:i] + foreign + member[i:]) is False


@pytest.mark.parametrize("name", sorted(KNOWN_COUNTS))
def test_counts_match_closed_forms(name):
    lang = languages.get_language(name)
    for n in [*range(15), 26, 27, 60, 121]:
        assert lang.count(n) == KNOWN_COUNTS[name](n), f"length {n}"


def test_dyck1_depth_counts_follow_the_depth_bound():
    """Up to length 2n every Dyck-1 word has depth at most n; D_3 and D_4 first lose a^4 b^4 and a^5 b^5."""
    for depth in (2, 3, 4, 12):
        lang = languages.get_language(f"dyck1_depth{depth}")
        assert [lang.count(2 * k) for k in range(depth + 1)] == [catalan(k) for k in range(depth + 1)]
        assert lang.count(2 * depth + 2) == catalan(depth + 1) - 1 == strip_paths(2 * depth + 2, depth)
        assert not lang.accepts("a" * (depth + 1) + "b" * (depth + 1)) and lang.accepts("a" * depth + "b" * depth)


@pytest.mark.parametrize("name", NEW)
def test_sampler_members_reproducible_and_uniform(name):
    lang = languages.get_language(name)
    for n in (0, 1, 7, 13, 40, 101):
        draws = [lang.sample(np.random.default_rng([1, n]), n) for _ in range(5)]
        if lang.count(n) == 0:
            assert draws == [None] * 5
        else:
            assert all(len(s) == n and REFERENCE[name](s) for s in draws)
        assert [lang.sample(np.random.default_rng([1, n]), n) for _ in range(5)] == draws
    rng = np.random.default_rng(1)
    sizes = [n for n in range(ENUMERATED[name] + 1) if 2 <= lang.count(n) <= 150]
    for n in sizes[-1:]:
        members = [s for s in all_strings(lang.alphabet, n) if REFERENCE[name](s)]
        counts = Counter(lang.sample(rng, n) for _ in range(40 * len(members)))
        assert set(counts) == set(members), f"length {n}: the support is not the language"
        assert chisquare([counts[s] for s in members]).pvalue > 1e-4, f"length {n}"


@pytest.mark.parametrize("name", NEW)
def test_negatives_are_non_members_of_the_same_length(name):
    lang = languages.get_language(name)
    rng = np.random.default_rng(3)
    for n in (1, 5, 9, 16):
        for _ in range(10):
            s = lang.negative(rng, n)
            assert s is None if lang.count(n) == len(lang.alphabet) ** n else len(s) == n and not REFERENCE[name](s)


def test_modular_arithmetic_near_misses_change_only_the_result():
    lang = languages.get_language("modular_arithmetic")
    rng = np.random.default_rng(0)
    for n in (3, 9, 21):
        member = lang.sample(rng, n)
        misses = lang.near_misses(rng, member)
        assert len(misses) == 4 and all(m[:-1] == member[:-1] and not left_to_right(m) for m in misses)
    assert left_to_right("1+2*3=4") and lang.accepts("1+2*3=4") and lang.accepts("0-1=4") and not lang.accepts("1=2")


# ---- next_symbols against brute force ---------------------------------------------------------------------------


def generated_members(name, longest):
    """Every member up to `longest`, built from the definition where enumerating the alphabet would be too slow."""
    if name == "abcde_plus":
        return {"".join(c * k for c, k in zip("abcde", parts))
                for total in range(5, longest + 1) for cuts in itertools.combinations(range(1, total), 4)
                for parts in [np.diff([0, *cuts, total])]}
    if name == "cycle_navigation":
        return {moves + str((moves.count(">") - moves.count("<")) % 5)
                for k in range(longest) for moves in all_strings("<=>", k)}
    if name == "modular_arithmetic":
        out = set()
        for k in range((longest - 3) // 2 + 1):
            for digits in itertools.product("01234", repeat=k + 1):
                for ops in itertools.product("+-*", repeat=k):
                    expression = digits[0] + "".join(o + d for o, d in zip(ops, digits[1:]))
                    out |= {expression + "=" + r for r in "01234" if left_to_right(expression + "=" + r)}
        return out
    alphabet = languages.get_language(name).alphabet
    return {s for n in range(longest + 1) for s in all_strings(alphabet, n) if REFERENCE[name](s)}


# (longest prefix tested, longest member enumerated): every live prefix up to the first completes within the second.
NEXT_BOUNDS = {"dyck1_depth2": (8, 11), "dyck1_depth3": (8, 12), "dyck1_depth4": (8, 13), "dyck1_depth12": (6, 14),
               "dyck2_depth3": (4, 8), "aaaa_star": (8, 12), "abab_star": (6, 10), "abcde_plus": (5, 11),
               "ab_d_bc": (5, 7), "ends_02star": (6, 8), "even_pairs": (8, 10), "repeat_01": (8, 10),
               "cycle_navigation": (4, 6), "modular_arithmetic": (3, 7)}


@pytest.mark.parametrize("name", NEW)
def test_next_symbols_against_brute_force(name):
    lang = languages.get_language(name)
    longest_prefix, longest = NEXT_BOUNDS[name]
    members = generated_members(name, longest)
    if name in ("abcde_plus", "cycle_navigation", "modular_arithmetic"):  # the generator agrees with the reference
        small = ENUMERATED[name]
        assert {s for s in members if len(s) <= small} == {
            s for n in range(small + 1) for s in all_strings(lang.alphabet, n) if REFERENCE[name](s)}
    followers = {}
    for s in members:
        for i in range(len(s)):
            followers.setdefault(s[:i], set()).add(s[i])

    def expected(p):
        return "".join(c for c in lang.alphabet if c in followers.get(p, ()))

    for n in range(longest_prefix + 1):
        for p in all_strings(lang.alphabet, n):
            assert lang.next_symbols(p)[-1] == expected(p), p
    member = lang.sample(np.random.default_rng(4), next(n for n in range(longest_prefix, 40) if lang.count(n)))
    assert lang.next_symbols(member)[: longest_prefix + 1] == [expected(member[:i])
                                                                  for i in range(longest_prefix + 1)]
    assert len(lang.next_symbols(member)) == len(member) + 1


def test_dyck1_depth12_next_symbols_at_the_depth_bound():
    lang = languages.get_language("dyck1_depth12")
    assert lang.next_symbols("a" * 12) == ["a"] + ["ab"] * 11 + ["b"]
    assert lang.next_symbols("a" * 13)[-1] == "" and lang.next_symbols("b")[-1] == ""


# ---- the loader -------------------------------------------------------------------------------------------------

NO_BB = {
    "name": "no_bb_yaml",
    "definition": "Strings over {a, b} without two b's in a row.",
    "alphabet": "ab",
    "transitions": {"ok": {"a": "ok", "b": "after_b"}, "after_b": {"a": "ok"}},
    "start": "ok",
    "accepting": ["ok", "after_b"],
    "sources": ["butoi2025"],
    "note": "A test automaton.",
}


def write(folder, data, name="no_bb.yaml"):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_a_valid_file_registers_a_language_that_passes_the_check(tmp_path, registry):
    cls = automata.load_file(write(tmp_path, NO_BB))
    lang = languages.get_language("no_bb_yaml")
    assert isinstance(lang, languages.DFALanguage) and type(lang) is cls and registry["no_bb_yaml"] is cls
    assert lang.definition == "Strings over {a, b} without two b's in a row." and "A test automaton." in cls.__doc__
    assert lang.sources == ("butoi2025",) and lang.family == "regular" and lang.decided_by == frozenset()
    assert [lang.count(n) for n in range(8)] == [1, 2, 3, 5, 8, 13, 21, 34]
    rng = np.random.default_rng(0)
    samples = [lang.sample(rng, 30) for _ in range(20)]
    assert all(len(s) == 30 and "bb" not in s for s in samples) and len(set(samples)) == 20
    assert lang.next_symbols("abb") == ["ab", "ab", "a", ""]
    result = check_language(lang)
    assert result.ok, result.failures
    assert automata.load_file(tmp_path / "no_bb.yaml") is cls  # loading a file again is harmless


def test_states_declare_a_final_state_without_arrows_and_digits_may_stay_unquoted(tmp_path, registry):
    data = {**NO_BB, "name": "ends_with_one", "alphabet": "01", "states": ["s", "end"],
            "transitions": {"s": {0: "s", 1: "end"}}, "start": "s", "accepting": ["end"],
            "decided_by": ["counts"], "negative_mixture": {"edit": 1.0}, "family": "regular"}
    automata.load_file(write(tmp_path, data))
    lang = languages.get_language("ends_with_one")
    assert [s for n in range(4) for s in all_strings("01", n) if lang.accepts(s)] == ["1", "01", "001"]
    assert lang.decided_by == frozenset({"counts"}) and lang.negative_mixture == {"edit": 1.0}


DROP = object()  # a key left out of the file
BAD_FILES = {
    "unknown key": ({"transitons": {}}, "unknown key 'transitons'"),
    "missing key": ({"start": DROP}, "missing key 'start'"),
    "undeclared state": ({"transitions": {"ok": {"a": "ok", "b": "nowhere"}}}, "'nowhere', which is not declared"),
    "undeclared start": ({"start": "elsewhere"}, "start names the state 'elsewhere'"),
    "undeclared accepting": ({"accepting": ["ok", "gone"]}, "accepting names the state 'gone'"),
    "undeclared in states": ({"states": ["ok"]}, "'after_b', which is not declared"),
    "foreign symbol": ({"transitions": {"ok": {"c": "ok"}}}, "uses a symbol outside the alphabet 'ab'"),
    "bad name": ({"name": "No-BB"}, "name 'No-BB' must be lower-case"),
    "unquoted alphabet": ({"alphabet": 1}, "alphabet must be a quoted string"),
    "repeated symbol": ({"alphabet": "aab"}, "alphabet 'aab' must be distinct"),
    "two-line definition": ({"definition": "one\ntwo"}, "definition must be one line"),
    "boolean state": ({"start": True}, "quote yes, no"),
    "unknown shortcut": ({"decided_by": ["size"]}, "decided_by ['size'] may hold only"),
    "note not text": ({"note": ["a", "list"]}, "note must be text"),
    "arrows not a mapping": ({"transitions": {"ok": ["a", "ok"]}}, "transitions of state 'ok' must map symbols"),
    "bad mixture": ({"negative_mixture": {"edits": 1.0}}, "negative_mixture {'edits': 1.0} needs"),
    "taken name": ({"name": "parity"}, "language 'parity' is already defined by satbench.languages.regular.Parity"),
    "not a mapping": ("- just\n- a list\n", "must be a mapping"),
    "not YAML": ("name: [unclosed\n", "not valid YAML: line"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_each_bad_file_is_one_line_naming_it(kind, tmp_path, registry):
    change, fragment = BAD_FILES[kind]
    data = {k: v for k, v in {**NO_BB, **change}.items() if v is not DROP} if isinstance(change, dict) else change
    path = write(tmp_path, data)
    with pytest.raises(languages.PluginError) as error:
        automata.load_file(path)
    message = str(error.value)
    assert message.startswith(f"{path.resolve()}: ") and "\n" not in message and fragment in message, message
    assert "no_bb_yaml" not in registry


def test_folders_in_the_environment_variable_load_with_the_plugins(tmp_path, registry, monkeypatch, capsys):
    write(tmp_path / "one", NO_BB)
    write(tmp_path / "two", {**NO_BB, "name": "no_bb_too"}, "other.yaml")
    (tmp_path / "two" / "readme.txt").write_text("not an automaton")
    monkeypatch.setenv("SATBENCH_AUTOMATA", f"{tmp_path / 'one'}{automata.os.pathsep}{tmp_path / 'two'}")
    monkeypatch.setattr(base, "_plugins_loaded", False)
    assert languages.get_language("no_bb_too").accepts("abab")
    assert {"no_bb_yaml", "no_bb_too"} <= set(languages.language_names())

    monkeypatch.setattr(base, "_plugins_loaded", False)
    monkeypatch.setenv("SATBENCH_AUTOMATA", str(tmp_path / "missing"))
    with pytest.raises(languages.PluginError, match=f"SATBENCH_AUTOMATA names '{tmp_path / 'missing'}', which is not"):
        languages.language_names()
    assert main(["languages", "list"]) == 2  # the command line says it in one line
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_plugin_may_ship_a_folder_of_automata(tmp_path, registry, monkeypatch):
    write(tmp_path / "shipped", NO_BB)
    (tmp_path / "yaml_plugin.py").write_text("from pathlib import Path\nFOLDER = Path(__file__).with_name('shipped')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint("no_bb", "yaml_plugin:FOLDER", base.PLUGIN_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [entry] if group == base.PLUGIN_GROUP else [])
    monkeypatch.delenv("SATBENCH_AUTOMATA", raising=False)
    monkeypatch.setattr(base, "_plugins_loaded", False)
    assert "no_bb_yaml" in languages.language_names()
    assert type(languages.get_language("no_bb_yaml")).automaton_file == (tmp_path / "shipped" / "no_bb.yaml").resolve()


def test_a_yaml_language_found_through_the_environment_runs_a_tiny_bench(tmp_path, registry, monkeypatch,
                                                                          tiny_config):
    write(tmp_path / "mine", NO_BB)
    monkeypatch.setenv("SATBENCH_AUTOMATA", str(tmp_path / "mine"))
    monkeypatch.setattr(base, "_plugins_loaded", False)
    config = dict(tiny_config, languages=["no_bb_yaml"], seeds=[0],
                  model=dict(tiny_config["model"], attention=["soft", "saturated"]),
                  data=dict(tiny_config.get("data", {}), label_kind="next_symbols"))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(config))
    assert main(["bench", str(tmp_path / "grid.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = read_run(tmp_path / "run")
    assert {row["config"]["model"]["attention"] for row in rows} == {"soft", "saturated"}
    assert all(row["config"]["language"] == "no_bb_yaml" and 0 <= row["metrics"]["acc"]["1"] <= 1 for row in rows)
    assert "no_bb_yaml" in (tmp_path / "run" / "report.md").read_text()


def test_registrations_of_the_tests_do_not_leak():
    """Runs after the loader tests in file order: their scratch registries are gone."""
    assert not {"no_bb_yaml", "no_bb_too", "ends_with_one"} & set(base._REGISTRY)
    assert set(YAML_FILES) <= {path.stem for path in automata.BUILTIN_FOLDER.glob("*.yaml")}
