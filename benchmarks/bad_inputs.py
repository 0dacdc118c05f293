"""Every bad input a user can give `satbench`, run as a user would, with what each prints.

Each case writes its files into a scratch folder, runs one `satbench` command line in a fresh process and records the
exit status, the number of lines it printed to stderr, whether a Python traceback escaped, and whether it left a rows
file behind. A bad input must give one line naming the problem, a non-zero exit, no traceback, no rows.

    python benchmarks/bad_inputs.py            # a Markdown table, one row per case; exit 1 if any case misbehaves
"""

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

SATBENCH = [sys.executable, "-m", "satbench"]
TIMEOUT = 120
TINY = {
    "name": "tiny",
    "languages": ["first"],
    "seeds": [0],
    "model": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8},
    "data": {"train_lengths": [1, 6], "test_lengths": [1, 8], "train_size": 40, "test_per_length": 2},
    "train": {"steps": 2, "batch_size": 4},
    "eval": {"scales": [1, "inf"], "length_bins": [[7, 8]]},
}


def tiny(**changes):
    """The tiny config with dotted keys changed (a value of None deletes the key)."""
    config = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = config
        for key in path:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return config


def config_file(config, name="config.yaml"):
    """A setup step: write `config` (a dict, or raw text or bytes) to the case's folder."""
    def write(folder):
        path = folder / name
        if isinstance(config, bytes):
            path.write_bytes(config)
        elif isinstance(config, str):
            path.write_text(config)
        else:
            path.write_text(yaml.safe_dump(config))
    return write


def run_folder(rows):
    """A setup step: a run directory `run/` holding config.yaml and a cells.jsonl of the given text."""
    def write(folder):
        (folder / "run").mkdir()
        (folder / "run" / "config.yaml").write_text(yaml.safe_dump(TINY))
        (folder / "run" / "cells.jsonl").write_text(rows)
    return write


def automaton(text, name="bad.yaml"):
    def write(folder):
        (folder / "automata").mkdir(exist_ok=True)
        (folder / "automata" / name).write_text(text)
    return write


BENCH = ["bench", "config.yaml", "--run-dir", "out", "--quiet"]
GOOD_AUTOMATON = ("name: ones_test\ndefinition: strings of 1s\nalphabet: '01'\nstart: q\naccepting: [q]\n"
                  "transitions: {q: {'1': q}}\n")

