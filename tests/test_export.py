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
from satbench.languages.base import BOS, EOS, FIRST_SYMBOL, PAD
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
    assert "bad.jsonl:1: accept must be true or false" in capsys.readouterr().err
    partial = tmp_path / "partial.jsonl"
    partial.write_text('{"language": "majority", "seed": 0, "index": 0, "accept": true}\n')
    with pytest.raises(ValueError, match="no prediction for"):
        score_predictions(tmp_path / "export", partial, tmp_path / "run", "m")
    assert not (tmp_path / "run").exists()  # nothing half-written
    with pytest.raises(ValueError, match="no manifest.json"):
        score_predictions(tmp_path, partial, tmp_path / "run", "m")


def per_prefix_predictions(model, cell, records):
    """A trained model's answers for the prefix or next-symbol task, in the export's format: per prefix its
    membership (and the symbols it says may follow), read from the model's logits as judge_strings reads them."""
    alphabet = get_language(cell.language).alphabet
    with torch.no_grad():
        out = model(encode(cell.language, [r["string"] for r in records]))
    for i, r in enumerate(records):
        n = r["length"]
        if cell.data.label_kind == "prefix":
            yield {"index": i, "prefixes": [bool(x > 0) for x in out["prefix_logits"][i, :n + 1].tolist()]}
        else:
            following = out["next_logits"][i, :n + 1]
            yield {"index": i, "prefixes": [bool(x > 0) for x in following[:, EOS].tolist()],
                   "next_symbols": ["".join(a for k, a in enumerate(alphabet) if row[FIRST_SYMBOL + k] > 0)
                                    for row in following.tolist()]}


@pytest.mark.parametrize("label_kind", ["prefix", "next_symbols"])
def test_per_prefix_predictions_score_as_the_bench_scored_them(tmp_path, label_kind):
    """The round trip for the tasks judged at every prefix: a trained model's per-prefix answers, scored, give the
    bench's accuracies exactly, and one wrong prefix makes its string wrong."""
    config = C.apply_overrides(TINY, ["languages=[dyck1]", "seeds=[0]", f"data.label_kind={label_kind}",
                                      "model.causal=true"])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    grid = C.load_grid(path)
    run_dir, _ = run_bench(grid, run_dir=tmp_path / "run", progress=False)
    export_splits(grid, tmp_path / "export")
    (entry,) = read_manifest(tmp_path / "export")["entries"]
    (cell,) = grid.cells
    model = load(checkpoint_path(run_dir, cell, cell.train.steps)).eval()
    records = [json.loads(line) for line in (tmp_path / "export" / entry["folder"] / "test.jsonl").open()]
    answers = [{"language": "dyck1", "seed": 0, **a} for a in per_prefix_predictions(model, cell, records)]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(a) + "\n" for a in answers))
    score_predictions(tmp_path / "export", predictions, run_dir, "replayed")
    (row,), (bench,) = ([r for r in load_rows_with_config(run_dir) if (r["config"]["model"].get("kind") == "replayed")
                         == replayed] for replayed in (True, False))
    assert row["metrics"]["acc"]["1"] == bench["metrics"]["acc"]["1"]
    assert row["metrics"]["acc_by_length"]["1"] == bench["metrics"]["acc_by_length"]["1"]
    # The oracle gets every string right; flipping one prefix of a long string makes that string wrong.
    oracle = [{"language": "dyck1", "seed": 0, "index": i, "prefixes": [bool(e) for e in r["prefixes"]],
               **({"next_symbols": r["next_symbols"]} if label_kind == "next_symbols" else {})}
              for i, r in enumerate(records)]
    predictions.write_text("".join(json.dumps(a) + "\n" for a in oracle))
    (right,) = score_predictions(tmp_path / "export", predictions, tmp_path / "oracle", "oracle")
    assert right["metrics"]["acc"]["1"] == 1.0
    longest = max(range(len(records)), key=lambda i: records[i]["length"])
    oracle[longest]["prefixes"][1] = not oracle[longest]["prefixes"][1]
    predictions.write_text("".join(json.dumps(a) + "\n" for a in oracle))
    (flipped,) = score_predictions(tmp_path / "export", predictions, tmp_path / "oracle", "oracle")
    assert flipped["metrics"]["acc_by_length"]["1"][records[longest]["length"]] < 1.0


