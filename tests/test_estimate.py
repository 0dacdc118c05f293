"""The time estimate of `satbench bench --dry-run`: a calibration on this machine that grows with the run it
estimates, counts only the cells still to run, and writes nothing."""

import json
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.harness import estimate as E
from satbench.harness.estimate import duration, estimate_bench, sample_members


@pytest.fixture
def tiny(tiny_config):
    return C.apply_overrides(tiny_config, ["eval.scales=[1, inf]"])


def test_the_estimate_is_positive_and_grows_with_the_steps(tiny):
    cpu = torch.device("cpu")
    short = estimate_bench(C.expand(C.apply_overrides(tiny, ["train.steps=30"])).cells, cpu)
    # A thousand times the steps: far beyond what the noise of two calibrations could turn around.
    long = estimate_bench(C.expand(C.apply_overrides(tiny, ["train.steps=30000"])).cells, cpu)
    assert short.cells == long.cells == 8 and short.groups == long.groups == 2
    for estimate in (short, long):
        assert estimate.datasets > 0 and estimate.train > 0 and estimate.evaluate > 0 and estimate.calibration > 0
        assert estimate.total == pytest.approx(estimate.datasets + estimate.train + estimate.evaluate)
    assert long.train > short.train
    assert long.total > short.total


def test_the_sampled_members_cover_the_languages_first(tiny):
    group = [c for c in C.expand(tiny).cells if c.model.attention == "soft"]  # first and majority, seeds 0 and 1
    assert [(c.language, c.seed) for c in sample_members(group, 3)] == [("first", 0), ("majority", 0), ("first", 1)]
    assert len(sample_members(group, 10)) == len(group)


@pytest.mark.parametrize("sampled", [2, 5])
def test_on_a_gpu_every_member_is_timed_on_a_dataset_of_its_own_language(tiny, monkeypatch, sampled):
    # The GPU branch of calibrate, with the datasets, training and probes replaced by records of what they were given:
    # the group's cells run in config order (first 0, first 1, majority 0, majority 1), the sample language-first.
    group = [c for c in C.expand(tiny).cells if c.model.attention == "soft"]
    assert [c.language for c in group] == ["first", "first", "majority", "majority"]
    seen = {"trained": [], "probed": []}

    class Run:
        def __init__(self, cells, datasets, device):
            seen["probed"].append([(c.language, d.language) for c, d in zip(cells, datasets, strict=True)])

        def finish(self, ensemble, logs):
            pass

    def train_ensemble(model, train, seeds, data, device, on_step=None, on_log=None, **_):
        seen["trained"].append(list(data))
        for step in range(3):
            if on_step:
                on_step(step)
        if on_log:
            on_log(0, None)
        return None, []

    monkeypatch.setattr(E, "CALIBRATION_MEMBERS", sampled)
    monkeypatch.setattr(E, "build_dataset", lambda cell, cache: SimpleNamespace(language=cell.language,
                                                                                       train=cell.language))
    monkeypatch.setattr(E, "train_ensemble", train_ensemble)
    monkeypatch.setattr(E, "ProbeRun", Run)
    monkeypatch.setattr(E, "group_probe_classes", lambda first: [])
    monkeypatch.setattr(E, "clock", lambda device: 0.0)
    E.calibrate(group, SimpleNamespace(type="cuda"), {}, defaultdict(list))
    ((pairs,),) = [seen["probed"]]
    assert len(pairs) == len(group) and all(cell == data for cell, data in pairs)
    # The probes' training, and the timed steps at full size, each feed a member its own language's strings.
    assert seen["trained"][0] == [c.language for c in group]
    assert seen["trained"][1] == [cell for cell, _ in pairs]


@pytest.mark.parametrize("seconds, words", [(4.2, "4 s"), (600, "10 min"), (2 * 3600, "2.0 h")])
def test_durations_read_in_the_unit_that_fits(seconds, words):
    assert duration(seconds) == words


def test_the_dry_run_prints_an_estimate_and_writes_nothing(tmp_path, monkeypatch, capsys, tiny):
    monkeypatch.chdir(tmp_path)  # where the default run directory (results/runs/tiny) would go
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    assert main(["bench", "tiny.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 cells in 2 stacked ensembles" in out
    assert "estimated time: about" in out and "calibration on cpu" in out and "An estimate" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]

    assert main(["bench", "tiny.yaml", "--dry-run", "--no-estimate"]) == 0
    assert "estimated time" not in capsys.readouterr().out


def test_the_dry_run_counts_only_the_cells_still_to_run(tmp_path, capsys, tiny):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    run = tmp_path / "run"
    assert main(["bench", str(path), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    rows = run / "cells.jsonl"
    rows.write_text("".join(line for line in rows.read_text().splitlines(keepends=True)
                            if json.loads(line)["config"]["model"]["attention"] == "soft"))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    assert main(["bench", str(path), "--run-dir", str(run), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 of them are finished there and would be skipped" in out
    assert "for 4 cells in 1 stacked ensembles" in out  # the hard group alone
    assert main(["bench", str(path), "--run-dir", str(run), "--dry-run", "--force", "--no-estimate"]) == 0
    assert "finished there" not in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before

    # A run directory of another config: the run would refuse it, and the dry run says so.
    assert main(["bench", str(path), "seeds=[5]", "--run-dir", str(run), "--dry-run", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "the run would stop here" in out and "holds rows of a different config" in out
    assert "finished there" not in out  # its rows are of other cells
