"""The submitit launchers: real local jobs on the CPU, a job killed mid-run, and the SLURM job array built without a
cluster (fake `srun` and `sbatch` on the PATH)."""

import argparse
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

submitit = pytest.importorskip("submitit")

from satbench.bench_commands import add_commands  # noqa: E402
from satbench.cli import main  # noqa: E402
from satbench.harness import config as C  # noqa: E402
from satbench.harness.launch import make_executor, submit  # noqa: E402
from satbench.harness.results import read_rows, read_run  # noqa: E402
from satbench.harness.shard import select_shard  # noqa: E402

REPO = Path(__file__).parents[1]
@pytest.fixture
def tiny(tiny_config):
    return C.apply_overrides(tiny_config, ["train.steps=10", "train.log_every=5"])


def write_config(tmp_path, raw):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def assert_close(a, b, where="row"):
    """Same structure, same strings, numbers equal up to float rounding."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and not isinstance(b, str):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow  # about 10 s on 2 cores
def test_local_launcher_gives_the_rows_of_a_single_process_run(tmp_path, capsys, tiny):
    config = write_config(tmp_path, tiny)
    single, launched = tmp_path / "single", tmp_path / "launched"
    assert main(["bench", str(config), "--run-dir", str(single), "--quiet", "--no-report"]) == 0
    assert main(["bench", str(config), "--run-dir", str(launched), "--quiet", "--launcher", "local",
                 "--jobs", "2"]) == 0

    # Two real jobs, each in a process of its own, each appending its shard to its own file.
    out = capsys.readouterr().out
    logs = re.findall(r"satbench: shard (\d)/2: job (\d+), log (\S+)", out)
    assert sorted(i for i, _, _ in logs) == ["0", "1"] and len({job for _, job, _ in logs}) == 2
    assert all(Path(log).exists() for _, _, log in logs)
    cells = C.expand(tiny).cells
    for i in range(2):
        rows = read_rows(launched / f"cells.shard-{i}-of-2.jsonl")
        assert sorted(r["hash"] for r in rows) == sorted(C.cell_hash(c) for c in select_shard(cells, i, 2))
    assert (launched / "report.md").exists()  # written once, by the launcher, after both jobs

    # The same cells with the same numbers as one process running the whole grid.
    by_hash = {r["hash"]: r for r in read_run(single)}
    launched_by_hash = {r["hash"]: r for r in read_run(launched)}
    assert sorted(launched_by_hash) == sorted(by_hash) and len(by_hash) == 8
    for key, row in by_hash.items():
        assert_close(row["metrics"], launched_by_hash[key]["metrics"], f"{row['config']['language']}.metrics")
        assert_close(row["log"], launched_by_hash[key]["log"], "log")


def children(pid):
    """Processes whose parent is `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_a_killed_job_loses_only_its_unfinished_cells(tmp_path, tiny):
    # Four shape groups, two per shard: each shard trains a short group, then a long one, during which the kill lands.
    raw = C.apply_overrides(tiny, ["train.steps=[10,60]"])
    config, run = write_config(tmp_path, raw), tmp_path / "run"
    command = [sys.executable, "-m", "satbench", "bench", str(config), "--run-dir", str(run), "--quiet",
               "--no-report", "--launcher", "local", "--jobs", "2"]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jobs = {}
    for line in launcher.stdout:
        found = re.match(r"satbench: shard (\d)/2: job (\d+),", line)
        if found:
            jobs[int(found[1])] = int(found[2])
        if len(jobs) == 2:
            break
    assert len(jobs) == 2, launcher.communicate()[1]

    # A local job is a controller process running the shard in a child process: kill the child, as the OOM killer or
    # a lost node would, once the shard has written its first group.
    shard_file = run / "cells.shard-1-of-2.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not shard_file.exists() or shard_file.read_bytes().count(b"\n") < 1):
        time.sleep(0.05)
    (worker,) = children(jobs[1])
    os.kill(worker, signal.SIGKILL)
    out, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 1
    assert "shards 1/2 did not finish" in err
    rerun = err.strip().splitlines()[-1].strip()
    assert rerun.startswith("satbench bench ") and "--force" not in rerun

    cells = C.expand(raw).cells
    shard_1 = {C.cell_hash(c) for c in select_shard(cells, 1, 2)}
    kept = shard_file.read_bytes()
    assert 0 < kept.count(b"\n") < len(shard_1), "the kill should land between the shard's first and last group"
    other_file = (run / "cells.shard-0-of-2.jsonl").read_bytes()
    assert other_file.count(b"\n") == len(cells) - len(shard_1)

    # The printed command reruns only shard 1, and only its missing cells.
    done = subprocess.run([sys.executable, "-m", "satbench", *shlex.split(rerun)[1:]], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1 of 2 shards have cells to run" in done.stdout and "shard 0/2: job" not in done.stdout
    assert (run / "cells.shard-0-of-2.jsonl").read_bytes() == other_file
    after = shard_file.read_bytes()
    assert after.startswith(kept) and after.count(b"\n") == len(shard_1)  # finished rows kept, none written twice
    assert sorted(r["hash"] for r in read_run(run)) == sorted(C.cell_hash(c) for c in cells)


def bench_args(*flags):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return parser.parse_args(["bench", "tiny.yaml", *flags])


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`srun` and `sbatch` stand-ins: sbatch keeps a copy of the script it was given and answers with a job id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nfor last; do :; done\ncp "$last" {tmp_path}/sbatch_script\n'
                                    "echo Submitted batch job 4242\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "sbatch_script"


def test_slurm_launcher_builds_the_job_array_it_should(tmp_path, fake_slurm, tiny):
    args = bench_args("--launcher", "slurm", "--jobs", "3", "--partition", "gpu", "--time", "90",
                      "--slurm-arg", "account=lab", "--slurm-arg", "constraint=a100")
    executor = make_executor(args, tmp_path / "jobs", "satbench-tiny", 3)
    parameters = executor._executor.parameters  # submitit's own view of what it will ask SLURM for
    assert parameters["partition"] == "gpu" and parameters["time"] == 90 and parameters["gpus_per_node"] == 1
    assert parameters["nodes"] == 1 and parameters["ntasks_per_node"] == 1 and parameters["job_name"] == "satbench-tiny"
    assert parameters["additional_parameters"] == {"account": "lab", "constraint": "a100"}
    assert parameters["array_parallelism"] == 3

    # Two of three shards still to run: one array of two tasks (both at once), each running its own shard.
    grid = C.expand(tiny)
    jobs = submit(executor, "slurm", [0, 2], 3, grid, tmp_path / "run", None)
    assert [job.job_id for job in jobs.values()] == ["4242_0", "4242_1"]
    script = fake_slurm.read_text().splitlines()
    for line in ["#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1", "#SBATCH --nodes=1",
                 "#SBATCH --account=lab", "#SBATCH --constraint=a100", "#SBATCH --job-name=satbench-tiny",
                 "#SBATCH --array=0-1%2"]:
        assert line in script
    for i, job in jobs.items():
        submission = submitit.helpers.DelayedSubmission.load(job.paths.submitted_pickle)
        assert submission.args[1:] == (tmp_path / "run", i, 3, None)


def test_slurm_defaults_leave_out_the_partition_and_ask_for_a_day(tmp_path, fake_slurm, tiny):
    parameters = make_executor(bench_args("--launcher", "slurm", "--jobs", "2", "--gpus-per-job", "0"),
                               tmp_path / "jobs", "satbench-tiny", 2)._executor.parameters
    assert "partition" not in parameters and "gpus_per_node" not in parameters and parameters["time"] == 24 * 60


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "2"], '--launcher slurm: Could not detect "srun"'),
    (["--jobs", "2", "--slurm-arg", "constraint"], "--slurm-arg 'constraint': expected KEY=VALUE"),
])
def test_slurm_launcher_refuses_with_one_line(tmp_path, capsys, monkeypatch, flags, message, tiny):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    run = tmp_path / "run"
    config = write_config(tmp_path, tiny)
    assert main(["bench", str(config), "--run-dir", str(run), "--launcher", "slurm", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not run.exists()
