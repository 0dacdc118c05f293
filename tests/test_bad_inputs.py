"""Faults a user meets: each gives one line naming the file or value and exit status 2, before anything trains, and
nothing the bench wrote before is changed."""

import fcntl
import os

import pytest
import yaml

from satbench.cli import main
from satbench.harness import config as C


@pytest.fixture
def tiny(tiny_config):
    config = C.apply_overrides(tiny_config, ["languages=[first]", "seeds=[0]", "model.attention=soft",
                                             "train.steps=5"])
    return config


def bench(tmp_path, config, *args, run="run"):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["bench", str(path), "--run-dir", str(tmp_path / run), "--quiet", "--no-report", *args])


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_config_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "latin1.yaml: not UTF-8 text" in line
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_is_a_file_is_refused(tmp_path, tiny, capsys):
    (tmp_path / "run").write_text("not a directory")
    assert bench(tmp_path, tiny) == 2
    assert "a file, not a directory" in one_error_line(capsys)
    assert (tmp_path / "run").read_text() == "not a directory"


def test_a_second_bench_into_the_same_run_is_refused_while_the_first_writes(tmp_path, tiny, capsys):
    assert bench(tmp_path, tiny) == 0
    rows = (tmp_path / "run" / "cells.jsonl").read_bytes()
    # Hold the lock as a running bench would.
    fd = os.open(tmp_path / "run" / ".cells.jsonl.lock", os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert bench(tmp_path, tiny, "--force") == 2
        assert "another bench is writing cells.jsonl" in one_error_line(capsys)
    finally:
        os.close(fd)
    assert (tmp_path / "run" / "cells.jsonl").read_bytes() == rows
    assert bench(tmp_path, tiny) == 0  # the lock died with its holder
    assert "1 finished before, skipped" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_run_dir_is_refused_before_training_and_its_report_too(tmp_path, tiny, capsys):
    assert bench(tmp_path, tiny) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    for path in [*run.iterdir(), run]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        assert bench(tmp_path, tiny, "train.steps=6") == 2
        assert "Permission denied" in one_error_line(capsys)
        assert main(["report", str(run)]) == 2
        assert "Permission denied" in one_error_line(capsys)
    finally:
        for path in [run, *run.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_report_reads_a_torn_row_without_rewriting_the_file(tmp_path, tiny, capsys):
    assert bench(tmp_path, C.apply_overrides(tiny, ["seeds=[0,1]"])) == 0
    rows = tmp_path / "run" / "cells.jsonl"
    torn = rows.read_bytes()[:-20]  # the last row cut mid-line, as a kill during a write would leave it
    rows.write_bytes(torn)
    assert main(["report", str(tmp_path / "run")]) == 0
    assert rows.read_bytes() == torn


def test_compare_names_the_differences_and_refuses_runs_with_nothing_in_common(tmp_path, tiny, capsys):
    assert bench(tmp_path, tiny, run="a") == 0
    assert bench(tmp_path, C.apply_overrides(tiny, ["train.steps=6"]), run="b") == 0
    assert bench(tmp_path, C.apply_overrides(tiny, ["languages=[majority]"]), run="c") == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "- train.steps: 5 -> 6" in out and "first" in out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "no language and attention variant in common" in one_error_line(capsys)


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("satbench ")


def test_lengths_above_the_samplers_limit_are_refused_in_one_line(tmp_path, tiny, capsys):
    assert main(["languages", "sample", "parity", "--length", "1000000", "-n", "1"]) == 2
    assert "above the samplers' limit of 4096" in one_error_line(capsys)
    assert bench(tmp_path, C.apply_overrides(tiny, ["data.test_lengths=[1, 5000]"])) == 2
    assert "data.test_lengths: 5000 is above the samplers' limit" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_length_bin_outside_the_test_range_is_refused_before_training(tmp_path, tiny, capsys):
    config = C.apply_overrides(tiny, ["data.test_lengths=[1, 8]", "data.train_lengths=[1, 6]",
                                      "eval.length_bins=[[7, 80]]"])
    assert bench(tmp_path, config) == 2
    assert "eval.length_bins: [7, 80] is not inside data.test_lengths [1, 8]" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["languages", "sample", "dyck1", "--length", "ten"], "invalid int value: 'ten'"),
    (["bench", "configs/default.yaml", "--dry-run", "train.steps"], "'train.steps' is neither an option nor"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_command_line_mistakes_are_one_line_too(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    line = one_error_line(capsys)
    assert message in line and line.endswith("--help)")


def test_soft_steps_on_a_variant_that_is_not_exact_is_refused_in_one_line(capsys):
    # default.yaml runs soft, saturated and hard: the soft phase of soft attention would only restart its optimizer.
    argv = ["bench", "configs/default.yaml", "train.soft_steps=10", "--dry-run", "--no-estimate"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "train.soft_steps: 10" in line and "model.attention soft is not one" in line
    # Zipped with the variants, 0 for soft: the exact ones take their soft phase.
    assert main([*argv, "train.soft_steps=[0, 10, 10]", "zip=[[model.attention, train.soft_steps]]"]) == 0
    assert "75 cells" in capsys.readouterr().out
