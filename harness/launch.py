"""Run the shards of a bench as submitit jobs, side by side on this machine (`local`) or on a SLURM cluster (`slurm`).

The launcher records the config in the run directory once, submits one job per shard that still misses cells, and waits
with a bar over finished cells (counted over every rows file). Each job runs `run_bench` on its shard and appends to its
own rows file. A job that dies loses only its unfinished cells: the same command, run again, submits only the shards
that still miss cells, and each of them skips every finished cell.

submitit is an optional dependency (the `cluster` extra): it is imported only when a launcher is asked for.
"""

import os
import shlex
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import config as C
from .allocator import keep_freed_memory
from .results import read_run
from .run import RESULTS_ROOT, prepare_run_dir, run_bench
from .shard import rows_name, select_shard, split_groups

INSTALL_HINT = "install the cluster extra: pip install -e .[cluster]"
LOCAL_TIME_MIN = 7 * 24 * 60  # submitit stops a local job after 2 minutes unless it is given a limit
SLURM_TIME_MIN = 24 * 60  # submitit would ask for 5 minutes
POLL_S = 1.0


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return submitit


class ShardJob:
    """One shard as a job. A class rather than a function so that submitit can requeue it (see `checkpoint`)."""

    def __call__(self, grid, run_dir, i, n, device, command=None):
        keep_freed_memory()
        run_bench(grid, run_dir, device=device, progress=False, rows_name=rows_name(i, n),
                  cells=select_shard(grid.cells, i, n), command=command)
        return i

    def checkpoint(self, *args):
        # Out of time or preempted: submitit requeues what this returns. The restarted job skips the cells it finished,
        # so only the group that was training is lost.
        return import_submitit().helpers.DelayedSubmission(self, *args)


def parse_slurm_args(items):
    """["constraint=a100", "account=lab"] -> {"constraint": "a100", "account": "lab"}, each an `#SBATCH --key=value`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-arg {item!r}: expected KEY=VALUE such as constraint=a100")
        out[key] = value
    return out


def visible_gpus():
    """The GPU ids this process may hand out, as CUDA_VISIBLE_DEVICES names them (all of them when it is unset)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        import torch
        return list(range(torch.cuda.device_count()))
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not all(name.isdigit() for name in names):
        raise ValueError(f"CUDA_VISIBLE_DEVICES={text}: the local launcher needs numeric GPU ids")
    return [int(name) for name in names]


def check_flags(args):
    """Scale-out flags that contradict each other, refused before anything runs."""
    if args.shard and args.launcher:
        raise ValueError("--shard runs one shard here, --launcher runs every shard as a job: pass one of them")
    if args.shard and args.force:
        raise ValueError("--force with --shard would discard the rows of every shard: clear the run directory once, "
                         "then start the shards without --force")
    given = [flag for flag, value in [("--jobs", args.jobs), ("--time", args.time), ("--partition", args.partition),
                                      ("--gpus-per-job", args.gpus_per_job), ("--slurm-arg", args.slurm_arg)]
             if value is not None and value != []]
    if given and not args.launcher:
        raise ValueError(f"{given[0]} needs --launcher local or --launcher slurm")
    slurm_only = [flag for flag in given if flag in ("--partition", "--gpus-per-job", "--slurm-arg")]
    if slurm_only and args.launcher == "local":
        raise ValueError(f"{slurm_only[0]} applies to --launcher slurm only (local jobs get one GPU each)")


def job_count(args):
    if args.jobs is None:
        if args.launcher == "slurm":
            raise ValueError("--launcher slurm needs --jobs N (the number of shards to submit)")
        return max(1, len(visible_gpus()))  # one job per visible GPU
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: must be >= 1")
    return args.jobs


def gpus_per_job(args):
    return 1 if args.gpus_per_job is None else args.gpus_per_job


def make_executor(args, folder, name, jobs):
    """The submitit executor for `args.launcher`, with the job's resources taken from the command line."""
    submitit = import_submitit()
    if args.launcher == "slurm":
        extra = parse_slurm_args(args.slurm_arg)
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as error:  # no srun on this machine
            raise ValueError(f"--launcher slurm: {error}") from None
        # Left out rather than set to nothing: no partition means the cluster's default, no GPUs a CPU job.
        optional = {"slurm_partition": args.partition, "gpus_per_node": gpus_per_job(args)}
        executor.update_parameters(name=name, timeout_min=args.time or SLURM_TIME_MIN, nodes=1, tasks_per_node=1,
                                   slurm_array_parallelism=jobs, slurm_additional_parameters=extra,
                                   **{key: value for key, value in optional.items() if value})
    else:
        # The local executor itself, not AutoExecutor: only it takes `visible_gpus`, which `submit` sets per job.
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=args.time or LOCAL_TIME_MIN)
    return executor


