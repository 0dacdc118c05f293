"""`satbench languages ...`: output, exit codes, one-line errors, and a plugin found through its entry point."""

import argparse
import importlib.metadata
import json
import sys

import numpy as np
import pytest
import yaml

from satbench import language_commands as languages_cli
from satbench import languages
from satbench.cli import main
from satbench.data import make_dataset
from satbench.languages import base

BUILTIN = ["aa_star", "ab_star", "anbn", "anbncn", "dyck1", "dyck2", "equal", "first", "majority", "parity",
           "shuffle2", "tomita1", "tomita2", "tomita3", "tomita4", "tomita5", "tomita6", "tomita7"]
PLUGIN_DIST = "satbench-example-plugin"  # tests/plugin, which conftest's example_plugin puts on the path


def satbench(capsys, *argv):
    """Run `satbench languages ARGV` in process, as the entry point does: ValueError -> one line, exit 2."""
    parser = argparse.ArgumentParser(prog="satbench")
    languages_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["languages", *argv])
    try:
        code = args.run(args) or 0
    except ValueError as error:
        print(f"satbench: {error}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_language_with_its_definition(capsys):
    code, out, _ = satbench(capsys, "list")
    assert code == 0
    listed = table_rows(out)
    assert set(BUILTIN) <= set(listed)
    assert listed["dyck2"] == ["context-free", "`()[]`", languages.get_language("dyck2").definition, "B20"]
    assert listed["parity"][-1] == "FLaRe" and listed["crl3"][-1] == "B20" and listed["equal"][-1] == "—"
    assert len(listed) >= 40


def table_rows(markdown):
    """{name: [family, alphabet, definition, used by]} of a `languages list` table."""
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in markdown.splitlines()[2:]]
    return {row[0].strip("`"): row[1:] for row in cells}


def test_list_prints_the_table_of_docs_languages(capsys):
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "languages.md").read_text()
    code, out, _ = satbench(capsys, "list")
    shipped = [line for line in out.strip().splitlines() if line.startswith(("| name", "| ---"))
               or type(languages.get_language(line.split(" | ")[0].strip("| `"))).__module__.startswith("languages.")]
    assert len(shipped) == 2 + len([n for n in languages.language_names()
                                    if type(languages.get_language(n)).__module__.startswith("languages.")])
    assert "\n".join(shipped) in page


def test_sample_prints_members_of_the_exact_length(capsys):
    code, out, _ = satbench(capsys, "sample", "dyck2", "--length", "10", "-n", "7", "--seed", "3")
    strings = out.splitlines()
    lang = languages.get_language("dyck2")
    assert code == 0 and len(strings) == 7
    assert all(len(s) == 10 and lang.accepts(s) for s in strings)
    assert satbench(capsys, "sample", "dyck2", "-l", "10", "-n", "7", "--seed", "3")[1] == out
    assert satbench(capsys, "sample", "dyck2", "-l", "10", "-n", "7", "--seed", "4")[1] != out


def test_sample_negative_prints_non_members(capsys):
    code, out, _ = satbench(capsys, "sample", "anbn", "-l", "12", "-n", "20", "--negative")
    lang = languages.get_language("anbn")
    assert code == 0
    assert all(len(s) == 12 and not lang.accepts(s) for s in out.splitlines())


