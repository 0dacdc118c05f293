"""The recurrent baselines (model.kind lstm, rnn): a stacked member computes what torch's nn.LSTM / nn.RNN with its
weights computes, they train and report through the same harness, and what needs attention says n/a."""

import json

import pytest
import torch
import yaml

from satbench.harness import config as C
from satbench.harness.run import run_bench
from satbench.models import Ensemble, ModelConfig
from satbench.models.io import load, save
from satbench.report.common import load_theory
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


def test_the_baselines_bench_and_report_with_na_for_attention(tmp_path):
    path = tmp_path / "kinds.yaml"
    path.write_text(yaml.safe_dump(TINY))
    run_dir, _ = run_bench(C.load_grid(path), run_dir=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]
    recurrent = [r for r in rows if r["config"]["model"].get("kind") in ("lstm", "rnn")]
    assert len(recurrent) == 8
    for row in recurrent:
        assert list(row["metrics"]["acc"]) == ["1"]  # no sweep, limit or uniform control
        assert row["metrics"]["tie_tolerance_acc"] == {}
        probes = row["metrics"]["probes"]
        assert "norm_initial" in probes and not any(k.startswith(("split_share", "positions", "tv_limit"))
                                                    for k in probes)
    report = write_report(run_dir).read_text()
    lstm_line = next(line for line in report.splitlines() if line.startswith("| majority") and "| lstm " in line)
    assert "n/a" in lstm_line and "| yes " in lstm_line  # an LSTM can count: theory says yes
    rnn_line = next(line for line in report.splitlines() if line.startswith("| majority") and "| rnn " in line)
    assert "| no " in rnn_line


def test_theory_predicts_the_recurrent_kinds_from_each_languages_class():
    from satbench.languages import get_language, language_names

    languages = load_theory()["languages"]
    for name in language_names():
        entry, family = languages[name], get_language(name).family
        assert entry["rnn"] == ("yes" if family == "regular" else "no"), name
        assert entry["lstm"] == {"regular": "yes", "counter": "yes"}.get(family, "open"), name