def submit(executor, launcher, shards, n, grid, run_dir, device, command=None):
    """Submit shard i of n for every i in `shards`; returns {i: job}. `command`, the bench's command line, goes into
    the jobs' rows (a job's own command line is submitit's)."""
    job = ShardJob()
    if not shards:
        return {}
    if launcher == "slurm":
        with executor.batch():  # one job array rather than n separate submissions
            return {i: executor.submit(job, grid, run_dir, i, n, device, command=command) for i in shards}
    gpus = visible_gpus()
    jobs = {}
    for k, i in enumerate(shards):
        # One GPU per job, round robin: submitit would give every local job the same first GPU. Without a GPU it sets
        # CUDA_VISIBLE_DEVICES empty and the job runs on the CPU.
        if gpus:
            executor.update_parameters(gpus_per_node=1, visible_gpus=(gpus[k % len(gpus)],))
        jobs[i] = executor.submit(job, grid, run_dir, i, n, device, command=command)
    return jobs


def finished_hashes(run_dir):
    # fix=False: the jobs are appending to these files; only the owner of a rows file may cut a torn line off it.
    return {row["hash"] for row in read_run(run_dir, fix=False)}


def missing_shards(shards, run_dir):
    finished = finished_hashes(run_dir)
    return [i for i, cells in enumerate(shards) if any(C.cell_hash(c) not in finished for c in cells)]


def wait(jobs, run_dir, hashes, progress):
    bar = tqdm(total=len(hashes), desc="cells", disable=not progress)
    while True:
        done = all(job.done() for job in jobs.values())  # asked before counting, so that the last rows are counted
        bar.update(len(finished_hashes(run_dir) & hashes) - bar.n)
        if done:
            break
        time.sleep(POLL_S)
    bar.close()


def rerun_command(args, config, overrides, run_dir, n):
    words = ["satbench", "bench", str(config), *overrides, "--run-dir", str(run_dir), "--launcher", args.launcher,
             "--jobs", str(n)]
    if args.launcher == "slurm":
        words += ["--gpus-per-job", str(gpus_per_job(args))]
        words += ["--partition", args.partition] if args.partition else []
        words += [f"--slurm-arg={item}" for item in args.slurm_arg]
    words += ["--time", str(args.time)] if args.time else []
    words += ["--device", args.device] if args.device else []
    return shlex.join(words)


def launch(grid, args, config, overrides, command=None):
    """Run every shard of `grid` that misses cells as a job and wait for them; returns (run_dir, ok). `command` is
    recorded in every row."""
    import_submitit()  # before anything is written
    n = job_count(args)
    run_dir = Path(args.run_dir or RESULTS_ROOT / grid.name).resolve()
    executor = make_executor(args, run_dir / "jobs", f"satbench-{grid.name}", n)
    # The config is recorded here, once, before any job starts; the jobs only check it.
    prepare_run_dir(grid, run_dir, args.force)
    shards = split_groups(grid.cells, n)
    todo = missing_shards(shards, run_dir)
    print(f"satbench: {len(todo)} of {n} shards have cells to run ({len(grid.cells)} cells in "
          f"{len({C.group_key(c) for c in grid.cells})} shape groups)")
    jobs = submit(executor, args.launcher, todo, n, grid, run_dir, args.device, command=command)
    for i, job in jobs.items():
        print(f"satbench: shard {i}/{n}: job {job.job_id}, log {job.paths.stderr}")
    wait(jobs, run_dir, {C.cell_hash(c) for c in grid.cells}, progress=not args.quiet)

    # A shard failed when its job ended with cells missing, whatever the cause (an error, a kill, a lost node).
    failed = missing_shards(shards, run_dir)
    if failed:
        names = ", ".join(f"{i}/{n}" for i in failed)
        print(f"satbench: shards {names} did not finish (see their logs above); finished cells are kept. Rerun "
              f"the missing ones with:\n  {rerun_command(args, config, overrides, run_dir, n)}", file=sys.stderr)
    return run_dir, not failed