CASES = [
    # ---- the config file itself
    ("config: missing file", [], ["bench", "nowhere.yaml", "--quiet"]),
    ("config: a directory", [lambda f: (f / "dir.yaml").mkdir()], ["bench", "dir.yaml", "--quiet"]),
    ("config: empty file", [config_file("")], BENCH),
    ("config: invalid YAML", [config_file("languages: [first\nseeds: 0\n")], BENCH),
    ("config: not UTF-8", [config_file(b"name: t\nlanguages: [\xff]\n")], BENCH),
    ("config: a list, not a mapping", [config_file("- first\n- majority\n")], BENCH),
    ("config: unknown top-level key", [config_file(tiny(langauges=["first"]))], BENCH),
    ("config: unknown section", [config_file(tiny(optim={"lr": 1}))], BENCH),
    ("config: typo in a model key", [config_file(tiny(**{"model.d_modl": 8}))], BENCH),
    ("config: typo in a train key", [config_file(tiny(**{"train.step": 8}))], BENCH),
    ("config: name with a slash", [config_file(tiny(name="a/b"))], BENCH),
    ("config: no languages", [config_file(tiny(languages=[]))], BENCH),
    ("config: unknown language", [config_file(tiny(languages=["dyck_1"]))], BENCH),
    ("config: language not a string", [config_file(tiny(languages=[3]))], BENCH),
    ("config: negative seed", [config_file(tiny(seeds=[-1]))], BENCH),
    ("config: seed a string", [config_file(tiny(seeds=["zero"]))], BENCH),
    ("config: vocab_size too small", [config_file(tiny(vocab_size=4))], BENCH),
    ("model: d_model a string", [config_file(tiny(**{"model.d_model": "big"}))], BENCH),
    ("model: negative d_model", [config_file(tiny(**{"model.d_model": -8}))], BENCH),
    ("model: d_model not divisible by heads", [config_file(tiny(**{"model.n_heads": 3}))], BENCH),
    ("model: odd d_model with sinusoids", [config_file(tiny(**{"model.d_model": 7, "model.n_heads": 1}))], BENCH),
    ("model: unknown attention", [config_file(tiny(**{"model.attention": "sparse"}))], BENCH),
    ("model: unknown positional", [config_file(tiny(**{"model.positional": "rope"}))], BENCH),
    ("model: unknown layer_norm", [config_file(tiny(**{"model.layer_norm": "rms"}))], BENCH),
    ("model: unknown surrogate", [config_file(tiny(**{"model.surrogate": "gumbel"}))], BENCH),
    ("model: negative tol", [config_file(tiny(**{"model.tol": -1e-5}))], BENCH),
    ("model: causal not a bool", [config_file(tiny(**{"model.causal": "yes please"}))], BENCH),
    ("model: vocab_size set by hand", [config_file(tiny(**{"model.vocab_size": 9}))], BENCH),
    ("data: reversed train range", [config_file(tiny(**{"data.train_lengths": [6, 1]}))], BENCH),
    ("data: negative length", [config_file(tiny(**{"data.train_lengths": [-1, 6]}))], BENCH),
    ("data: test range shorter than train", [config_file(tiny(**{"data.test_lengths": [1, 4]}))], BENCH),
    ("data: length above the limit", [config_file(tiny(**{"data.test_lengths": [1, 10**6]}))], BENCH),
    ("data: range not a pair", [config_file(tiny(**{"data.train_lengths": 6}))], BENCH),
    ("data: zero train_size", [config_file(tiny(**{"data.train_size": 0}))], BENCH),
    ("data: unknown label_kind", [config_file(tiny(**{"data.label_kind": "tagging"}))], BENCH),
    ("data: unknown negatives", [config_file(tiny(**{"data.negatives": "flair"}))], BENCH),
    ("train: zero steps", [config_file(tiny(**{"train.steps": 0}))], BENCH),
    ("train: negative lr", [config_file(tiny(**{"train.lr": -0.1}))], BENCH),
    ("train: lr a string", [config_file(tiny(**{"train.lr": "fast"}))], BENCH),
    ("train: unknown optimizer", [config_file(tiny(**{"train.optimizer": "lion"}))], BENCH),
    ("train: unknown schedule", [config_file(tiny(**{"train.schedule": "step"}))], BENCH),
    ("train: momentum 1", [config_file(tiny(**{"train.optimizer": "sgd", "train.momentum": 1.0}))], BENCH),
    ("train: beta 1", [config_file(tiny(**{"train.betas": [0.9, 1.0]}))], BENCH),
    ("train: negative weight decay", [config_file(tiny(**{"train.weight_decay": -0.1}))], BENCH),
    ("train: compile a string", [config_file(tiny(**{"train.compile": "yes"}))], BENCH),
    ("eval: negative scale", [config_file(tiny(**{"eval.scales": [-1, "inf"]}))], BENCH),
    ("eval: scale a word", [config_file(tiny(**{"eval.scales": [1, "infinite"]}))], BENCH),
    ("eval: threshold above 1", [config_file(tiny(**{"eval.threshold": 2}))], BENCH),
    ("eval: unknown scaling", [config_file(tiny(**{"eval.scaling": "weights"}))], BENCH),
    ("eval: bin outside the test range", [config_file(tiny(**{"eval.length_bins": [[7, 80]]}))], BENCH),
    ("zip: unknown path", [config_file(tiny(zip=[["model.bias", "train.lr"]]))], BENCH),
    ("zip: axes of unequal length",
     [config_file(tiny(**{"train.lr": [0.1, 0.01], "train.optimizer": ["adamw", "sgd", "adam"]},
                       zip=[["train.lr", "train.optimizer"]]))], BENCH),
    ("override: unknown key", [config_file(TINY)], [*BENCH, "train.stesp=3"]),
    ("override: no '='", [config_file(TINY)], [*BENCH, "train.steps"]),
    ("override: bad value", [config_file(TINY)], [*BENCH, "train.steps=-3"]),
    # ---- where the bench writes
    ("--run-dir: an existing file", [config_file(TINY), lambda f: (f / "out").write_text("x")], BENCH),
    ("--run-dir: another config's run",
     [config_file(TINY), config_file(tiny(name="other"), "other.yaml"),
      lambda f: subprocess.run([*SATBENCH, "bench", "other.yaml", "--run-dir", "out", "--quiet", "--no-report"],
                               cwd=f, capture_output=True, timeout=TIMEOUT)], BENCH),
    ("--device: no such device", [config_file(TINY)], [*BENCH, "--device", "tpu"]),
    ("--device: cuda without a GPU", [config_file(TINY)], [*BENCH, "--device", "cuda"]),
    ("--shard: out of range", [config_file(TINY)], [*BENCH, "--shard", "3/2"]),
    ("--shard: not i/n", [config_file(TINY)], [*BENCH, "--shard", "half"]),
    # ---- reading runs
    ("report: missing run", [], ["report", "nowhere"]),
    ("report: empty folder", [lambda f: (f / "run").mkdir()], ["report", "run"]),
    ("report: corrupt row in the middle", [run_folder('{"hash": 1}\nnot json\n{"hash": 2}\n')], ["report", "run"]),
    ("report: rows that are not objects", [run_folder("[1, 2]\n")], ["report", "run"]),
    ("report: a file, not a run", [config_file(TINY)], ["report", "config.yaml"]),
    ("compare: missing run", [], ["compare", "a", "b"]),
    # ---- languages
    ("languages sample: unknown language", [], ["languages", "sample", "dyck_1", "--length", "4"]),
    ("languages sample: negative length", [], ["languages", "sample", "dyck1", "--length", "-4"]),
    ("languages sample: length 10^6", [], ["languages", "sample", "parity", "--length", "1000000", "-n", "1"]),
    ("languages sample: length not a number", [], ["languages", "sample", "dyck1", "--length", "ten"]),
    ("languages sample: negative -n", [], ["languages", "sample", "dyck1", "--length", "4", "-n", "-1"]),
    ("languages sample: negative seed", [], ["languages", "sample", "dyck1", "--length", "4", "--seed", "-1"]),
    ("languages check: unknown language", [], ["languages", "check", "dyck_1"]),
    ("languages check: no name and no --all", [], ["languages", "check"]),
    ("automata: folder missing", [], ["languages", "list"], {"SATBENCH_AUTOMATA": "no_such_folder"}),
    ("automata: invalid YAML", [automaton("name: [\n")], ["languages", "list"], {"SATBENCH_AUTOMATA": "automata"}),
    ("automata: transition to an unknown state",
     [automaton(GOOD_AUTOMATON.replace("{q: {'1': q}}", "{q: {'1': r}}"))], ["languages", "list"],
     {"SATBENCH_AUTOMATA": "automata"}),
    ("automata: symbol outside the alphabet",
     [automaton(GOOD_AUTOMATON.replace("{q: {'1': q}}", "{q: {'2': q}}"))], ["languages", "list"],
     {"SATBENCH_AUTOMATA": "automata"}),
    ("automata: unknown key", [automaton(GOOD_AUTOMATON + "acepting: [q]\n")], ["languages", "list"],
     {"SATBENCH_AUTOMATA": "automata"}),
    ("automata: a built-in name", [automaton(GOOD_AUTOMATON.replace("ones_test", "parity"))], ["languages", "list"],
     {"SATBENCH_AUTOMATA": "automata"}),
    ("construct: unknown construction", [], ["construct", "parity"]),
]


