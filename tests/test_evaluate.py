"""Recognition metrics of a stacked ensemble: rows laid out by length, chunks cut to their longest string, and the
numbers each member would get on its own."""

import math

import pytest
import torch

from satbench.data import DataConfig, make_dataset
from satbench.models import Ensemble, ModelConfig, saturated_limit, uniform_attention
from satbench.probes.evaluate import EvalConfig, align_by_length, at_scale, evaluate_ensemble

MODEL = ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=2, d_ff=32)


@pytest.mark.parametrize("seed", range(5))
def test_align_by_length_places_every_row_once_with_one_length_per_slot(seed):
    generator = torch.Generator().manual_seed(seed)
    members, rows = 4, 30
    lengths = torch.randint(0, 9, (members, rows), generator=generator)
    lengths[1, 20:] = -1  # a member with fewer strings: its last rows are padding
    lengths[2, :] = 3  # a member whose strings all have one length
    index = align_by_length(lengths)
    slot_length = torch.full((index.shape[1],), -1)
    for m in range(members):
        placed = index[m][index[m] >= 0]
        real = torch.nonzero(lengths[m] >= 0).squeeze(1)
        assert sorted(placed.tolist()) == real.tolist()  # each real row exactly once, padding rows never
        n = lengths[m, placed]
        assert bool((n[1:] >= n[:-1]).all())  # ordered by length
        slots = torch.nonzero(index[m] >= 0).squeeze(1)
        known = slot_length[slots] >= 0
        assert torch.equal(slot_length[slots][known], n[known])  # a slot holds one length in every member
        slot_length[slots] = n
    # No more slots than the longest column of the per-length counts needs.
    counts = torch.stack([torch.bincount(r[r >= 0], minlength=9) for r in lengths])
    assert index.shape[1] == int(counts.max(dim=0).values.sum())


def test_ensemble_metrics_equal_each_member_evaluated_alone():
    languages, seeds = ["majority", "dyck1", "anbn"], [0, 1, 2]
    tests = [make_dataset(lang, train_lengths=(1, 6), test_lengths=(1, 12), train_size=64, test_per_length=5,
                          seed=seed, vocab_size=8).test for lang, seed in zip(languages, seeds)]
    ensemble = Ensemble(MODEL, seeds)
    eval_cfg = EvalConfig(scales=[1.0, 4.0, math.inf], batch_size=7,  # many chunks, some cut short
                          tie_tolerances=[1e-5, 0.3], length_bins=[[7, 9], [10, 12]])
    data_cfg = DataConfig(train_lengths=(1, 6), test_lengths=(1, 12))
    metrics = evaluate_ensemble(ensemble, tests, data_cfg, eval_cfg, torch.device("cpu"))
    for i, split in enumerate(tests):
        model = ensemble.member(i).eval()
        assert list(metrics[i]["acc"]) == ["uniform", "1", "4", "inf"]  # the control first: the c -> 0 end
        for c in ["uniform", *eval_cfg.scales]:
            with torch.no_grad(), uniform_attention(model) if c == "uniform" else at_scale(model, c):
                logits = model(split.tokens)["logit"]
            correct = ((logits > 0).float() == split.labels).float()
            name = c if c == "uniform" else "inf" if math.isinf(c) else f"{c:g}"
            for n, acc in metrics[i]["acc_by_length"][name].items():
                assert acc == pytest.approx(float(correct[split.lengths == n].mean()), abs=1e-6)
            assert set(metrics[i]["acc_by_length"][name]) == set(split.lengths.unique().tolist())

    # Length generalization per bin, and the tolerance sweep at the limit, from the same member alone.
    for i, split in enumerate(tests):
        model = ensemble.member(i).eval()
        for tol in (1e-5, 0.3):
            with torch.no_grad(), saturated_limit(model, tol=tol):
                correct = ((model(split.tokens)["logit"] > 0).float() == split.labels).float()
            for lo, hi in ((7, 9), (10, 12)):
                where = (split.lengths >= lo) & (split.lengths <= hi)
                assert metrics[i]["tie_tolerance_acc"][f"{tol:g}"][f"{lo}-{hi}"] == pytest.approx(
                    float(correct[where].mean()), abs=1e-6)
        by_length = metrics[i]["acc_by_length"]["inf"]
        counts = {n: int((split.lengths == n).sum()) for n in range(10, 13) if (split.lengths == n).any()}
        expected = sum(by_length[n] * counts[n] for n in counts) / sum(counts.values())
        assert metrics[i]["acc_bins"]["10-12"]["inf"] == pytest.approx(expected, abs=1e-6)
    # The default tolerance of the sweep is the model's own: the same numbers as the inf column.
    assert metrics[0]["tie_tolerance_acc"]["1e-05"]["7-9"] == pytest.approx(metrics[0]["acc_bins"]["7-9"]["inf"])
    assert all(set(m["acc_bins"]["7-9"]) == set(m["acc"]) == set(m["ce"]) for m in metrics)  # every scale everywhere
    assert any(m["acc_by_length"]["uniform"] != m["acc_by_length"]["1"] for m in metrics)  # a control, not c = 1


