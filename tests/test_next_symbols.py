"""The next-symbol task (data.label_kind: next_symbols): targets, head, loss, the all-prefixes metric, the bench."""

import itertools

import pytest
import torch
import yaml

from satbench.cli import main
from satbench.data import make_dataset
from satbench.harness import config as C
from satbench.harness.results import read_run
from satbench.languages import EOS, FIRST_SYMBOL, get_language
from satbench.models import Recognizer
from satbench.models.objectives import judge_strings, member_losses
from satbench.models.recognizer import ModelConfig


def brute_force_next(lang, prefix, horizon=8):
    """Symbols c such that prefix + c + w is a member for some w of length < horizon (enough for small DFAs)."""
    return "".join(c for c in lang.alphabet
                   if any(lang.accepts(prefix + c + "".join(w))
                          for k in range(horizon) for w in itertools.product(lang.alphabet, repeat=k)))


@pytest.mark.parametrize("name", ["tomita2", "tomita4", "ab_star", "first"])
def test_dfa_next_symbols_match_brute_force(name):
    lang = get_language(name)
    for n in range(6):
        for s in map("".join, itertools.product(lang.alphabet, repeat=n)):
            assert lang.next_symbols(s) == [brute_force_next(lang, s[:i]) for i in range(n + 1)], s


def test_targets_are_the_next_symbol_sets_of_members_only():
    lang = get_language("tomita4")
    data = make_dataset("tomita4", train_lengths=(1, 8), test_lengths=(1, 12), train_size=60, test_per_length=4,
                        label_kind="next_symbols", vocab_size=7)
    assert bool((data.train.labels == 1).all()) and bool((data.test.labels == 1).all())
    assert data.baselines == {}
    targets = data.train.next_labels
    assert targets.shape == (60, 9, 7)
    for row, s in enumerate(data.train.strings):
        follow, ends = lang.next_symbols(s), lang.prefix_accepts(s)
        for i in range(len(s) + 1):
            want = {FIRST_SYMBOL + lang.alphabet.index(c) for c in follow[i]} | ({EOS} if ends[i] else set())
            assert {j for j in range(7) if targets[row, i, j] == 1} == want
            # scored: EOS and the language's two symbols; PAD, BOS and the unused id 5 and 6 are not
            assert {j for j in range(7) if targets[row, i, j] >= 0} == {EOS, FIRST_SYMBOL, FIRST_SYMBOL + 1}
        assert bool((targets[row, len(s) + 1:] == -1).all())


def test_a_language_without_next_symbols_is_refused_in_one_line(no_next_symbols):
    with pytest.raises(ValueError, match="does not define next_symbols"):
        make_dataset(no_next_symbols, label_kind="next_symbols")
    config = {"name": "opaque", "languages": [no_next_symbols], "data": {"label_kind": "next_symbols"}}
    with pytest.raises(C.ConfigError, match=f"'{no_next_symbols}' does not"):
        C.expand(config)


def test_the_head_scores_every_id_and_its_eos_column_is_the_membership_logit():
    torch.manual_seed(0)
    model = Recognizer(ModelConfig(vocab_size=6, d_model=8, n_heads=2, n_layers=1, d_ff=16, next_symbols=True)).eval()
    tokens = torch.tensor([[1, 3, 4, 3, 0, 0], [1, 4, 4, 3, 4, 3]])
    out = model(tokens)
    assert out["next_logits"].shape == (2, 6, 6)
    assert torch.equal(out["prefix_logits"], out["next_logits"][..., EOS])
    assert torch.equal(out["logit"], out["next_logits"][[0, 1], [3, 5], EOS])
    assert bool((out["next_logits"][0, 4:] == 0).all())  # PAD positions


def test_a_string_is_right_only_if_every_scored_bit_of_every_prefix_is():
    targets = torch.full((1, 3, 2, 4), -1.0)
    targets[0, :, :, 2:] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.where(targets > 0.5, 5.0, -5.0)  # right everywhere, and sure of it
    logits[0, 1, 1, 2] = 5.0  # string 1: one bit wrong
    logits[0, 2, 0, 0] = 5.0  # string 2: a wrong bit on an unscored id changes nothing
    right, ce, finite = judge_strings({"next_logits": logits}, None, targets)
    assert right.tolist() == [[True, False, True]]
    assert ce[0, 1] > ce[0, 0] and bool(finite.all())
    logits[0, 2, 1, 2] = float("nan")
    right, _, finite = judge_strings({"next_logits": logits}, None, targets)
    assert right.tolist() == [[True, False, False]] and finite.tolist() == [[True, True, False]]
    losses = member_losses({"next_logits": logits.nan_to_num(0.0)}, None, next_labels=targets)
    assert losses.shape == (1,) and bool(torch.isfinite(losses).all())


def test_a_tiny_bench_learns_the_next_symbol_task(tmp_path):
    config = {
        "name": "next_symbols_tiny",
        "languages": ["tomita2", "tomita4"],
        "seeds": [0],
        "data": {"label_kind": "next_symbols", "train_lengths": [1, 10], "test_lengths": [1, 16], "train_size": 200,
                 "test_per_length": 4},
        "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "attention": ["soft", "saturated"]},
        "train": {"steps": 150, "batch_size": 16, "lr": 0.01},
        "eval": {"scales": [1, "inf"]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = {(r["config"]["language"], r["config"]["model"]["attention"]): r for r in read_run(tmp_path / "run")}
    assert len(rows) == 4
    # (10)* needs one bit of state, which a one-layer model finds in 150 steps; every prefix must be right
    assert rows["tomita2", "soft"]["metrics"]["acc"]["1"] == 1.0
    for row in rows.values():
        assert 0.0 <= row["metrics"]["acc"]["inf"] <= 1.0
        assert 0.0 <= row["log"][-1]["batch_acc"] <= 1.0
    assert "task: **next symbols**" in (tmp_path / "run" / "report.md").read_text()


def test_a_bidirectional_model_is_refused_for_a_task_that_labels_every_prefix():
    config = {"name": "peek", "languages": ["tomita2"], "model": {"causal": False},
              "data": {"label_kind": "next_symbols"}}
    with pytest.raises(C.ConfigError, match="model.causal: data.label_kind next_symbols labels every prefix"):
        C.expand(config)
    config["data"]["label_kind"] = "membership"
    assert len(C.expand(config).cells) == 1