def rows_files(folder):
    """Every rows file under folder with its bytes: a bad input may neither write rows nor rewrite them."""
    return {path: path.read_bytes() for path in folder.rglob("*.jsonl")}


def run_case(name, setup, argv, env=None):
    folder = Path(tempfile.mkdtemp(prefix="bad_input_"))
    try:
        for step in setup:
            step(folder)
        before = rows_files(folder)
        environment = {**os.environ, **(env or {})}
        try:
            done = subprocess.run([*SATBENCH, *argv], cwd=folder, capture_output=True, text=True, timeout=TIMEOUT,
                                  env=environment)
            code, err = done.returncode, done.stderr.strip()
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        lines = err.splitlines()
        touched = rows_files(folder) != before
        ok = code not in (0, "timeout") and len(lines) == 1 and "Traceback" not in err and not touched
        return {"case": name, "exit": code, "lines": len(lines), "ok": ok, "touched": touched,
                "message": lines[-1] if lines else ""}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main():
    results = [run_case(*case) for case in CASES]
    print("| # | case | exit | stderr lines | rows touched | verdict | what it prints |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        message = r["message"].replace("|", "\\|")
        print(f"| {i} | {r['case']} | {r['exit']} | {r['lines']} | {'yes' if r['touched'] else 'no'} | "
              f"{'ok' if r['ok'] else 'FAIL'} | {message} |")
    failed = sum(not r["ok"] for r in results)
    print(f"\n{len(results) - failed} of {len(results)} cases answered with one line and a non-zero exit")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
