"""`satbench data export` writes the splits a bench uses, and `satbench score` scores predictions made from them
exactly as the bench scores its own models: a trained model's predictions, scored, give the accuracies its row holds."""

import json

import pytest
import torch
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.harness.export import export_splits, exported_equal, read_manifest, score_predictions
from satbench.harness.results import load_rows_with_config
from satbench.harness.run import build_dataset, checkpoint_path, run_bench
from satbench.languages import get_language
from satbench.languages.base import BOS, FIRST_SYMBOL, PAD
from satbench.models import load

TINY = {"name": "tiny", "languages": ["majority", "dyck1"], "seeds": [0, 1],
        "model": {"attention": "soft", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16},
        "data": {"train_lengths": [1, 6], "test_lengths": [1, 10], "train_size": 80, "test_per_length": 3},
        "train": {"steps": 60, "batch_size": 8, "log_every": 30, "keep_checkpoints": True},
        "eval": {"scales": [1, "inf"], "tie_tolerances": [], "length_bins": [[7, 10]]},
        "probes": {"enabled": False}}


def test_the_export_holds_the_benchs_own_splits(tmp_path):
    grid = C.expand(TINY)
    manifest = export_splits(grid, tmp_path / "export")
    assert {(e["language"], e["seed"]) for e in manifest["entries"]} == {(lang, s) for lang in TINY["languages"]
                                                                          for s in TINY["seeds"]}
    for entry in manifest["entries"]:
        cell = next(c for c in grid.cells if (c.language, c.seed) == (entry["language"], entry["seed"]))
        dataset = build_dataset(cell, {})
        lang = get_language(cell.language)
        for name, split in (("train", dataset.train), ("test", dataset.test)):
            records = [json.loads(line) for line in (tmp_path / "export" / entry["folder"] / f"{name}.jsonl").open()]
            assert [r["string"] for r in records] == split.strings
            assert [r["label"] for r in records] == split.labels.int().tolist()
            assert all(r["prefixes"] == lang.prefix_accepts(r["string"]) for r in records)
            assert all(("next_symbols" in r) == bool(r["label"]) for r in records)  # members only
            flare = tmp_path / "export" / entry["folder"] / "flare" / ("" if name == "train" else f"datasets/{name}")
            assert flare.joinpath("main.tok").read_text().splitlines() == [" ".join(s) for s in split.strings]
            assert flare.joinpath("labels.txt").read_text().split() == [str(r["label"]) for r in records]
            assert entry["splits"][name]["strings"] == len(records)
    again = export_splits(grid, tmp_path / "again")
    assert exported_equal(tmp_path / "export", tmp_path / "again") and again["config_hash"] == manifest["config_hash"]
    other = export_splits(C.expand(C.apply_overrides(TINY, ["data.train_size=90"])), tmp_path / "other")
    assert other["config_hash"] != manifest["config_hash"]
    assert not exported_equal(tmp_path / "export", tmp_path / "other")


def encode(language, strings):
    """BOS + symbol ids + PAD, as the datasets encode strings."""
    alphabet = get_language(language).alphabet
    width = 1 + max(len(s) for s in strings)
    tokens = torch.full((len(strings), width), PAD)
    tokens[:, 0] = BOS
    for row, s in enumerate(strings):
        tokens[row, 1:len(s) + 1] = torch.tensor([FIRST_SYMBOL + alphabet.index(c) for c in s])
    return tokens


def test_a_trained_models_predictions_score_as_the_bench_scored_it(tmp_path):
    """The round trip: export, predict with each trained member (from its checkpoint), score: the accuracies in
    distribution and per bin are the bench's, exactly."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    grid = C.load_grid(path)
    run_dir, _ = run_bench(grid, run_dir=tmp_path / "run", progress=False)
    export_splits(grid, tmp_path / "export")
    lines = []
    for entry in read_manifest(tmp_path / "export")["entries"]:
        cell = next(c for c in grid.cells if (c.language, c.seed) == (entry["language"], entry["seed"]))
        model = load(checkpoint_path(run_dir, cell, cell.train.steps)).eval()
        records = [json.loads(line) for line in (tmp_path / "export" / entry["folder"] / "test.jsonl").open()]
        with torch.no_grad():
            logits = model(encode(cell.language, [r["string"] for r in records]))["logit"]
        lines += [json.dumps({"language": cell.language, "seed": cell.seed, "index": i, "accept": bool(x > 0)})
                  for i, x in enumerate(logits.tolist())]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    assert main(["score", str(tmp_path / "export"), str(predictions), "--run-dir", str(run_dir),
                 "--name", "replayed"]) == 0
    rows = load_rows_with_config(run_dir)
    trained = {(r["config"]["language"], r["config"]["seed"]): r for r in rows
               if r["config"]["model"].get("kind", "transformer") == "transformer"}
    scored = [r for r in rows if r["config"]["model"].get("kind") == "replayed"]
    assert len(scored) == len(trained) == 4
    for row in scored:
        bench = trained[(row["config"]["language"], row["config"]["seed"])]["metrics"]
        assert row["metrics"]["acc"]["1"] == bench["acc"]["1"]
        assert row["metrics"]["acc_bins"]["7-10"]["1"] == bench["acc_bins"]["7-10"]["1"]
        assert row["metrics"]["acc_by_length"]["1"] == bench["acc_by_length"]["1"]
    # The report and the comparison read the scored model beside the trained one.
    assert main(["report", str(run_dir)]) == 0
    assert "| replayed " in (run_dir / "report.md").read_text()
    assert main(["compare", str(run_dir), "--variants", "soft", "replayed"]) == 0


def test_bad_predictions_are_named_in_one_line(tmp_path, capsys):
    export_splits(C.expand(C.apply_overrides(TINY, ["languages=[majority]", "seeds=[0]"])), tmp_path / "export")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"language": "majority", "seed": 0, "index": 0, "accept": "yes"}\n')
    assert main(["score", str(tmp_path / "export"), str(bad), "--run-dir", str(tmp_path / "run"), "--name", "m"]) == 2
    assert "bad.jsonl:1: not a prediction" in capsys.readouterr().err
    partial = tmp_path / "partial.jsonl"
    partial.write_text('{"language": "majority", "seed": 0, "index": 0, "accept": true}\n')
    with pytest.raises(ValueError, match="no prediction for"):
        score_predictions(tmp_path / "export", partial, tmp_path / "run", "m")
    assert not (tmp_path / "run").exists()  # nothing half-written
    with pytest.raises(ValueError, match="no manifest.json"):
        score_predictions(tmp_path, partial, tmp_path / "run", "m")