def test_the_uniform_control_can_be_left_out():
    test = make_dataset("majority", train_lengths=(1, 4), test_lengths=(1, 6), train_size=32, test_per_length=3,
                        seed=0, vocab_size=8).test
    eval_cfg = EvalConfig(scales=[1.0, math.inf], tie_tolerances=[], uniform_control=False)
    metrics = evaluate_ensemble(Ensemble(MODEL, [0]), [test], DataConfig(train_lengths=(1, 4), test_lengths=(1, 6)),
                                eval_cfg, torch.device("cpu"))
    assert list(metrics[0]["acc"]) == ["1", "inf"]
    with pytest.raises(ValueError, match=r"^eval\.uniform_control"):
        EvalConfig(uniform_control="yes")


def test_eval_config_rejects_bad_bins_and_tolerances():
    with pytest.raises(ValueError, match=r"^eval\.length_bins"):
        EvalConfig(length_bins=[[30, 20]])
    with pytest.raises(ValueError, match=r"^eval\.tie_tolerances"):
        EvalConfig(tie_tolerances=[-1.0])
    assert EvalConfig().bins((1, 20), (1, 40)) == [(21, 40)]
    assert EvalConfig().bins((1, 20), (1, 20)) == []


def test_accuracy_by_kind_follows_each_string_and_adds_up_to_the_accuracy():
    """The kinds are gathered with the rows: each kind's accuracy is the member's own on the strings of that kind, the
    kinds weighted by their counts give the accuracy in distribution (and the negatives alone the non-members'), and
    the counts per class are those of the split."""
    splits = [make_dataset(lang, train_lengths=(1, 8), test_lengths=(1, 12), train_size=48, test_per_length=8,
                           seed=seed, vocab_size=8).test for lang, seed in (("majority", 0), ("dyck1", 1))]
    ensemble = Ensemble(ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32), [0, 1])
    eval_cfg = EvalConfig(scales=[1.0, math.inf], tie_tolerances=[], length_bins=[[9, 12]], batch_size=5)
    metrics = evaluate_ensemble(ensemble, splits, DataConfig(train_lengths=(1, 8), test_lengths=(1, 12)), eval_cfg,
                                torch.device("cpu"))
    for i, split in enumerate(splits):
        m, model = metrics[i], ensemble.member(i).eval()
        inside = (split.lengths <= 8).tolist()
        kinds = [kind for kind, keep in zip(split.kinds, inside, strict=True) if keep]
        assert m["kind_counts"] == {kind: kinds.count(kind) for kind in m["kind_counts"]}
        assert sum(m["kind_counts"].values()) == len(kinds) and "member" in m["kind_counts"]
        members = split.labels == 1
        for region, where in (("in", split.lengths <= 8), ("9-12", split.lengths >= 9)):
            assert m["counts"][region] == {"member": int((where & members).sum()),
                                           "non-member": int((where & ~members).sum())}
        with torch.no_grad():
            correct = ((model(split.tokens)["logit"] > 0).float() == split.labels).tolist()
        for kind, acc in m["acc_by_kind"]["1"].items():
            own = [c for c, k, keep in zip(correct, split.kinds, inside, strict=True) if keep and k == kind]
            assert acc == pytest.approx(sum(own) / len(own), abs=1e-6)
        counts = m["kind_counts"]
        for name in ("1", "inf"):
            weighted = sum(m["acc_by_kind"][name][k] * counts[k] for k in counts) / sum(counts.values())
            assert weighted == pytest.approx(m["acc"][name], abs=1e-6)
        negatives = [k for k in counts if k != "member"]
        weighted = sum(m["acc_by_kind"]["1"][k] * counts[k] for k in negatives) / sum(counts[k] for k in negatives)
        own = [c for c, label, keep in zip(correct, split.labels.tolist(), inside, strict=True) if keep and label == 0]
        assert weighted == pytest.approx(sum(own) / len(own), abs=1e-6)  # the non-members' accuracy


def test_rows_without_kinds_get_no_accuracy_by_kind():
    test = make_dataset("majority", train_lengths=(1, 4), test_lengths=(1, 6), train_size=32, test_per_length=3,
                        seed=0, vocab_size=8).test
    test.kinds = None  # a split built by other means
    metrics = evaluate_ensemble(Ensemble(MODEL, [0]), [test], DataConfig(train_lengths=(1, 4), test_lengths=(1, 6)),
                                EvalConfig(scales=[1.0], tie_tolerances=[]), torch.device("cpu"))
    assert "acc_by_kind" not in metrics[0] and "counts" not in metrics[0] and metrics[0]["acc"]["1"] >= 0
