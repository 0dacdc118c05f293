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
                       help="check the config and print its cells and stacked ensembles; train and write nothing")
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

    compare = commands.add_parser("compare", help="the accuracy of two runs side by side, with intervals",
                                  description="Print the config fields in which two runs differ, then per language, "
                                              "variant, scale (c=1 and c=inf) and criterion (in distribution, each "
                                              "length bin) the mean accuracy over each run's seeds and the "
                                              "difference b - a with its 95% bootstrap interval (seeds resampled "
                                              "within each run), marking the differences whose interval excludes 0.")
    compare.add_argument("run_a", help="a run directory")
    compare.add_argument("run_b", help="another run directory")
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
    from satbench.harness.run import RESULTS_ROOT, pick_device, run_bench
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
        groups = len({C.group_key(cell) for cell in grid.cells})
        where = args.run_dir or RESULTS_ROOT / grid.name
        print(f"satbench: {config}: {len(grid.cells)} cells in {groups} stacked ensembles; rows would go to {where}")
        return 0
    skipped, cells = None, grid.cells
    if args.launcher:
        run_dir, ok = launch(grid, args, config, overrides)
        if not ok:
            return 1
    elif shard:
        cells = select_shard(grid.cells, *shard)
        run_dir, skipped = run_bench(grid, run_dir=args.run_dir, device=args.device, progress=not args.quiet,
                                     rows_name=rows_name(*shard), cells=cells)
    else:
        run_dir, skipped = run_bench(grid, run_dir=args.run_dir, force=args.force, device=args.device,
                                     progress=not args.quiet)
    # A single shard writes no report: the other shards may still be running, and the report is one set of files.
    report = None if args.no_report or shard else write_report(run_dir)
    where = f"report: {report}" if report else f"rows: {run_dir}"
    done = f" ({skipped} finished before, skipped; {len(cells) - skipped} run)" if skipped else ""
    print(f"satbench: {len(cells)} cells{done} in {time.time() - start:.1f} s; {where}")
    return 0


def report_command(args):
    draw_to_files()
    from satbench.report.write import write_report

    print(f"satbench: report: {write_report(args.run_dir, header=args.header)}")
    return 0


def compare_command(args):
    from satbench.report.tables import compare_runs

    print(compare_runs(args.run_a, args.run_b))
    return 0