@pytest.mark.parametrize(("argv", "message"), [
    (["sample", "dyk1", "-l", "4"], "unknown language 'dyk1' (did you mean 'dyck1'?)"),
    (["check", "dyk1"], "unknown language 'dyk1' (did you mean 'dyck1'?)"),
    (["sample", "dyck1", "-l", "-3"], "--length must be >= 0, got -3"),
    (["sample", "dyck1", "-l", "4", "-n", "-1"], "-n must be >= 0, got -1"),
    (["sample", "anbn", "-l", "5"], "language 'anbn' has no members of length 5"),
    (["sample", "aa_star", "-l", "4", "--negative"], "language 'aa_star' has no non-members of length 4"),
    (["check"], "check: give one language name or --all"),
    (["check", "dyck1", "--all"], "check: give one language name or --all"),
    (["check", "dyck1", "--seed", "-1"], "--seed must be >= 0, got -1"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = satbench(capsys, *argv)
    assert code == 2 and out == ""
    assert err == f"satbench: {message}\n"


def test_check_passes_a_builtin_and_prints_its_baselines(capsys):
    code, out, _ = satbench(capsys, "check", "dyck1")
    assert code == 0
    assert out.startswith("dyck1      ok    length 0.5")
    assert "parity" in out and "counts" in out


def test_check_names_weak_data_and_passes_unless_strict(capsys):
    """a^n b^n's default test split repeats one member per length: said aloud, not a failure unless asked."""
    code, out, _ = satbench(capsys, "check", "anbn")
    assert code == 0 and out.startswith("anbn       ok ")
    (warning,) = [line for line in out.splitlines() if "weak data" in line]
    assert warning.startswith("    weak data: anbn test split: ") and "members (one per length)" in warning
    code, out, _ = satbench(capsys, "check", "anbn", "--strict")
    assert code == 1 and out.startswith("anbn       FAIL") and "weak data: anbn test split: " in out
    code, out, _ = satbench(capsys, "check", "dyck1", "--strict")
    assert code == 0 and "weak data" not in out


@pytest.mark.usefixtures("liar")
def test_check_fails_a_sampler_that_disagrees_with_its_oracle(capsys):
    code, out, _ = satbench(capsys, "check", "liar")
    assert code == 1
    assert "liar       FAIL" in out and "sample(rng, 1) returned 'a', which is not a member of length 1" in out
    code, out, err = satbench(capsys, "sample", "liar", "-l", "2")
    assert code == 2 and err == "satbench: language 'liar': sample(rng, 2) returned 'aa', which is rejected by " \
                                "its own accepts()\n"


def test_check_fails_a_language_its_length_parity_decides(capsys, registry):
    @languages.register
    class EvenLength(languages.DFALanguage):
        """Strings over {a, b} of even length (undeclared: parity decides it)."""

        name = "even_length"
        alphabet = "ab"
        transitions = {"even": {"a": "odd", "b": "odd"}, "odd": {"a": "even", "b": "even"}}
        start = "even"
        accepting = {"even"}

    code, out, _ = satbench(capsys, "check", "even_length")
    assert code == 1
    assert "the parity shortcut scores 1.000 > 0.6 on the test split" in out


def test_report_is_a_markdown_table_of_counts_and_baselines(capsys):
    code, out, _ = satbench(capsys, "report")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("| language | family | alphabet | 0 | 1 | 2 |")
    assert lines[0].endswith("| 12 | length | parity | counts+length |")
    rows = {line.split("|")[1].strip(): line for line in lines[2:] if line.startswith("|")}
    assert set(BUILTIN) <= set(rows)
    assert "| 1 | 0 | 1 | 0 | 2 | 0 | 5 | 0 | 14 | 0 | 42 | 0 | 132 |" in rows["dyck1"]
    assert rows["majority"].rstrip(" |").endswith("*")  # counts decide majority: marked
    assert "* marks a shortcut" in out


@pytest.mark.slow
def test_check_all_passes(capsys):
    code, out, _ = satbench(capsys, "check", "--all")
    assert code == 0 and out.count(" ok ") >= len(BUILTIN)


# ---- plugins ---------------------------------------------------------------------------------------------------


def test_plugin_language_appears_in_satbench_languages_list(example_plugin, capsys):
    assert main(["languages", "list"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert "palindrome" in rows
    assert rows["palindrome"] == ["context-free", "`ab`", "Strings over {a, b} that read the same backwards.", "—"]
    assert set(BUILTIN) <= set(rows)
    assert importlib.metadata.distribution(PLUGIN_DIST).entry_points.select(group=base.PLUGIN_GROUP).names == \
        {"palindrome"}


def test_plugin_language_passes_check_and_builds_datasets(example_plugin, capsys):
    code, out, _ = satbench(capsys, "check", "palindrome")
    assert code == 0, out
    dataset = make_dataset("palindrome", train_size=200, test_per_length=4)
    assert all(s == s[::-1] for s, y in zip(dataset.train.strings, dataset.train.labels.tolist(), strict=True) if y)
    assert languages.get_language("palindrome").sample(np.random.default_rng(0), 0) == ""


def test_plugin_language_gets_linear_probes_in_a_tiny_bench(example_plugin, tmp_path, tiny_config, capsys):
    """A plugin declares nothing for the probes, and its cells still carry linear probes (of its prefix flag)."""
    config = dict(tiny_config, languages=["palindrome"], seeds=[0], probes={"enabled": True, "strings": 32},
                  model=dict(tiny_config["model"], attention="soft"), train=dict(tiny_config["train"], steps=10))
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0, \
        capsys.readouterr().err
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "cells.jsonl").read_text().splitlines()]
    probes = row["metrics"]["probes"]
    assert row["config"]["language"] == "palindrome"
    for who in ("probe", "probe_control"):
        assert 0.0 <= probes[f"{who}_prefix_member_bacc_best"] <= 1.0
