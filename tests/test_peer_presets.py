"""The peer presets at the peers' budget (configs/b20_core.yaml, flare_core.yaml and their GPU variants) hold what
their comments promise, and every GPU variant of a config has its stage in benchmarks/gpu_checks.sh."""

import re
from pathlib import Path

from satbench.harness import config as C

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

B20_HEADLINE = {"dyck1", "shuffle2", "shuffle4", "anbn", "anbncn", "boolexp3", "reset_dyck", "dyck2", "crl3",
                "tomita2", "tomita4", "aa_star", "ab_star", "c_aa_c"}
FLARE_HEADLINE = {"first", "parity", "majority", "even_pairs", "repeat_01", "marked_reversal", "marked_copy",
                  "dyck2_depth3"}


def cells(name):
    return C.load_grid(CONFIGS / f"{name}.yaml").cells


def test_b20_core_trains_as_b20_did():
    for name in ("b20_core", "b20_core_gpu"):
        grid = cells(name)
        assert B20_HEADLINE <= {c.language for c in grid}
        assert len({c.seed for c in grid}) >= 5
        for cell in grid:
            assert (cell.data.train_size, cell.train.steps, cell.train.batch_size) == (10_000, 7813, 32)
            # 25 epochs of the training strings in batches
            assert cell.train.steps == cell.data.train_size * 25 // cell.train.batch_size + 1
            train = cell.train
            assert (train.optimizer, train.lr, train.clip, train.loss) == ("rmsprop", 0.005, 0, "mse")
            assert (cell.model.n_layers, cell.model.d_model, cell.model.d_ff, cell.model.n_heads) == (1, 32, 64, 1)
            assert (cell.model.layer_norm, cell.model.positional, cell.model.bos_key) == ("post", "none", False)
            assert cell.data.label_kind == "next_symbols" and cell.data.train_lengths == (1, 50)
            assert cell.eval.select == "best_test" and cell.eval.checkpoints == 25
            assert [tuple(b) for b in cell.eval.length_bins] == [(51, 100), (101, 150)]
    b20 = {c.language for c in cells("b20")}
    assert {c.language for c in cells("b20_core_gpu")} == b20
    assert {c.data.test_per_length for c in cells("b20_core_gpu")} == {40}  # B20's 2,000 strings per bin


def test_flare_core_selects_and_restarts_as_flare_did():
    for name in ("flare_core", "flare_core_gpu"):
        grid = cells(name)
        assert FLARE_HEADLINE <= {c.language for c in grid}
        assert len({c.seed for c in grid}) >= 5
        rates = {c.train.learning_rate(c.seed) for c in grid}
        assert len(rates) == len({c.seed for c in grid})  # one rate per restart
        assert all(1e-4 <= r <= 1e-2 for r in rates)
        for cell in grid:
            assert cell.train.lr == {"loguniform": [0.0001, 0.01]}
            assert cell.eval.select == "validation" and cell.data.validation_size == 1000
            assert cell.data.train_lengths == (0, 40) and cell.data.train_size == 10_000
            assert cell.data.negatives == "flare" and cell.train.clip == 5.0
            assert (cell.model.n_layers, cell.model.n_heads, cell.model.layer_norm) == (5, 8, "pre")
        assert [] in [c.train.aux_losses for c in grid] and ["lm", "next_symbols"] in [c.train.aux_losses for c in grid]
    full = cells("flare_core_gpu")
    assert {c.language for c in full} == {c.language for c in cells("flare")}
    assert {c.data.test_lengths for c in full} == {(0, 500)}
    assert len({tuple(c.train.aux_losses) for c in full}) == 4  # FLaRe's four loss settings


def test_every_gpu_config_has_a_stage_in_gpu_checks():
    script = (ROOT / "benchmarks" / "gpu_checks.sh").read_text()
    stages = {stage for pattern in re.findall(r"^([a-z0-9_|]+)\)$", script, re.M) for stage in pattern.split("|")}
    assert {"bench", "norm_growth"} <= stages
    for path in CONFIGS.glob("*_gpu.yaml"):
        assert path.stem.removesuffix("_gpu") in stages, f"{path.name} has no stage in benchmarks/gpu_checks.sh"
