"""The `bench`, `report` and `compare` subcommands."""

import time
from pathlib import Path

import torch

from . import config as C
from .harness import run_bench
from .report import compare_runs, write_report

CONFIGS = Path("configs")


def add_commands(commands):
    bench = commands.add_parser("bench", help="train and measure a grid of cells, then write its report")
    bench.add_argument("config", nargs="?", help="a YAML grid (default: configs/gpu.yaml with CUDA, "
                                                 "configs/default.yaml without)")
    bench.add_argument("overrides", nargs="*", help="dotted overrides such as train.steps=300 seeds=[0,1]")
    bench.add_argument("--force", action="store_true", help="discard finished rows and rerun every cell")
    bench.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    bench.add_argument("--run-dir", help="where rows and the report go (default: results/runs/<name>)")
    bench.add_argument("--no-report", action="store_true", help="only write rows")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.set_defaults(run=bench_command)

    report = commands.add_parser("report", help="write report.md and figures/ for a run directory")
    report.add_argument("run_dir")
    report.set_defaults(run=report_command)

    compare = commands.add_parser("compare", help="the recognition tables of two runs side by side")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.set_defaults(run=compare_command)


def default_config():
    name = "gpu.yaml" if torch.cuda.is_available() else "default.yaml"
    why = "a CUDA device is visible" if name == "gpu.yaml" else "no CUDA device"
    print(f"satbench: using configs/{name} ({why})")
    return CONFIGS / name


def bench_command(args):
    start = time.time()
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config:  # `satbench bench train.steps=10`: an override, not a file
        overrides.insert(0, config)
        config = None
    grid = C.load_grid(config or default_config(), overrides)
    run_dir = run_bench(grid, run_dir=args.run_dir, force=args.force, device=args.device, progress=not args.quiet)
    report = None if args.no_report else write_report(run_dir)
    where = f"report: {report}" if report else f"rows: {run_dir}"
    print(f"satbench: {len(grid.cells)} cells in {time.time() - start:.1f} s; {where}")
    return 0


def report_command(args):
    print(f"satbench: report: {write_report(args.run_dir)}")
    return 0


def compare_command(args):
    print(compare_runs(args.run_a, args.run_b))
    return 0
