"""A model from a plugin package (entry-point group satbench.models, tests/plugin) benches end to end: it trains one
member at a time on the bench's data, is evaluated and reported beside the built-in models, and its name is checked."""

import json

import pytest
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.models import Ensemble, ModelConfig
from satbench.models.kinds import model_kinds, stackable

TINY = {"name": "plugin_model", "languages": ["majority", "dyck1"], "seeds": [0, 1],
        "model": {"kind": ["transformer", "prefix_average"], "attention": "soft", "d_model": 8, "n_heads": 2,
                  "n_layers": 1, "d_ff": 16},
        "data": {"train_lengths": [1, 6], "test_lengths": [1, 10], "train_size": 80, "test_per_length": 3},
        "train": {"steps": 30, "batch_size": 8, "log_every": 10},
        "eval": {"scales": [1, "inf"], "tie_tolerances": [0.00001], "length_bins": [[7, 10]]},
        "probes": {"strings": 8}}


def test_the_plugin_model_is_a_kind_and_trains_one_member_at_a_time(example_plugin):
    assert "prefix_average" in model_kinds() and not stackable("prefix_average")
    cells = C.expand(TINY).cells
    plugin = [c for c in cells if c.model.kind == "prefix_average"]
    assert len(plugin) == 4 and len({C.group_key(c) for c in plugin}) == 4
    model = Ensemble(ModelConfig(vocab_size=8, kind="prefix_average", d_model=8), [3]).member(0)
    assert type(model).__name__ == "PrefixAverage"


def test_the_plugin_model_benches_and_reports_beside_the_transformer(example_plugin, tmp_path, capsys):
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "cells.jsonl").read_text().splitlines()]
    plugin = [r for r in rows if r["config"]["model"].get("kind") == "prefix_average"]
    assert len(plugin) == 4
    for row in plugin:
        assert list(row["metrics"]["acc"]) == ["1"] and 0 <= row["metrics"]["acc"]["1"] <= 1
        assert "norm_initial" in row["metrics"]["probes"] and "probe_errors" not in row["metrics"]
        assert row["log"][0]["loss"] != row["log"][-1]["loss"]  # it trained
    report = (tmp_path / "run" / "report.md").read_text()
    line = next(line for line in report.splitlines() if line.startswith("| majority") and "| prefix_average " in line)
    assert "n/a" in line  # no attention: no c=inf
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "run"), "--variants", "soft", "prefix_average"]) == 0
    assert "model.kind:" not in capsys.readouterr().out  # the kind is the variant compared, not a difference beside it


def test_an_unknown_model_kind_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, model=dict(TINY["model"], kind="transfomer"))))
    assert main(["bench", str(path), "--dry-run", "--no-estimate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("satbench: model.kind: 'transfomer' is not one of transformer, lstm, rnn")
    assert "\n" not in err
    with pytest.raises(ValueError, match="model.kind"):
        Ensemble(ModelConfig(vocab_size=8, kind="nonesuch"), [0])
