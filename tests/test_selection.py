"""Checkpoint selection (eval.select final | validation | best_test, eval.checkpoints) and the validation split
(data.validation_size, data.validation_lengths): where the checkpoints fall, what the split holds, what the config
refuses, and which model a selected row describes."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from satbench.cli import main
from satbench.data import DataConfig, make_dataset
from satbench.harness import config as C
from satbench.harness.results import read_run
from satbench.harness.run import build_dataset
from satbench.harness.selection import CheckpointSelection, checkpoint_steps, regions_at_one
from satbench.models import Ensemble, ModelConfig, saturated_limit
from satbench.models.train import TrainConfig, train_ensemble
from satbench.probes.evaluate import evaluate_ensemble

CPU = torch.device("cpu")

# Two languages x two seeds, trained 30 steps at a constant rate (so that the first k steps of a 30-step run are a
# k-step run, step for step), evaluated at checkpoints 10, 20 and 30.
SMALL = {
    "name": "select",
    "languages": ["majority", "first"],
    "seeds": [0, 1],
    "model": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16},
    "data": {"train_lengths": [1, 6], "test_lengths": [1, 9], "train_size": 100, "test_per_length": 4,
             "validation_size": 40},
    "train": {"steps": 30, "batch_size": 16, "log_every": 10, "lr": 0.03, "schedule": "constant",
              "warmup_steps": 0},
    "eval": {"scales": [1, "inf"], "tie_tolerances": [], "uniform_control": False, "checkpoints": 3,
             "length_bins": [[7, 8], [9, 9]]},
    "probes": {"enabled": True, "strings": 16},
}
CHECKPOINTS = [10, 20, 30]
REGIONS = ("in", "long", "7-8", "9-9")


# ---- where the checkpoints fall ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps, k", [(30, 3), (7800, 25), (100, 7), (10, 10), (1, 1), (3, 1), (999, 4)])
def test_checkpoints_are_k_evenly_spaced_steps_ending_at_the_last(steps, k):
    """k distinct steps in (0, steps], the last one `steps` itself, each within half a step of the end of the j-th
    of k equal stretches of training."""
    got = checkpoint_steps(steps, k)
    assert len(got) == k and got == sorted(set(got))
    assert got[-1] == steps and got[0] >= 1
    for j, step in enumerate(got):
        assert abs(step - steps * (j + 1) / k) <= 0.5


@pytest.mark.parametrize("steps, k", [
    (5, 5),
    (5, 8),
    (30, 100),
])
def test_more_checkpoints_than_steps_give_every_step(steps, k):
    """Asked for more checkpoints than there are steps, every step is one, the last included: at most `steps`
    checkpoints, still ending at the last step."""
    assert checkpoint_steps(steps, k) == list(range(1, steps + 1))


# ---- the validation split ----------------------------------------------------------------------------------------

DATA = dict(train_lengths=(1, 6), test_lengths=(1, 9), train_size=120, test_per_length=6, vocab_size=8)


def splits_equal(a, b):
    return (torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels) and torch.equal(a.lengths, b.lengths)
            and a.strings == b.strings and a.kinds == b.kinds)


@pytest.mark.parametrize("language", ["majority", "dyck1"])
def test_a_validation_split_leaves_the_training_split_and_keeps_out_of_the_test_split(language):
    """With data.validation_size the training split is the one built without it, byte for byte; the test split holds
    neither training nor validation strings; the validation split has the size asked for, at the training lengths,
    and is recorded in the metadata."""
    plain = make_dataset(language, seed=3, **DATA)
    with_validation = make_dataset(language, seed=3, validation_size=50, **DATA)
    assert plain.validation is None
    assert splits_equal(plain.train, with_validation.train)
    validation = with_validation.validation
    assert len(validation) == 50 and len(validation.labels) == 50
    assert not set(with_validation.test.strings) & set(validation.strings)
    assert not set(with_validation.test.strings) & set(with_validation.train.strings)
    assert len(with_validation.test) > 0
    assert all(1 <= len(s) <= 6 for s in validation.strings)
    assert validation.lengths.tolist() == [len(s) for s in validation.strings]
    assert {0.0, 1.0} == set(validation.labels.tolist())
    assert validation.labels.sum().item() == 25  # balanced like the training split
    meta = with_validation.meta
    assert meta["validation_size"] == 50 and meta["validation_lengths"] == [1, 6]
    assert meta["strings"]["validation"] == 50


def test_validation_lengths_set_where_the_validation_strings_are():
    """data.validation_lengths puts every validation string in its range, also beyond the training lengths."""
    dataset = make_dataset("majority", seed=1, validation_size=60, validation_lengths=(5, 9), **DATA)
    lengths = {len(s) for s in dataset.validation.strings}
    assert lengths <= set(range(5, 10)) and max(lengths) > 6
    assert dataset.validation.tokens.shape[1] == 1 + max(lengths)
    assert not set(dataset.test.strings) & set(dataset.validation.strings)


def test_a_validation_split_is_a_function_of_the_seed():
    """The same seed gives the same bytes; another seed other strings."""
    a = make_dataset("majority", seed=5, validation_size=40, **DATA)
    b = make_dataset("majority", seed=5, validation_size=40, **DATA)
    c = make_dataset("majority", seed=6, validation_size=40, **DATA)
    assert splits_equal(a.validation, b.validation) and splits_equal(a.test, b.test)
    assert a.validation.strings != c.validation.strings


@pytest.mark.parametrize("field, value", [("validation_size", 1), ("validation_size", -5), ("validation_size", True),
                                          ("validation_lengths", (1, 50)), ("validation_lengths", (5, 2))])
def test_bad_validation_fields_name_themselves(field, value):
    """A validation split of one string, a negative or boolean size, or lengths outside 0..longest test length are
    refused, naming data.<field>."""
    with pytest.raises(ValueError, match=rf"data\.{field}"):
        DataConfig(test_lengths=(1, 40), **{field: value})


# ---- what the config refuses -------------------------------------------------------------------------------------


def small(**sections):
    raw = copy.deepcopy(SMALL)
    for section, values in sections.items():
        raw[section].update(values)
    return raw


@pytest.mark.parametrize("overrides, message", [
    (["eval.select=validation", "data.validation_size=0"], "eval.select"),
    (["eval.select=best"], "eval.select: 'best' is not one of final, validation, best_test"),
    (["eval.select=[final, lowest]"], "eval.select"),
    (["eval.checkpoints=0"], "eval.checkpoints"),
    (["eval.checkpoints=-3"], "eval.checkpoints"),
    (["eval.checkpoints=2.5"], "eval.checkpoints"),
    (["eval.checkpoints=true"], "eval.checkpoints"),
    (["data.validation_size=1"], "data.validation_size"),
    (["data.validation_lengths=[0, 12]"], "data.validation_lengths"),
    (["data.validation_size=0", "data.validation_lengths=[1, 4]"], "data.validation_lengths: given without"),
])
def test_bad_selection_settings_are_refused_by_the_config(overrides, message):
    """eval.select validation without a validation split, an unknown rule, fewer than one checkpoint or a checkpoint
    count that is not an integer: a ConfigError that names the key, raised before anything runs."""
    with pytest.raises(C.ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        C.expand(C.apply_overrides(SMALL, overrides))


def test_every_rule_and_a_validation_split_expand(tmp_path):
    """The three rules expand, validation with a validation split, through load_grid like the bench's."""
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    cells = C.load_grid(path, ["eval.select=[final, validation, best_test]", "eval.checkpoints=5"]).cells
    assert {c.eval.select for c in cells} == {"final", "validation", "best_test"}
    assert {c.eval.checkpoints for c in cells} == {5}
    assert {c.data.validation_size for c in cells} == {40}


