"""Random-restart learning rates (train.lr: {loguniform: [lo, hi]}): one rate per seed, drawn the same on every
language, checked by name, and each member of a stacked ensemble stepping at its own rate as it would alone."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import yaml

from satbench.cli import main
from satbench.data import make_dataset
from satbench.harness import config as C
from satbench.harness.results import read_run
from satbench.models import Ensemble, ModelConfig
from satbench.models.train import TrainConfig, Trainer, train_ensemble

RANGE = {"loguniform": [1e-3, 1e-1]}
MODEL = ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32)
CPU = torch.device("cpu")


def split(language, seed):
    return make_dataset(language, train_lengths=(1, 6), test_lengths=(1, 6), train_size=64, test_per_length=2,
                        seed=seed, vocab_size=8).train


def test_a_drawn_rate_lies_in_its_range_and_is_fixed_by_the_seed():
    """Each seed's rate lies in [lo, hi], is the same every time it is asked for (also from a new config), and no two
    of many seeds draw the same rate."""
    lo, hi = 1e-4, 1e-2
    cfg = TrainConfig(lr={"loguniform": [lo, hi]})
    seeds = range(200)
    rates = [cfg.learning_rate(s) for s in seeds]
    assert all(lo <= r <= hi for r in rates)
    assert rates == [TrainConfig(lr={"loguniform": [lo, hi]}).learning_rate(s) for s in seeds]
    assert len(set(rates)) == len(rates)
    assert cfg.random_lr


def test_the_draws_are_spread_log_uniformly():
    """Log-uniform: about half of the draws fall below the geometric mean of the bounds, and each decade of a
    two-decade range holds about half of them (200 fixed seeds, so the counts are fixed too)."""
    lo, hi = 1e-4, 1e-2
    cfg = TrainConfig(lr={"loguniform": [lo, hi]})
    logs = np.log([cfg.learning_rate(s) for s in range(200)])
    below_middle = np.mean(logs < (math.log(lo) + math.log(hi)) / 2)
    assert 0.4 < below_middle < 0.6
    # Uniform in log: the deciles of log(rate) sit near those of the uniform distribution on [log lo, log hi].
    quantiles = (np.quantile(logs, np.linspace(0.1, 0.9, 9)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    np.testing.assert_allclose(quantiles, np.linspace(0.1, 0.9, 9), atol=0.1)


def test_a_fixed_rate_is_every_seeds_rate():
    """A number is no random restart: every seed trains at it."""
    cfg = TrainConfig(lr=0.02)
    assert not cfg.random_lr
    assert {cfg.learning_rate(s) for s in range(5)} == {0.02}


def test_restart_k_has_the_same_rate_on_every_language_of_a_grid(tiny_config):
    """The cells of one seed draw one rate whatever their language; different seeds draw different rates; the cells
    of all seeds and languages still train as one stacked ensemble."""
    raw = C.apply_overrides(tiny_config, ["languages=[first, majority, parity]", "seeds=[0, 1, 2]",
                                          "model.attention=soft", f"train.lr={RANGE}"])
    cells = C.expand(raw).cells
    by_seed = {}
    for cell in cells:
        by_seed.setdefault(cell.seed, set()).add(cell.train.learning_rate(cell.seed))
    assert all(len(rates) == 1 for rates in by_seed.values())
    assert len({rates.pop() for rates in by_seed.values()}) == 3
    assert len({C.group_key(c) for c in cells}) == 1


@pytest.mark.parametrize("lr", [
    {"loguniform": [0.01, 0.001]},  # lo > hi
    {"loguniform": [0.01, 0.01]},  # lo == hi
    {"uniform": [0.001, 0.01]},
    {"loguniform": [0.0, 0.01]},
    {"loguniform": [-0.01, 0.01]},
    {"loguniform": [0.001]},
    {"loguniform": [0.001, math.inf]},
    {"loguniform": [0.001, "0.01"]},
    {"loguniform": [0.001, 0.01], "seed": 3},
    -0.001,
    0,
    math.inf,
    "fast",
    True,
])
def test_a_bad_rate_is_refused_by_name(lr):
    """Anything but a positive finite number or {loguniform: [lo, hi]} with 0 < lo < hi raises a ValueError that
    names train.lr."""
    with pytest.raises(ValueError, match=r"train\.lr"):
        TrainConfig(lr=lr)


@pytest.mark.parametrize("lr", [{"loguniform": [0.01, 0.001]}, {"uniform": [0.001, 0.01]}, -0.001, "fast"])
def test_a_bad_rate_in_a_bench_config_is_one_line_and_exit_2(tmp_path, capsys, tiny_config, lr):
    """`satbench bench cfg.yaml` with a bad train.lr exits 2 with one line naming train.lr, and writes nothing."""
    tiny_config["train"]["lr"] = lr
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    code = main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "train.lr" in err
    assert not (tmp_path / "run").exists()


def assert_same_parameters(got, expected, optimizer):
    for name, value in expected.items():
        mine = got[name]
        if name.endswith("attn.qkv.bias") and optimizer in ("adam", "adamw"):
            # The key bias adds the same score to every key of a query: its true gradient is 0 and Adam divides the
            # rounding noise by its own tiny scale (tests/test_train.py). Compare the query and value slices.
            d = MODEL.d_model
            mine, value = torch.cat([mine[:d], mine[2 * d:]]), torch.cat([value[:d], value[2 * d:]])
        torch.testing.assert_close(mine, value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("optimizer, schedule, warmup", [("adamw", "constant", 0), ("adam", "constant", 0),
                                                         ("rmsprop", "constant", 0), ("sgd", "constant", 0),
                                                         ("adamw", "cosine", 1), ("sgd", "linear", 1)])
def test_each_member_steps_at_its_own_rate_as_it_would_alone(optimizer, schedule, warmup):
    """A stacked ensemble whose members drew different rates (and have their own weight decay) gives each member,
    after two steps, the parameters of a one-member ensemble trained on its data at its rate alone, under warm-up and
    a schedule too; at the other member's rate it would not."""
    train = TrainConfig(steps=2, batch_size=8, lr=RANGE, optimizer=optimizer, momentum=0.9, schedule=schedule,
                        warmup_steps=warmup, log_every=5)
    seeds, decays = [0, 1], [0.1, 0.3]
    splits = [split("majority", 0), split("first", 1)]
    rates = [train.learning_rate(s) for s in seeds]
    assert rates[0] != pytest.approx(rates[1], rel=0.1)
    ensemble, _ = train_ensemble(MODEL, train, seeds, splits, CPU, weight_decays=decays, progress=False)
    def alone(i, rate):
        model, _ = train_ensemble(MODEL, dataclasses.replace(train, lr=rate), [seeds[i]], [splits[i]], CPU,
                                  weight_decays=[decays[i]], progress=False)
        return model.member_state_dict(0)

    for i in range(len(seeds)):
        got = ensemble.member_state_dict(i)
        assert_same_parameters(got, alone(i, rates[i]), optimizer)
        other = alone(i, rates[1 - i])
        assert max((got[k] - other[k]).abs().max().item() for k in got) > 1e-3


