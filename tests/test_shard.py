"""Shards of a grid: a partition of the cells by whole shape groups, balanced by cost, run as one rows file each."""

import itertools
import json
import random
import sys

import pytest
import yaml

from satbench.cli import main
from satbench.harness import config as C
from satbench.harness.results import grid_hash, load_rows_with_config, read_rows, read_run
from satbench.harness.shard import group_cost, parse_shard, select_shard, split_groups


@pytest.fixture
def uneven(tiny_config):
    """Six shape groups of unequal cost: something for the balance to do."""
    return C.apply_overrides(tiny_config, ["model.d_model=[8,16,32]", "train.steps=[10,30]", "model.attention=soft"])


def hashes(cells):
    return [C.cell_hash(c) for c in cells]


@pytest.mark.parametrize("grid", ["tiny_config", "uneven"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_shards_partition_the_cells_by_whole_groups(request, grid, n):
    cells = C.expand(request.getfixturevalue(grid)).cells
    shards = [select_shard(cells, i, n) for i in range(n)]
    together = [h for shard in shards for h in hashes(shard)]
    assert sorted(together) == sorted(hashes(cells))  # no cell lost, none repeated
    owner = {C.group_key(c): i for i, shard in enumerate(shards) for c in shard}
    for i, shard in enumerate(shards):
        assert all(owner[C.group_key(c)] == i for c in shard)  # a stacked ensemble is never split


def test_split_does_not_depend_on_cell_order(uneven):
    cells = C.expand(uneven).cells
    shuffled = cells[:]
    random.Random(0).shuffle(shuffled)
    for n in (2, 3, 4):
        assert [sorted(hashes(s)) for s in split_groups(cells, n)] == [
            sorted(hashes(s)) for s in split_groups(shuffled, n)]


def groups_of(cells):
    groups = {}
    for cell in cells:
        groups.setdefault(C.group_key(cell), []).append(cell)
    return list(groups.values())


def test_shards_are_balanced_by_cost(uneven):
    cells = C.expand(uneven).cells
    costs = [group_cost(g) for g in groups_of(cells)]
    assert len(set(costs)) > 2
    for n in (2, 3):
        loads = [sum(group_cost(g) for g in groups_of(shard)) for shard in split_groups(cells, n)]
        best = min(max(sum(c for c, s in zip(costs, owners, strict=True) if s == k) for k in range(n))
                   for owners in itertools.product(range(n), repeat=len(costs)))
        # Largest-first onto the lightest shard is within 4/3 of the best split (Graham 1969); a split that ignores
        # the cost, such as dealing the groups round robin, is not here.
        assert max(loads) <= 4 / 3 * best
        assert sum(loads) == sum(costs)


def test_more_shards_than_groups_leaves_some_empty(tiny_config):
    cells = C.expand(tiny_config).cells  # two groups
    assert sorted(len(s) for s in split_groups(cells, 3)) == [0, 4, 4]


@pytest.mark.parametrize("text, message", [
    ("1/2", None), ("0/1", None),
    ("2/2", "i must lie in 0..1"), ("-1/2", "i must lie in 0..1"), ("0/0", "n must be >= 1"),
    ("1", "expected i/n"), ("a/b", "expected i/n"), ("1/2/3", "expected i/n"),
])
def test_parse_shard(text, message):
    if message is None:
        i, n = parse_shard(text)
        assert f"{i}/{n}" == text
    else:
        with pytest.raises(ValueError, match=message):
            parse_shard(text)


def write_config(tmp_path, raw):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("flags, message", [
    (["--shard", "2/2"], "--shard 2/2: i must lie in 0..1"),
    (["--shard", "0/2", "--launcher", "local"], "pass one of them"),
    (["--shard", "0/2", "--force"], "--force with --shard"),
    (["--jobs", "2"], "--jobs needs --launcher"),
    (["--launcher", "local", "--partition", "gpu"], "--partition applies to --launcher slurm only"),
    (["--launcher", "local", "--jobs", "0"], "--jobs 0"),
    (["--launcher", "slurm"], "--launcher slurm needs --jobs"),
])
def test_bad_scale_out_flags_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, flags, message, tiny_config):
    run = tmp_path / "run"
    assert main(["bench", str(write_config(tmp_path, tiny_config)), "--run-dir", str(run), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not run.exists()


def test_launcher_without_submitit_says_how_to_install(tmp_path, capsys, monkeypatch, tiny_config):
    monkeypatch.setitem(sys.modules, "submitit", None)  # makes `import submitit` fail as if it were not installed
    run = tmp_path / "run"
    assert main(["bench", str(write_config(tmp_path, tiny_config)), "--run-dir", str(run), "--launcher", "local"]) == 2
    assert capsys.readouterr().err.strip() == "satbench: install the cluster extra: pip install -e .[cluster]"
    assert not run.exists()


def test_shards_run_one_by_one_give_the_whole_grid_in_separate_files(tmp_path, capsys, tiny_config):
    config, run = write_config(tmp_path, tiny_config), tmp_path / "run"
    for i in range(2):
        assert main(["bench", str(config), "--run-dir", str(run), "--quiet", "--shard", f"{i}/2"]) == 0
        assert not (run / "report.md").exists()  # a lone shard writes no report
    cells = C.expand(tiny_config).cells
    for i in range(2):
        rows = read_rows(run / f"cells.shard-{i}-of-2.jsonl")
        assert sorted(r["hash"] for r in rows) == sorted(hashes(select_shard(cells, i, 2)))
    assert not (run / "cells.jsonl").exists()
    assert sorted(r["hash"] for r in read_run(run)) == sorted(hashes(cells))
    # Rerunning a finished shard does nothing.
    before = (run / "cells.shard-1-of-2.jsonl").read_bytes()
    assert main(["bench", str(config), "--run-dir", str(run), "--quiet", "--shard", "1/2"]) == 0
    assert (run / "cells.shard-1-of-2.jsonl").read_bytes() == before
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").exists()

    # A shard file from a run of another config (say, a shard started with other overrides) is refused: its rows are
    # of cells this grid does not hold.
    other = C.apply_overrides(tiny_config, ["train.steps=31"])
    shard_file = run / "cells.shard-1-of-2.jsonl"
    lines = shard_file.read_text().splitlines()
    row = json.loads(lines[0])
    row["grid_hash"], row["hash"] = grid_hash(other), C.cell_hash(C.expand(other).cells[0])
    shard_file.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cells.shard-1-of-2.jsonl" in err and "another config" in err


def test_a_grid_run_in_parts_reads_as_the_whole_grid(tmp_path, capsys, tiny_config):
    """Two runs of halves of a grid's languages (each its own stacked ensemble, its own grid hash), their rows put
    together: the whole grid's bench finds every cell done, and its report reads them, since each row's cell is one
    of the grid's."""
    tiny_config["vocab_size"] = 5  # the cells of a part and of the whole are the same only with one vocabulary
    # An LSTM member runs its own fused recurrence, so its rows are equal whatever ensemble it trains in; a
    # transformer's stacked matmuls can round the last digit of a loss differently with the ensemble's size.
    tiny_config["model"]["kind"] = "lstm"
    config = write_config(tmp_path, tiny_config)
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for part, language in zip(parts, tiny_config["languages"], strict=True):
        assert main(["bench", str(config), f"languages=[{language}]", "--run-dir", str(part), "--quiet",
                     "--no-report"]) == 0
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "cells.jsonl").write_text("".join((part / "cells.jsonl").read_text() for part in parts))
    capsys.readouterr()
    assert main(["bench", str(config), "--run-dir", str(whole), "--quiet"]) == 0
    assert "finished before, skipped; 0 run" in capsys.readouterr().out
    assert sorted(r["hash"] for r in load_rows_with_config(whole)) == sorted(hashes(C.expand(tiny_config).cells))
    # And the rows are those of the grid run whole, in one ensemble per shape.
    assert main(["bench", str(config), "--run-dir", str(tmp_path / "at_once"), "--quiet", "--no-report"]) == 0
    at_once = {r["hash"]: r for r in load_rows_with_config(tmp_path / "at_once")}
    def measured(row):  # as text, so that a NaN equals a NaN
        return json.dumps([row["metrics"], row["log"]], sort_keys=True)
    assert all(measured(r) == measured(at_once[r["hash"]]) for r in load_rows_with_config(whole))
