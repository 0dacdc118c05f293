"""The recurrent baselines (model.kind lstm, rnn): a stacked member computes what torch's nn.LSTM / nn.RNN with its
weights computes, they train and report through the same harness, and what needs attention says n/a."""

import fnmatch
import json
import math
import shutil

import pytest
import torch
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.harness.results import read_run
from satbench.harness.run import run_bench
from satbench.models import Ensemble, ModelConfig
from satbench.models.io import load, save
from satbench.models.recurrent import RECURRENT_KINDS
from satbench.probes import probe_classes
from satbench.report.common import load_theory, model_kind
from satbench.report.write import write_report

TORCH_MODULES = {"lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}


def torch_twin(kind, state_dict, d, layers):
    """torch's own recurrent module with a member's weights."""
    twin = TORCH_MODULES[kind](d, d, num_layers=layers, batch_first=True)
    with torch.no_grad():
        for layer in range(layers):
            for ours, theirs in (("input_maps", "ih"), ("state_maps", "hh")):
                getattr(twin, f"weight_{theirs}_l{layer}").copy_(state_dict[f"{ours}.{layer}.weight"])
                getattr(twin, f"bias_{theirs}_l{layer}").copy_(state_dict[f"{ours}.{layer}.bias"])
    return twin


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_each_stacked_member_is_torchs_own_module(kind):
    config = ModelConfig(vocab_size=8, kind=kind, d_model=12, n_layers=2, n_heads=1)
    ensemble = Ensemble(config, [0, 1, 2])
    tokens = torch.randint(3, 6, (3, 4, 9))
    tokens[:, :, 0] = 1
    tokens[:, 1, 6:] = 0  # padding trails a shorter string
    out = ensemble(tokens, internals=True)
    for i in range(3):
        state = ensemble.member_state_dict(i)
        twin = torch_twin(kind, state, 12, 2)
        with torch.no_grad():
            expected, _ = twin(torch.nn.functional.embedding(tokens[i], state["token_embedding.weight"]))
        real = tokens[i] != 0
        torch.testing.assert_close(out["hidden"][i, -1][real], expected[real], atol=1e-6, rtol=1e-5)
        # The membership logit is the head at the last real position.
        last = real.sum(dim=1) - 1
        head = expected[torch.arange(4), last] @ state["head.weight"].T + state["head.bias"]
        torch.testing.assert_close(out["logit"][i], head.squeeze(-1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_members_start_from_torchs_initialisation_and_their_own_seed(kind):
    config = ModelConfig(vocab_size=8, kind=kind, d_model=16, n_layers=1)
    ensemble = Ensemble(config, [0, 1])
    bound = 1 / 16 ** 0.5
    first, second = ensemble.member_state_dict(0), ensemble.member_state_dict(1)
    for name in ("input_maps.0.weight", "state_maps.0.weight", "state_maps.0.bias"):
        assert first[name].abs().max() <= bound and not torch.equal(first[name], second[name])
    assert Ensemble(config, [1]).member_state_dict(0)["state_maps.0.weight"].equal(second["state_maps.0.weight"])


def test_a_recurrent_model_saves_and_loads(tmp_path):
    config = ModelConfig(vocab_size=8, kind="lstm", d_model=8, n_layers=1)
    member = Ensemble(config, [3]).member(0)
    path = save(member, tmp_path / "lstm.pt")
    again = load(path)
    assert type(again) is type(member) and again.config.kind == "lstm"
    tokens = torch.tensor([[1, 3, 4, 3]])
    torch.testing.assert_close(again.eval()(tokens)["logit"], member.eval()(tokens)["logit"])


TINY = {"name": "kinds", "languages": ["majority", "dyck1"], "seeds": [0, 1],
        "model": {"kind": ["transformer", "lstm", "rnn"], "attention": ["soft", "saturated"], "positional": "none",
                  "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16},
        "data": {"train_lengths": [1, 6], "test_lengths": [1, 10], "train_size": 60, "test_per_length": 2},
        "train": {"steps": 8, "batch_size": 8, "log_every": 4},
        "eval": {"scales": [1, 1000, "inf"], "tie_tolerances": [0.00001]},
        "probes": {"strings": 8}}


def test_an_attention_axis_gives_one_recurrent_cell_per_language_and_seed():
    cells = C.expand(TINY).cells
    kinds = [c.model.kind for c in cells]
    assert kinds.count("transformer") == 2 * 2 * 2 and kinds.count("lstm") == 2 * 2 and kinds.count("rnn") == 2 * 2
    assert len({C.cell_hash(c) for c in cells}) == len(cells)
    assert {c.model.positional for c in cells} == {"none"}  # a field that is no axis keeps its value


def test_the_issues_grid_plans_one_cell_per_language_and_seed_for_each_recurrent_kind(capsys):
    # default.yaml's attention axis (soft, saturated, hard) must not multiply the cells of a model without attention.
    grid = C.load_grid("configs/default.yaml", ["model.kind=[lstm,rnn]"])
    planned = [(c.language, c.seed, c.model.kind) for c in grid.cells]
    expected = len(grid.raw["languages"]) * len(grid.raw["seeds"]) * 2
    assert len(planned) == len(set(planned)) == expected
    assert {kind for _, _, kind in planned} == {"lstm", "rnn"}
    assert main(["bench", "configs/default.yaml", "model.kind=[lstm,rnn]", "--dry-run", "--no-estimate"]) == 0
    assert f": {expected} cells in " in capsys.readouterr().out


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """TINY benched once for the tests that read its rows and its report: transformers beside lstm and rnn."""
    root = tmp_path_factory.mktemp("kinds")
    (root / "kinds.yaml").write_text(yaml.safe_dump(TINY))
    run_dir, _ = run_bench(C.load_grid(root / "kinds.yaml"), run_dir=root / "run", progress=False)
    return run_dir


@pytest.fixture(scope="module")
def mixed_report(mixed_run):
    return write_report(mixed_run).read_text()


def is_recurrent(row):
    return model_kind(row) in RECURRENT_KINDS


def test_the_baselines_bench_and_report_with_na_for_attention(mixed_run, mixed_report):
    rows = [json.loads(line) for line in (mixed_run / "cells.jsonl").read_text().splitlines()]
    recurrent = [r for r in rows if is_recurrent(r)]
    assert len(recurrent) == 8
    for row in recurrent:
        assert list(row["metrics"]["acc"]) == ["1"]  # no sweep, limit or uniform control
        assert row["metrics"]["tie_tolerance_acc"] == {}
        probes = row["metrics"]["probes"]
        assert "norm_initial" in probes and not any(k.startswith(("split_share", "positions", "tv_limit"))
                                                    for k in probes)
    report = mixed_report
    lstm_line = next(line for line in report.splitlines() if line.startswith("| majority") and "| lstm " in line)
    assert "n/a" in lstm_line and "| yes " in lstm_line  # an LSTM can count: theory says yes
    rnn_line = next(line for line in report.splitlines() if line.startswith("| majority") and "| rnn " in line)
    assert "| no " in rnn_line


def attention_patterns():
    """The keys of metrics.probes that the probes of attention declare for the report (a `*` in a pattern)."""
    patterns = set()
    for cls in probe_classes(attention=True):
        if cls.needs_attention and cls.report is not None:
            for table in [cls.report.columns, *(t.columns for t in cls.report.tables)]:
                patterns.update(table)
    return patterns


def linear_probe_keys(row):
    return {key for key in row["metrics"]["probes"] if key.startswith("probe_")}


def test_a_recurrent_row_holds_the_linear_probes_and_no_attention_probe(mixed_run):
    rows = read_run(mixed_run)
    transformers = {r["config"]["language"]: r for r in rows if not is_recurrent(r)}
    patterns = attention_patterns()
    for row in rows:
        probes = row["metrics"]["probes"]
        attention = {key for key in probes if any(fnmatch.fnmatchcase(key, p) for p in patterns)}
        if not is_recurrent(row):
            assert attention and "ties" in row["metrics"]  # the patterns name what a transformer records
            continue
        assert not attention and "ties" not in row["metrics"], row["config"]["model"]["kind"]
        # The targets and layers of a transformer of its language (n_layers 1: the embeddings and one layer), trained
        # and the untrained control.
        keys = linear_probe_keys(row)
        assert keys == linear_probe_keys(transformers[row["config"]["language"]])
        assert any(k.startswith("probe_control_") for k in keys) and any(k.endswith("_best") for k in keys)
        assert all(isinstance(probes[key], float) for key in keys)


@pytest.mark.parametrize("label_kind", ["prefix", "next_symbols"])
def test_an_lstm_trains_on_a_task_that_labels_every_prefix(tmp_path, label_kind):
    config = C.apply_overrides(TINY, ["languages=[dyck1]", "seeds=[0]", "model.kind=lstm", "model.causal=true",
                                      f"data.label_kind={label_kind}", "train.steps=4"])
    path = tmp_path / "prefix.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir, _ = run_bench(C.load_grid(path), run_dir=tmp_path / "run", progress=False)
    (row,) = read_run(run_dir)
    assert row["config"]["model"]["kind"] == "lstm" and row["config"]["data"]["label_kind"] == label_kind
    metrics = row["metrics"]
    accuracies = [metrics["acc"]["1"], metrics["acc_long"]["1"], *(b["1"] for b in metrics["acc_bins"].values()),
                  row["log"][-1]["batch_acc"]]
    assert all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in accuracies), accuracies
    assert list(metrics["acc"]) == ["1"]


def report_tables(report, heading):
    """The table lines of the section under `heading` (up to the next heading)."""
    section = report.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_the_report_says_na_where_a_recurrent_model_has_no_attention(mixed_report):
    report = mixed_report
    sweep = report_tables(report, "### Accuracy in distribution at every scale c")
    header = [cell.strip() for cell in sweep[0].strip("|").split("|")]
    assert header[2:] == ["uniform", "c=1", "c=1000", "c=inf"]
    for line in sweep[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        attention = [cells[c] for c in ("uniform", "c=1000", "c=inf")]
        if cells["variant"] in ("lstm", "rnn"):
            assert cells["c=1"] not in ("n/a", "—") and attention == ["n/a"] * 3, line
        else:
            assert "n/a" not in cells.values(), line
    for line in report_tables(report, "### Accuracy by negative kind")[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert (cells[-1] == "n/a") == (cells[1] in ("lstm", "rnn")), line  # the last column is at c=inf
    # A transformer's variants are compared; the sections of attention say why lstm and rnn are not in them.
    assert report_tables(report, "### Soft vs saturated")
    left_out = "The `lstm`, `rnn` cells are left out: the harness measures attention in its own transformer only."
    for heading in ("### Ties at the saturated limit", "## Attention heads under saturation", "## Saturation"):
        assert left_out in report.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0], heading
    assert report.count(left_out) == 4  # and the query and key maps; not the linear probes, which read lstm and rnn


def test_a_run_of_recurrent_models_alone_compares_no_attention_variants(mixed_run, tmp_path):
    run_dir = shutil.copytree(mixed_run, tmp_path / "run")
    rows = (run_dir / "cells.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "cells.jsonl").write_text("".join(line for line in rows if is_recurrent(json.loads(line))))
    report = write_report(run_dir).read_text()
    assert "Soft vs saturated" not in report and "cells are left out:" not in report
    assert "## Recognition" in report and "| lstm " in report and "| rnn " in report


def test_theory_predicts_the_recurrent_kinds_from_each_languages_class():
    from satbench.languages import get_language, language_names

    languages = load_theory()["languages"]
    for name in language_names():
        entry, family = languages[name], get_language(name).family
        assert entry["rnn"] == ("yes" if family == "regular" else "no"), name
        assert entry["lstm"] == {"regular": "yes", "counter": "yes"}.get(family, "open"), name