def majority_export(tmp_path):
    export_splits(C.expand(C.apply_overrides(TINY, ["languages=[majority]", "seeds=[0]"])), tmp_path / "export")
    records = [json.loads(line) for line in next((tmp_path / "export").glob("majority/seed-0/test.jsonl")).open()]
    return [{"language": "majority", "seed": 0, "index": i, "accept": bool(r["label"])} for i, r in enumerate(records)]


def write_predictions(path, answers):
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda a: a + [{**a[0], "index": len(a)}], "index {n}, but"),
    (lambda a: a + [{**a[0], "index": 10 ** 6}], "index 1000000, but"),
    (lambda a: a + [{**a[0], "index": -1}], "not a prediction"),
    (lambda a: a + [{**a[0], "seed": 7}], "majority seed 7 is not in the export"),
    (lambda a: a + [{**a[0], "language": "dyck1"}], "dyck1 seed 0 is not in the export"),
    (lambda a: a + [{**a[0], "accept": not a[0]["accept"]}], "predicted already, on line 1"),
    (lambda a: [{**a[0], "seed": 0.9}] + a[1:], "not a prediction"),
    (lambda a: [{**a[0], "accept": "yes"}] + a[1:], "accept must be true or false"),
])
def test_bad_predictions_are_refused_with_their_line(tmp_path, capsys, change, message):
    answers = majority_export(tmp_path)
    message = message.format(n=len(answers))
    bad = write_predictions(tmp_path / "bad.jsonl", change(answers))
    assert main(["score", str(tmp_path / "export"), str(bad), "--run-dir", str(tmp_path / "run"), "--name", "m"]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.jsonl" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_corrupt_files_and_taken_names_are_refused(tmp_path, capsys):
    good = write_predictions(tmp_path / "good.jsonl", majority_export(tmp_path))

    def refused(export=tmp_path / "export", run=tmp_path / "run", name="m"):
        code = main(["score", str(export), str(good), "--run-dir", str(run), "--name", name])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    for taken in ("soft", "saturated", "transformer", "lstm"):
        assert f"--name {taken}: the name of a model the bench trains" in refused(name=taken)
    run = tmp_path / "corrupt_run"
    run.mkdir()
    (run / "config.yaml").write_text("name: [unclosed\n")
    assert "config.yaml: not YAML" in refused(run=run)
    test = next((tmp_path / "export").glob("majority/seed-0/test.jsonl"))
    kept = test.read_text()
    test.write_text(kept + "{oops\n")
    assert f"{test}:{len(kept.splitlines()) + 1}: not JSON" in refused()
    test.write_text(kept)
    manifest = tmp_path / "export" / "manifest.json"
    whole = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in whole.items() if k != "entries"}))
    assert "its entries are missing" in refused()
    manifest.write_text("{not json")
    assert "manifest.json: not JSON" in refused()
    assert not (tmp_path / "run").exists()


def test_an_export_is_written_whole_or_not_at_all(tmp_path, capsys):
    out = tmp_path / "export"
    # Overrides may stand before --out, among the languages.
    assert main(["data", "export", "majority", "seeds=[0]", "data.train_size=40", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # A second export that fails on its second language leaves the first export as it was, and no folder beside it.
    assert main(["data", "export", "majority", "anbn", "seeds=[0]", "data.train_lengths=[1,1]",
                 "--out", str(out)]) == 2
    assert "anbn" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    # A directory that holds something else is not overwritten.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["data", "export", "majority", "--out", str(other)]) == 2
    assert "exists and is not an export" in capsys.readouterr().err and (other / "notes.txt").read_text() == "mine"
    # Nor is one whose manifest.json is not an export's, nor an export that holds a file of the user's.
    (other / "manifest.json").write_text('{"name": "webapp"}')
    (out / "predictions.jsonl").write_text("mine\n")
    for folder in (other, out):
        assert main(["data", "export", "majority", "--out", str(folder)]) == 2
        assert "exists and is not an export" in capsys.readouterr().err
    assert (other / "notes.txt").exists() and (out / "predictions.jsonl").exists()
    # An export that holds only what an export writes is replaced, and nothing is left beside it.
    (out / "predictions.jsonl").unlink()
    assert main(["data", "export", "majority", "seeds=[1]", "data.train_size=40", "--out", str(out)]) == 0
    assert [e["seed"] for e in read_manifest(out)["entries"]] == [1] and not (out / "majority" / "seed-0").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "other"]