# ---- end to end: which model a selected row describes -----------------------------------------------------------


def bench(tmp_path, raw, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / name), "--quiet", "--no-report"]) == 0
    return read_run(tmp_path / name)


def key(row):
    return row["config"]["language"], row["config"]["seed"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same grid trained 10, 20 and 30 steps with select final, and 30 steps with best_test and with validation:
    {rule: {(language, seed[, steps]): row}}."""
    tmp_path = tmp_path_factory.mktemp("selection")
    out = {}
    rows = bench(tmp_path, small(train={"steps": CHECKPOINTS}), "final")
    out["final"] = {(*key(r), r["config"]["train"]["steps"]): r for r in rows}
    for rule in ("best_test", "validation"):
        out[rule] = {key(r): r for r in bench(tmp_path, small(eval={"select": rule}), rule)}
    return out


def region(metrics, name):
    """A region's accuracy at c = 1 in a row's metrics."""
    if name == "in":
        return metrics["acc"]["1"]
    if name == "long":
        return metrics["acc_long"]["1"]
    return metrics["acc_bins"][name]["1"]


def test_best_test_reads_each_regions_best_accuracy_over_the_checkpoints(runs):
    """With select best_test, each region's accuracy at c = 1 is the best of the models after 10, 20 and 30 steps
    (each trained on its own with select final), at the earliest step that reaches it unless the final model does;
    never below the final model's, which the row records beside it; recognized at c = 1 follows the threshold."""
    earlier = 0
    for (language, seed), row in runs["best_test"].items():
        metrics = row["metrics"]
        selection = metrics["selection"]
        assert selection["rule"] == "best_test" and selection["checkpoints"] == CHECKPOINTS
        final = runs["final"][(language, seed, 30)]["metrics"]
        assert selection["final"] == regions_at_one(final)
        for name in REGIONS:
            at = {step: region(runs["final"][(language, seed, step)]["metrics"], name) for step in CHECKPOINTS}
            best = max(at.values())
            expected_step = 30 if at[30] >= best else min(s for s in CHECKPOINTS if at[s] == best)
            assert region(metrics, name) == best, (language, seed, name)
            assert region(metrics, name) >= selection["final"][name]
            assert selection["step"][name] == expected_step in CHECKPOINTS
            earlier += expected_step < 30
        assert metrics["recognized"]["1"] == (metrics["acc"]["1"] >= row["config"]["eval"]["threshold"])
    assert earlier > 0, "the grid must have a region whose best checkpoint is not the final model"


def test_best_test_leaves_every_other_number_to_the_final_model(runs):
    """Other scales, per-length accuracies, cross-entropies and the probes of a best_test row are those of the final
    model: the checkpoints' evaluations do not disturb training."""
    for (language, seed), row in runs["best_test"].items():
        final = runs["final"][(language, seed, 30)]
        for field in ("acc_by_length", "ce", "probes"):
            assert row["metrics"][field] == final["metrics"][field], field
        assert row["metrics"]["acc"]["inf"] == final["metrics"]["acc"]["inf"]
        assert row["log"] == final["log"]


def test_validation_evaluates_the_chosen_checkpoint(runs):
    """With select validation the chosen step is a checkpoint, and the row's recognition metrics are those of the same
    cell trained exactly that many steps (select final, same data); the row records the final model's accuracies at
    c = 1 as the 30-step run measured them."""
    chose_earlier = 0
    for (language, seed), row in runs["validation"].items():
        selection = row["metrics"]["selection"]
        assert selection["rule"] == "validation" and selection["checkpoints"] == CHECKPOINTS
        step = selection["step"]
        assert step in CHECKPOINTS
        chose_earlier += step < 30
        chosen = runs["final"][(language, seed, step)]["metrics"]
        for field in ("acc", "acc_long", "acc_bins", "ce", "acc_by_length", "recognized", "counts"):
            assert row["metrics"][field] == chosen[field], (language, seed, field)
        assert selection["final"] == regions_at_one(runs["final"][(language, seed, 30)]["metrics"])
        assert 0 <= selection["validation_acc"] <= 1 and selection["validation_ce"] >= 0
        # The log ends at the chosen step; up to there it is the 30-step run's, besides the checkpoints it also logs.
        assert row["log"][-1]["step"] == step
        full = {entry["step"]: entry for entry in runs["final"][(language, seed, 30)]["log"]}
        for entry in row["log"]:
            if entry["step"] in full:
                assert entry == full[entry["step"]], (language, seed, entry["step"])
    assert chose_earlier > 0, "the grid must have a member whose best checkpoint is not the last step"


def test_validation_probes_describe_the_chosen_checkpoint(runs):
    """selection.py: the chosen checkpoint 'replaces the final parameters before evaluation, so every metric and probe
    describes that model': the saturation probe's numbers of a validation row are those of the chosen-step run."""
    compared = 0
    for (language, seed), row in runs["validation"].items():
        step = row["metrics"]["selection"]["step"]
        if step == 30:
            continue
        chosen = runs["final"][(language, seed, step)]["metrics"]["probes"]
        for field in ("decision_kappa", "tv_limit", "sim_mean", "balanced_acc_probe"):
            assert row["metrics"]["probes"][field] == chosen[field], (language, seed, field)
            compared += 1
    assert compared


# ---- validation: the lowest cross-entropy on the validation split -----------------------------------------------


def validation_cells():
    raw = small(eval={"select": "validation"}, probes={"enabled": False})
    raw["seeds"] = [0]
    return C.expand(raw).cells


def test_validation_keeps_the_checkpoint_with_the_lowest_validation_cross_entropy():
    """At each checkpoint every member's mean recognition cross-entropy on its validation split is computed here
    independently (each member alone, by torch's BCE); after training each member holds, bit for bit, its parameters
    at the checkpoint with the lowest one, whose cross-entropy, validation accuracy and step the record gives."""
    cells = validation_cells()
    first = cells[0]
    datasets = [build_dataset(cell, {}) for cell in cells]
    selection = CheckpointSelection(cells, datasets, CPU)
    assert selection.steps == CHECKPOINTS
    seen = {}

    def on_checkpoint(step, ensemble):
        assert not ensemble.training
        ces, accs, states = [], [], []
        with torch.no_grad():
            for i, dataset in enumerate(datasets):
                logit = ensemble.member(i)(dataset.validation.tokens)["logit"]
                ces.append(F.binary_cross_entropy_with_logits(logit, dataset.validation.labels).item())
                accs.append(((logit > 0).float() == dataset.validation.labels).float().mean().item())
                states.append(ensemble.member_state_dict(i))
        seen[step] = (ces, accs, states)
        selection(step, ensemble)

    ensemble, _ = train_ensemble(first.model, first.train, [c.seed for c in cells], [d.train for d in datasets], CPU,
                                 progress=False, checkpoints=selection.steps, on_checkpoint=on_checkpoint)
    assert sorted(seen) == CHECKPOINTS
    final_states = [ensemble.member_state_dict(i) for i in range(len(cells))]
    final_metrics = evaluate_ensemble(ensemble, [d.test for d in datasets], first.data, selection.at_one, CPU)
    selection.finish(ensemble)
    metrics = evaluate_ensemble(ensemble, [d.test for d in datasets], first.data, first.eval, CPU)
    selection.record(metrics, first.train.steps)
    restored_earlier = 0
    for i in range(len(cells)):
        ces = [seen[step][0][i] for step in CHECKPOINTS]
        best = CHECKPOINTS[int(np.argmin(ces))]
        record = metrics[i]["selection"]
        assert record["step"] == best
        assert record["validation_ce"] == pytest.approx(min(ces), rel=1e-5)
        assert record["validation_acc"] == pytest.approx(seen[best][1][i], abs=1e-6)
        assert record["final"] == regions_at_one(final_metrics[i])
        state = ensemble.member_state_dict(i)
        assert all(torch.equal(state[name], value) for name, value in seen[best][2][i].items())
        if best != 30:
            restored_earlier += 1
            assert not all(torch.equal(state[name], value) for name, value in final_states[i].items())
    assert restored_earlier > 0, "the grid must have a member whose best checkpoint is not the last step"


def test_a_tie_in_validation_cross_entropy_keeps_the_earlier_checkpoint():
    """The same parameters offered at two checkpoints tie: the earlier step is kept."""
    cells = validation_cells()
    datasets = [build_dataset(cell, {}) for cell in cells]
    selection = CheckpointSelection(cells, datasets, CPU)
    ensemble = Ensemble(cells[0].model, [c.seed for c in cells]).eval()
    for step in CHECKPOINTS:
        selection(step, ensemble)
    assert selection.best_step == [10] * len(cells)
    assert all(math.isfinite(loss) for loss in selection.best_loss)


def test_validation_without_a_validation_split_is_refused_by_the_selection():
    """Cells that ask for validation with datasets that have no validation split: a ValueError naming eval.select."""
    cells = validation_cells()
    datasets = [make_dataset(c.language, seed=c.seed, vocab_size=c.vocab_size, train_lengths=(1, 6),
                             test_lengths=(1, 9), train_size=40, test_per_length=2) for c in cells]
    with pytest.raises(ValueError, match=r"eval\.select"):
        CheckpointSelection(cells, datasets, CPU)


def test_a_checkpoint_is_judged_with_the_attention_it_will_be_evaluated_with():
    """train_ensemble hands every checkpoint over 'as it will be evaluated (exact attention, ties at model.tol)': for a
    saturated model trained with soft_steps, its logits at each checkpoint equal those at the exact saturated limit,
    also at checkpoints within the soft phase."""
    model = ModelConfig(vocab_size=8, d_model=8, n_heads=2, n_layers=1, d_ff=16, attention="saturated")
    train = TrainConfig(steps=30, batch_size=8, lr=0.01, log_every=10, soft_steps=20)
    data = make_dataset("majority", train_lengths=(1, 6), test_lengths=(1, 6), train_size=64, test_per_length=2,
                        seed=0, vocab_size=8).train
    exact_at = {}

    @torch.no_grad()
    def on_checkpoint(step, ensemble):
        as_handed = ensemble(data.tokens, logit_only=True)["logit"]
        with saturated_limit(ensemble):
            exact = ensemble(data.tokens, logit_only=True)["logit"]
        exact_at[step] = torch.equal(as_handed, exact)

    train_ensemble(model, train, [0], [data], CPU, progress=False, checkpoints=CHECKPOINTS, on_checkpoint=on_checkpoint)
    assert exact_at == dict.fromkeys(CHECKPOINTS, True)