def test_the_trainer_steps_members_at_their_rates_and_a_lone_member_at_its_own():
    """With drawn rates a Trainer of several members keeps the optimizer at the schedule's factor (peak 1) and a
    column of the members' rates; one member, or one rate for all, is the optimizer's own peak rate."""
    cfg = TrainConfig(lr=RANGE)
    several = Trainer(Ensemble(MODEL, [0, 1, 2]), cfg)
    assert several.peak_lr == 1.0
    assert several.member_lr.squeeze(1).tolist() == pytest.approx([cfg.learning_rate(s) for s in (0, 1, 2)])
    lone = Trainer(Ensemble(MODEL, [2]), cfg)
    assert lone.peak_lr == cfg.learning_rate(2) and lone.member_lr is None
    fixed = Trainer(Ensemble(MODEL, [0, 1]), TrainConfig(lr=0.004))
    assert fixed.peak_lr == 0.004 and fixed.member_lr is None
    same_seed = Trainer(Ensemble(MODEL, [5, 5]), cfg)  # one draw for both: the optimizer's own rate
    assert same_seed.peak_lr == cfg.learning_rate(5) and same_seed.member_lr is None


def test_every_row_of_a_random_rate_bench_records_its_draw(tmp_path, tiny_config):
    """A bench with train.lr {loguniform: ...} writes into each row metrics["learning_rate"], the cell's own
    `learning_rate(seed)`, the same for a seed on every language; the row's config keeps the range; a bench at one
    rate records no learning_rate."""
    raw = C.apply_overrides(tiny_config, ["model.attention=soft", "model.d_model=8", "model.d_ff=16",
                                          "train.steps=4", "data.train_size=60", "eval.tie_tolerances=[]",
                                          "eval.uniform_control=false", f"train.lr={RANGE}"])
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    rows = read_run(tmp_path / "run")
    cells = {C.cell_hash(c): c for c in C.expand(raw).cells}
    assert {row["hash"] for row in rows} == set(cells) and len(rows) == 4
    by_seed = {}
    for row in rows:
        cell = cells[row["hash"]]
        assert row["metrics"]["learning_rate"] == pytest.approx(cell.train.learning_rate(cell.seed), rel=1e-5)
        assert row["config"]["train"]["lr"] == RANGE
        by_seed.setdefault(cell.seed, set()).add(row["metrics"]["learning_rate"])
    assert all(len(rates) == 1 for rates in by_seed.values()) and len(by_seed) == 2

    fixed = dict(raw, train=dict(raw["train"], lr=0.01))
    path.write_text(yaml.safe_dump(fixed))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "fixed"), "--quiet", "--no-report"]) == 0
    assert all("learning_rate" not in row["metrics"] for row in read_run(tmp_path / "fixed"))
