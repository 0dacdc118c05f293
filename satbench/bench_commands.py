"""The `bench`, `report` and `compare` subcommands. The harness (torch) and the report (pandas, matplotlib) are
imported when a command runs, so that `satbench --help` and the language commands start without them."""

import time
from pathlib import Path


def draw_to_files():
    """The command's process draws figures into files only: matplotlib's file backend, which needs no display. Set by
    the commands that own their process, not by the report's modules, which a notebook may import."""
    import matplotlib

    matplotlib.use("Agg")

CONFIGS = Path("configs")


def add_commands(commands):
    bench = commands.add_parser("bench", help="train and measure a grid of cells, then write its report",
                                description="Train every cell of a YAML grid (languages x attention variants x "
                                            "seeds x ...), stacked into ensembles, measure each at every scale c and "
                                            "with every probe, append one JSON row per cell to the run directory, "
                                            "then write report.md and figures/. Rerunning resumes: finished cells "
                                            "are skipped.")
    bench.add_argument("config", nargs="?", help="a YAML grid (default: configs/gpu.yaml with CUDA, "
                                                 "configs/default.yaml without)")
    bench.add_argument("overrides", nargs="*", help="dotted overrides such as train.steps=300 seeds=[0,1]")
    bench.add_argument("--force", action="store_true", help="discard finished rows and rerun every cell")
    bench.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    bench.add_argument("--run-dir", help="where rows and the report go (default: results/runs/<name>)")
    bench.add_argument("--no-report", action="store_true", help="only write rows")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--dry-run", action="store_true",
                       help="check the config, print its cells and stacked ensembles and an estimate of the run's "
                            "time from a short calibration on this machine's device; train and write nothing")
    bench.add_argument("--no-estimate", action="store_true",
                       help="with --dry-run: leave out the calibration and its time estimate")
    cluster = bench.add_argument_group("scale-out",
                                       "split the grid into shards; see harness/shard.py, harness/launch.py")
    cluster.add_argument("--shard", metavar="i/n", help="run only shard i of n (counted from 0) here; writes no report")
    cluster.add_argument("--launcher", choices=("local", "slurm"),
                         help="run every shard as a submitit job and wait (needs: pip install -e .[cluster])")
    cluster.add_argument("--jobs", type=int, metavar="N", help="number of shards and jobs (local default: one per GPU)")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--gpus-per-job", type=int, metavar="G", help="GPUs per SLURM job (default 1)")
    cluster.add_argument("--time", type=int, metavar="MIN", help="time limit per job in minutes (SLURM default 1440)")
    cluster.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="one more `#SBATCH --KEY=VALUE`, such as account=lab or constraint=a100; repeatable")
    bench.set_defaults(run=bench_command)

    report = commands.add_parser("report", help="write report.md and figures/ for a run directory",
                                 description="Read the rows of a run directory (never changing them) and write its "
                                             "report.md and figures/ into it.")
    report.add_argument("run_dir", help="a directory written by `satbench bench` (its --run-dir)")
    report.add_argument("--header", help="a paragraph for the top of the report (e.g. the command and machine)")
    report.set_defaults(run=report_command)

    compare = commands.add_parser(
        "compare", help="two runs, or two attention variants of one run, side by side with intervals",
        usage="satbench compare [-h] RUN_A RUN_B | RUN --variants A B | RUN_A RUN_B --variants A B",
        description="Compare two runs (RUN_A RUN_B), or two attention variants of one run (RUN --variants soft "
                    "saturated). Per language (and setting, where a config field varies within a run), one table: "
                    "its rows each criterion (in distribution, each length bin) as trained (c=1) and at the saturated "
                    "limit (c=inf); its columns a's and b's `mean [low, high] best b, k/n` over seeds, and the "
                    "difference b - a of the means with its 95% bootstrap interval (each side's seeds resampled on "
                    "their own), marked `differs` where the interval excludes 0. Two runs are preceded by the config "
                    "fields in which they differ; what only one side holds is named and left out.")
    compare.add_argument("run_a", metavar="RUN_A", help="a run directory")
    compare.add_argument("run_b", metavar="RUN_B", nargs="?", help="another run directory")
    compare.add_argument("--variants", nargs=2, metavar=("A", "B"),
                         help="compare variant B against variant A within RUN_A, such as --variants soft saturated; "
                              "with RUN_B, variant A of RUN_A against variant B of RUN_B (results/cpu "
                              "results/baselines --variants soft lstm)")
    compare.set_defaults(run=compare_command)


