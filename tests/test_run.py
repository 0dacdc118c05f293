"""The bench harness end to end on a tiny grid: expansion, rows, resume, kill, torn lines, bad configs, report."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.harness.results import read_run, repair
from satbench.models import load, parameter_norm

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_config(tmp_path, config, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def tiny(tiny_config):
    return C.apply_overrides(tiny_config, ["train.lr=0.01", "eval.scales=[1, 1000, inf]"])


@pytest.fixture
def bench(tmp_path, tiny):
    """`bench(*args, config=None)`: `satbench bench` on the tiny grid (or `config`) into tmp_path/run."""

    def run(*args, config=None):
        path = write_config(tmp_path, config or tiny)
        return main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet", *args])

    return run


def test_grid_expands_every_axis(tiny):
    grid = C.expand(tiny)
    assert len(grid.cells) == 2 * 2 * 2
    assert {(c.language, c.seed, c.model.attention) for c in grid.cells} == {
        (lang, seed, att) for lang in ["first", "majority"] for seed in [0, 1] for att in ["soft", "hard"]}
    assert len({C.cell_hash(c) for c in grid.cells}) == 8
    assert len({C.group_key(c) for c in grid.cells}) == 2  # one stacked ensemble per attention variant
    assert grid.cells[0].eval.scales[-1] == float("inf")


def test_dotted_overrides_set_values_and_axes(tiny):
    grid = C.expand(C.apply_overrides(tiny, ["train.steps=5", "seeds=[3]", "model.d_model=[8,16]"]))
    assert {c.train.steps for c in grid.cells} == {5}
    assert {c.seed for c in grid.cells} == {3}
    assert {c.model.d_model for c in grid.cells} == {8, 16}


def test_zipped_axes_move_in_step(tiny):
    raw = C.apply_overrides(tiny, ["model.layer_norm=[pre, branch]", "model.bias=[true, false]"])
    assert len(C.expand(raw).cells) == 8 * 4
    raw["zip"] = [["model.layer_norm", "model.bias"]]
    cells = C.expand(raw).cells
    assert len(cells) == 8 * 2
    assert {(c.model.layer_norm, c.model.bias) for c in cells} == {("pre", True), ("branch", False)}


@pytest.mark.parametrize("override, message", [
    ("zip=[[model.layer_norm, model.bias]]", "zip: 'model.layer_norm' is not a field given in the config"),
    ("zip=[[model.attention, seeds]]", "zip: 'seeds' is not a field given in the config"),
    ("zip=model.attention", "zip: 'model.attention' must be a list of lists"),
    ("train.stpes=3", "unknown key 'train.stpes' (did you mean 'steps'?)"),
    ("model.attention=sofft", "model.attention"),
    ("train.lr=fast", "train.lr"),
    ("languages=[dyk1]", "unknown language 'dyk1' (did you mean 'dyck1'?)"),
    ("data.train_lengths=[5,2]", "data.train_lengths"),
    ("train.steps=-1", "train.steps"),
    ("train.steps=abc", "train.steps: 'abc' is not an int"),
    ("data.train_lengths=5", "data.train_lengths: 5 is not a list of 2 ints"),
    ("--device=nope", "--device 'nope': not a torch device"),
    ("--device=cuda:99", "--device cuda:99: this process sees"),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, override, message, bench):
    assert bench(override) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_rows_written_then_rerun_skips_them(tmp_path, tiny, bench):
    assert bench("--no-report") == 0
    rows_file = tmp_path / "run" / "cells.jsonl"
    rows = read_run(tmp_path / "run")
    assert len(rows) == 8
    expected = {C.cell_hash(c) for c in C.expand(tiny).cells}
    assert {r["hash"] for r in rows} == expected
    row = rows[0]
    for key in ("config", "metrics", "versions", "device", "seconds", "log"):
        assert key in row
    phases = row["group_phase_seconds"]
    assert set(phases) == {"datasets", "train", "evaluate", "probes"}
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= row["group_seconds"]
    assert set(row["metrics"]["acc"]) == {"uniform", "1", "1000", "inf"}  # the uniform-attention control beside c
    # Short lengths can be used up by training (splits are disjoint); every longer length is tested.
    tested = set(row["metrics"]["acc_by_length"]["1"])
    assert {"7", "8", "9"} <= tested <= {str(n) for n in range(1, 10)}
    before = rows_file.read_bytes()
    assert bench("--no-report") == 0
    assert rows_file.read_bytes() == before  # nothing rerun


def test_torn_last_line_is_repaired_and_its_cell_rerun(tmp_path, bench):
    assert bench("--no-report") == 0
    rows_file = tmp_path / "run" / "cells.jsonl"
    lines = rows_file.read_bytes().splitlines(keepends=True)
    torn_hash = json.loads(lines[-1])["hash"]
    rows_file.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    assert repair(rows_file) is True
    assert torn_hash not in {r["hash"] for r in read_run(tmp_path / "run")}
    rows_file.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    assert bench("--no-report") == 0
    rows = read_run(tmp_path / "run")
    assert len(rows) == 8 and torn_hash in {r["hash"] for r in rows}


@pytest.fixture
def bars(monkeypatch):
    """Every progress bar the bench and its training open, recorded: {"bench": [...], "train": [...]}."""
    from satbench.harness import run
    from satbench.models import train

    opened = {"bench": [], "train": []}
    for module, name in ((run, "bench"), (train, "train")):
        class Recorded(module.tqdm):
            def __init__(self, *args, _name=name, **kwargs):
                super().__init__(*args, **kwargs)
                opened[_name].append(self)

        monkeypatch.setattr(module, "tqdm", Recorded)
    return opened


def test_one_bar_counts_the_training_steps_of_every_member(tmp_path, tiny, bars, capsys):
    path = write_config(tmp_path, tiny)
    run_dir = tmp_path / "run"
    assert main(["bench", str(path), "--run-dir", str(run_dir), "--no-report"]) == 0
    steps = tiny["train"]["steps"]
    [outer] = [bar for bar in bars["bench"] if bar.desc.startswith("training")]
    assert outer.total == outer.n == 8 * steps  # 2 groups x 4 members x steps
    assert bars["train"] and all(bar.disable for bar in bars["train"])  # no second estimate of the same time

    # Resumed with one group's rows gone: only the steps still to take count.
    rows_file = run_dir / "cells.jsonl"
    rows_file.write_text("".join(line for line in rows_file.read_text().splitlines(keepends=True)
                                 if json.loads(line)["config"]["model"]["attention"] == "soft"))
    bars["bench"].clear()
    assert main(["bench", str(path), "--run-dir", str(run_dir), "--no-report"]) == 0
    [outer] = [bar for bar in bars["bench"] if bar.desc.startswith("training")]
    assert outer.total == outer.n == 4 * steps

    capsys.readouterr()
    rows_file.write_text("")
    assert main(["bench", str(path), "--run-dir", str(run_dir), "--no-report", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: no bar at all


def test_corrupt_line_in_the_middle_is_one_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "cells.jsonl").write_text('{"hash": "x", "config": {}}\nnot json\n{"hash": "y", "config": {}}\n')
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cells.jsonl:2" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("files, message", [
    ({"cells.jsonl": '{"hash": "x", "config": {}}\n'}, "row x: not a finished cell"),
    ({"cells.jsonl": "", "config.yaml": "name: [\n"}, "config.yaml: line 2 is not valid YAML"),
])
def test_a_run_dir_the_bench_did_not_write_is_one_clear_error(tmp_path, capsys, files, message):
    run = tmp_path / "run"
    run.mkdir()
    for name, text in files.items():
        (run / name).write_text(text)
    assert main(["report", str(run)]) == 2
    assert main(["compare", str(run), str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(message in line for line in err), err


def test_a_run_dir_of_another_config_is_refused(tmp_path, capsys, bench):
    assert bench("--no-report", "train.steps=5") == 0
    assert bench("--no-report", "train.steps=6") == 2
    assert "different config" in capsys.readouterr().err


@pytest.mark.slow  # about 10 s on 2 cores
def test_killed_bench_resumes_to_the_same_rows(tmp_path, tiny):
    config = dict(tiny, train=dict(tiny["train"], steps=150))
    path = write_config(tmp_path, config)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "satbench", "bench", str(path), "--run-dir", str(run), "--quiet",
               "--no-report"]
    process = subprocess.Popen(command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    rows_file = run / "cells.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if rows_file.exists() and rows_file.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {r["hash"] for r in read_run(run)}
    assert 0 < len(done_before) < 8, "the kill should land between the first and the last group"
    subprocess.run(command, cwd=Path(__file__).parents[1], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    rows = read_run(run)
    assert {r["hash"] for r in rows} == {C.cell_hash(c) for c in C.expand(config).cells}
    assert rows_file.read_bytes().count(b"\n") == 8  # no cell written twice


def test_report_has_the_tables_and_figures(tmp_path, capsys, bench):
    assert bench() == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Recognition" in report and "### Soft vs saturated" in report
    assert "| first " in report and "| majority " in report
    assert "| in dist. c=1 " in report and "| len 7-9 c=inf " in report  # the tiny grid: train 1-6, test 1-9
    assert "| hard " in report and "| soft " in report
    assert re.search(r"\| uniform +\| c=1 +\| c=1000 +\| c=inf +\|", report)  # the sweep, from its c -> 0 end
    assert "### Ties at the saturated limit" in report and "value_distinct_share" in report
    assert re.search(r"time in the groups: \d+ s \(datasets \d+ s, train \d+ s, evaluate \d+ s, probes \d+ s\)", report)
    for figure in ("recognition_heatmap", "accuracy_vs_length", "accuracy_vs_scale", "tie_tolerance"):
        assert (tmp_path / "run" / "figures" / f"{figure}.png").stat().st_size > 1000
    # Every cell with its interval over the seeds, the kinds of negatives, and how many strings a bin rests on.
    assert re.search(r"\| \d\.\d\d \[\d\.\d\d, \d\.\d\d\] best \d\.\d\d, \d/2( ✓)? +\|", report)
    assert "### Accuracy by negative kind" in report and "| member c=1 " in report
    assert re.search(r"held-out strings per class: at least \d+ per cell", report)
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| c=inf " in out and "| len 7-9 " in out and "+0.000 [" in out  # a run against itself: no difference
    assert "| yes " not in out


def test_every_cell_carries_every_probe_and_the_report_shows_them(tmp_path, tiny, bench):
    config = dict(tiny, languages=["majority", "dyck1"], probes={"enabled": True, "strings": 24},
                  train=dict(tiny["train"], weight_decay=[0.0, 0.1]))
    assert bench(config=config) == 0
    rows = read_run(tmp_path / "run")
    assert len(rows) == 16
    for row in rows:
        probes = row["metrics"]["probes"]
        for key in ("growth_gamma", "gamma", "sqrt_r2", "norm_ratio", "sim_mean", "sim_layer1", "decision_kappa",
                    "balanced_acc_limit", "acc_limit_layer0", "tv_limit_layer0", "tv_limit", "acc_uniform",
                    "attended_mean", "split_share", "argmax_like_share", "l0h0_argmax_like", "cos_first_last"):
            assert key in probes, key
        assert math.isnan(probes["decision_kappa"]) or -1 <= probes["decision_kappa"] <= 1
        assert 0 <= probes["balanced_acc_limit"] <= 1 and 0 <= probes["tv_limit_layer0"] <= 1
        assert probes["tv_limit_layer0"] == probes["tv_limit"]  # one layer
        assert sum(probes["attended_histogram"].values()) > 0
        target = "count_diff_r2" if row["config"]["language"] == "majority" else "depth_r2"
        assert f"probe_{target}_best" in probes and f"probe_control_{target}_best" in probes
        assert [e["step"] for e in row["log"]] == [0, 10, 20, 30]
        assert all("norm_per_layer" in e and "sim_mean" in e for e in row["log"])
    report = (tmp_path / "run" / "report.md").read_text()
    for section in ("## Norm growth", "## Saturation", "### By train.weight_decay", "### The fits per cell",
                    "## Attention heads under saturation", "## Counter representations"):
        assert section in report
    saturation = report[report.index("## Saturation"):]
    assert re.search(r"\| sim_mean +\| decision_kappa +\| balanced_acc_limit +\| acc_limit_layer0 +\| "
                     r"tv_limit_layer0 +\|", saturation)
    for figure in ("norm_growth", "limit_over_training", "saturation_over_training", "head_histogram"):
        assert (tmp_path / "run" / "figures" / f"{figure}.png").exists()


def test_a_constant_rate_run_follows_the_limit_on_a_log_schedule(tmp_path, tiny, bench):
    config = dict(tiny, languages=["majority"], seeds=[0], probes={"enabled": True, "strings": 16},
                  model=dict(tiny["model"], attention="soft", positional="none", layer_norm="branch", bias=False),
                  train=dict(tiny["train"], steps=40, schedule="constant", clip=0.0, log_schedule="log",
                             log_points=8, optimizer="sgd", momentum=0.9, weight_decay=[0.0, 0.1],
                             keep_checkpoints=True))
    assert bench(config=config) == 0
    rows = read_run(tmp_path / "run")
    expected = sorted({0, 40, *np.unique(np.round(np.geomspace(1, 40, 8)).astype(int)).tolist()})
    for row in rows:
        assert [e["step"] for e in row["log"]] == expected
        # A checkpoint at every logged step, holding the model whose norm the log recorded.
        saved = sorted((tmp_path / "run" / "checkpoints" / row["hash"]).glob("step-*.pt"))
        assert [int(p.stem.split("-")[1]) for p in saved] == expected
        for entry, path in zip(row["log"], saved):
            assert parameter_norm(load(path)) == pytest.approx(entry["norm"], rel=1e-6)
        for entry in row["log"]:
            assert 0 <= entry["acc_limit"] <= 1 and 0 <= entry["split_share"] <= 1 and 0 <= entry["tv_limit"] <= 1
            assert math.isnan(entry["kappa_limit"]) or -1 <= entry["kappa_limit"] <= 1
            assert entry["norm_with_embeddings"] > entry["norm"]
        assert "sq_r2" in row["metrics"]["probes"] and "sq_slope" in row["metrics"]["probes"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Norm growth" in report


def test_published_gzip_rows_are_read(tmp_path, bench):
    import gzip
    import shutil

    assert bench("--no-report") == 0
    published = tmp_path / "published"
    published.mkdir()
    shutil.copy(tmp_path / "run" / "config.yaml", published / "config.yaml")
    (published / "cells.jsonl.gz").write_bytes(gzip.compress((tmp_path / "run" / "cells.jsonl").read_bytes()))
    assert {r["hash"] for r in read_run(published)} == {r["hash"] for r in read_run(tmp_path / "run")}
    assert main(["report", str(published)]) == 0
    (published / "cells.jsonl.gz").write_bytes(b"not gzip")
    assert main(["report", str(published)]) == 2


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_expands_into_valid_cells(path):
    grid = C.load_grid(path)  # raises on any field a config or its axes get wrong
    assert grid.cells, f"{path} has no cells"


def test_the_norm_growth_configs_are_the_grid_they_describe():
    for name, steps in (("norm_growth", 5_000), ("norm_growth_gpu", 100_000)):
        cells = C.load_grid(CONFIGS / f"{name}.yaml").cells
        assert len(cells) == 60 and len({C.group_key(c) for c in cells}) == 2
        assert {c.seed for c in cells} == set(range(5)) and {c.model.init_scale for c in cells} == {0.1}
        assert {(c.train.optimizer, c.train.lr) for c in cells} == {("adamw", 0.003), ("sgd", 0.01)}
        assert {c.train.steps for c in cells} == {steps}
        assert all(c.train.schedule == "constant" and c.train.clip == 0 for c in cells)