def default_config():
    import torch

    name = "gpu.yaml" if torch.cuda.is_available() else "default.yaml"
    why = "a CUDA device is visible" if name == "gpu.yaml" else "no CUDA device"
    print(f"satbench: using configs/{name} ({why})")
    return CONFIGS / name


def bench_command(args):
    draw_to_files()
    from satbench.harness import config as C
    from satbench.harness.launch import check_flags, launch
    from satbench.harness.provenance import command_line
    from satbench.harness.run import pick_device, run_bench
    from satbench.harness.shard import parse_shard, rows_name, select_shard
    from satbench.report.write import write_report

    start = time.time()
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config:  # `satbench bench train.steps=10`: an override, not a file
        overrides.insert(0, config)
        config = None
    check_flags(args)
    if args.launcher != "slurm":  # a SLURM job's GPUs need not be visible where it is submitted
        pick_device(args.device)
    shard = parse_shard(args.shard) if args.shard else None
    config = config or default_config()
    grid = C.load_grid(config, overrides)
    if args.dry_run:
        return dry_run(grid, config, args, select_shard(grid.cells, *shard) if shard else grid.cells)
    skipped, cells = None, grid.cells
    command = command_line(getattr(args, "argv", None))  # recorded in every row
    if args.launcher:
        run_dir, ok = launch(grid, args, config, overrides, command=command)
        if not ok:
            return 1
    elif shard:
        cells = select_shard(grid.cells, *shard)
        run_dir, skipped = run_bench(grid, run_dir=args.run_dir, device=args.device, progress=not args.quiet,
                                     rows_name=rows_name(*shard), cells=cells, command=command)
    else:
        run_dir, skipped = run_bench(grid, run_dir=args.run_dir, force=args.force, device=args.device,
                                     progress=not args.quiet, command=command)
    # A single shard writes no report: the other shards may still be running, and the report is one set of files.
    report = None if args.no_report or shard else write_report(run_dir)
    where = f"report: {report}" if report else f"rows: {run_dir}"
    done = f" ({skipped} finished before, skipped; {len(cells) - skipped} run)" if skipped else ""
    print(f"satbench: {len(cells)} cells{done} in {time.time() - start:.1f} s; {where}")
    return 0


def dry_run(grid, config, args, cells):
    """Print what a bench would run, and (unless --no-estimate) an estimate of its time, measured here
    (harness/estimate.py); writes nothing."""
    from satbench.harness import config as C
    from satbench.harness.results import read_run
    from satbench.harness.run import RESULTS_ROOT, check_recorded_config, device_name, pick_device

    groups = len({C.group_key(cell) for cell in cells})
    where = Path(args.run_dir or RESULTS_ROOT / grid.name)
    print(f"satbench: {config}: {len(cells)} cells in {groups} stacked ensembles; rows would go to {where}")
    try:
        check_recorded_config(grid, where, args.force)
    except C.ConfigError as refused:  # said, not raised: the dry run has checked the config, which is its task
        print(f"satbench: the run would stop here: {refused}")
    finished = set() if args.force or not where.is_dir() else {row["hash"] for row in read_run(where, fix=False)}
    todo = [cell for cell in cells if C.cell_hash(cell) not in finished]
    if len(todo) < len(cells):
        print(f"satbench: {len(cells) - len(todo)} of them are finished there and would be skipped")
    if args.no_estimate:
        return 0
    if args.launcher:
        print("satbench: no time estimate with --launcher: its jobs share the cells out and run side by side")
        return 0
    if not todo:
        print("satbench: nothing left to run")
        return 0
    from satbench.harness.estimate import estimate_bench

    device = pick_device(args.device)
    print(f"satbench: timing a few training steps and the probes of each stacked ensemble on {device_name(device)} "
          f"...", flush=True)
    print(f"satbench: {estimate_bench(todo, device).describe()}")
    return 0


def report_command(args):
    draw_to_files()
    from satbench.report.write import write_report

    print(f"satbench: report: {write_report(args.run_dir, header=args.header)}")
    return 0


def compare_command(args):
    from satbench.report.compare import compare_runs, compare_variants

    if args.variants:
        print(compare_variants(args.run_a, *args.variants, run_b=args.run_b))
    elif args.run_b:
        print(compare_runs(args.run_a, args.run_b))
    else:
        raise ValueError("compare: give two runs, or one run with --variants A B")
    return 0
