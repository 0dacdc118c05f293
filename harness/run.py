"""The run loop: config -> cells -> datasets -> trained ensembles -> probes -> one JSON row per cell.

Cells that differ only in per-member fields (language, seed, weight decay) train together as one stacked ensemble,
and every registered probe (probes/registry.py) measures it. Finished cells (found by their config hash in the run's
rows) are skipped, so an interrupted bench resumes where it stopped. The run also records the hand-built
constructions' accuracy on its test lengths (constructions.json) and what its probes show in the report
(probe_reports.json), so that its report reads files only.
"""

import dataclasses
import fcntl
import json
import os
import platform
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sklearn
import torch
import yaml
from tqdm.auto import tqdm

from satbench.data import make_dataset, with_next_symbols
from satbench.models.io import save
from satbench.models.kinds import is_plugin
from satbench.models.train import train_ensemble
from satbench.probes import ProbeRun, probe_classes, recorded_reports
from satbench.probes.theory_check import construction_rows

from . import config as C
from .provenance import command_line, source_state
from .results import (
    CONFIG_FILE,
    CONSTRUCTIONS_FILE,
    GRID_CELLS_FILE,
    PHASES,
    append_row,
    grid_hash,
    read_run,
    repair,
    rows_files,
    write_atomically,
    write_probe_reports,
)
from .selection import CheckpointSelection

RESULTS_ROOT = Path("results/runs")


def pick_device(name=None):
    """The torch device `name` (default: cuda when available, else cpu), refused here, before anything is written,
    when it is not a device name or names a GPU this process cannot see."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a torch device such as cpu, cuda or cuda:1") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        seen = torch.cuda.device_count()
        raise ValueError(f"--device {name}: this process sees {seen} CUDA device{'' if seen == 1 else 's'}")
    return device


def versions():
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "sklearn": sklearn.__version__}


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def check_recorded_config(grid, run_dir, force):
    """Refuse a run directory that holds the rows of a different config (unless `force` discards them)."""
    recorded = Path(run_dir) / CONFIG_FILE
    if recorded.exists() and not force:
        if C.load_yaml(recorded) != yaml.safe_load(yaml.safe_dump(grid.raw, sort_keys=False)):
            raise C.ConfigError(f"{run_dir} holds rows of a different config: pass --force to discard them, or "
                                f"name=<other> to start a new run")


def prepare_run_dir(grid, run_dir, force):
    """Record the config and its cells in the run directory; a directory that holds a different config is refused."""
    run_dir = Path(run_dir)
    recorded = run_dir / CONFIG_FILE
    text = yaml.safe_dump(grid.raw, sort_keys=False)
    check_recorded_config(grid, run_dir, force)
    run_dir.mkdir(parents=True, exist_ok=True)
    if force:
        for path in rows_files(run_dir):
            path.unlink()
    # Written atomically: the shards of one bench start side by side and each of them reads these.
    if force or not recorded.exists():
        write_atomically(recorded, text)
    # Every time: the cells' hashes depend on the code's defaults as well as on the config, and the report keeps the
    # rows of exactly these cells.
    write_atomically(run_dir / GRID_CELLS_FILE, json.dumps({"cells": [C.cell_hash(c) for c in grid.cells]}) + "\n")
    record_probe_reports(grid.cells, run_dir)
    return run_dir


def record_probe_reports(cells, run_dir):
    """What the probes that run on `cells` contribute to report.md (their `report` declarations), recorded so that
    the report renders their sections from the run directory alone. Every time, like the cells' hashes: the report
    shows what the code declares now."""
    enabled = any(cell.probes.enabled for cell in cells)
    write_probe_reports(run_dir, recorded_reports(probe_classes(enabled=enabled)))


def dataset_key(cell):
    """What a cell's dataset is a function of: its language, seed, vocabulary and data section."""
    return C.canonical_json([cell.language, cell.seed, cell.vocab_size, dataclasses.asdict(cell.data)])


def build_dataset(cell, cache):
    """The cell's dataset, built once per `dataset_key` in this process."""
    key = dataset_key(cell)
    if key not in cache:
        cache[key] = make_dataset(cell.language, seed=cell.seed, vocab_size=cell.vocab_size,
                                  **dataclasses.asdict(cell.data))
    return cache[key]


def training_split(cell, dataset):
    """What the cell trains on: its dataset's training split, with the targets of train.aux_losses' next_symbols term
    where it has one."""
    if "next_symbols" in cell.train.aux_losses:
        return with_next_symbols(dataset.train, cell.language, cell.vocab_size)
    return dataset.train


class PhaseTimer:
    """Wall seconds per phase of a group: `with timer("train"): ...`. Every phase ends on a host value (metrics come
    back as Python numbers), so on a GPU its time includes the kernels it queued."""

    def __init__(self):
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


CHECKPOINTS = "checkpoints"


def checkpoint_path(run_dir, cell, step):
    """Where `train.keep_checkpoints` saves a cell's model after `step` updates."""
    return Path(run_dir) / CHECKPOINTS / C.cell_hash(cell) / f"step-{step:08d}.pt"


def group_probe_classes(first):
    """The probes of a group whose first cell is `first`: those of attention for the transformer alone, and those of
    hidden states for the built-in models alone (a plugin's states are not read)."""
    return probe_classes(enabled=first.probes.enabled, attention=first.model.kind == "transformer",
                         internals=not is_plugin(first.model.kind))


def run_group(cells, device, dataset_cache, progress=True, run_dir=None, bar=None):
    """Train and measure one shape group; returns one row per cell. With train.keep_checkpoints every member is
    saved at every logged step under run_dir (see `checkpoint_path`). `bar`, the bench's bar over member-steps,
    advances by the group's members at every training step, in place of the group's own training bar."""
    start = time.perf_counter()
    timer = PhaseTimer()
    first = cells[0]
    with timer("datasets"):
        datasets = [build_dataset(cell, dataset_cache)
                    for cell in tqdm(cells, desc="datasets", leave=False, disable=not progress)]
    run = ProbeRun(cells=cells, datasets=datasets, device=device)
    probes = [cls(run) for cls in group_probe_classes(first)]

    keep = first.train.keep_checkpoints and run_dir is not None
    errors = {}  # probe name -> its error: a probe that fails costs its own numbers, not the group's training

    def guarded(probe, call):
        if probe.name in errors:
            return None
        try:
            return call()
        except Exception as error:
            if probe.section == "metrics":  # without recognition there is no row to write
                raise
            errors[probe.name] = f"{type(error).__name__}: {error}"
            tqdm.write(f"satbench: probe '{probe.name}' failed and is left out of this group's rows: "
                       f"{errors[probe.name]}", file=sys.stderr)
            return None

    def on_log(step, ensemble):
        if keep:
            for i, cell in enumerate(cells):
                save(ensemble.member(i), checkpoint_path(run_dir, cell, step))
        entries = [{} for _ in cells]
        for probe in probes:
            numbers = guarded(probe, lambda: probe.during_training(step, ensemble))  # noqa: B023
            if numbers is not None:  # a probe that follows training gives every member its numbers
                for entry, values in zip(entries, numbers, strict=True):
                    entry.update(values)
        return entries

    def on_step(_):
        bar.update(len(cells))

    selection = CheckpointSelection(cells, datasets, device) if first.eval.select != "final" else None
    with timer("train"):  # the probes followed during training (on_log) and the checkpoints' evaluations included
        train_splits = [training_split(c, d) for c, d in zip(cells, datasets, strict=True)]
        ensemble, logs = train_ensemble(first.model, first.train, run.seeds, train_splits, device,
                                        weight_decays=[c.train.weight_decay for c in cells], on_log=on_log,
                                        progress=progress and bar is None, on_step=on_step if bar else None,
                                        checkpoints=selection.steps if selection else (), on_checkpoint=selection,
                                        log_steps=selection.steps if selection and selection.rule == "validation"
                                        else ())
        if selection:
            selection.finish(ensemble)
            selection.truncate(logs)
    run.finish(ensemble, logs)
    metrics = [{} for _ in cells]
    for probe in tqdm(probes, desc="evaluate and probe", leave=False, disable=not progress):
        with timer("evaluate" if probe.section == "metrics" else "probes"):
            numbers = guarded(probe, lambda: probe.measure(run))  # noqa: B023
        for member, values in zip(metrics, numbers or [{} for _ in cells], strict=True):
            (member if probe.section == "metrics" else member.setdefault("probes", {})).update(values)
    if selection:
        selection.record(metrics, first.train.steps)
    for member, cell in zip(metrics, cells, strict=True):  # what each restart drew
        if cell.train.random_lr:
            member["learning_rate"] = cell.train.learning_rate(cell.seed)
        if isinstance(cell.train.aux_weight, dict) and cell.train.aux_losses:
            member["aux_weights"] = cell.train.aux_weights(cell.seed)
    if errors:
        for member in metrics:
            member["probe_errors"] = dict(errors)
    rows = []
    for cell, dataset, member, log in zip(cells, datasets, metrics, logs, strict=True):
        rows.append({"hash": C.cell_hash(cell), "config": C.encode_inf(cell.as_dict()), "metrics": member, "log": log,
                     "dataset": {"meta": dataset.meta, "baselines": dataset.baselines}})
    seconds = time.perf_counter() - start
    for row in rows:
        row.update({"seconds": seconds / len(rows), "group_seconds": seconds, "group_members": len(rows),
                    "group_phase_seconds": dict(timer.seconds)})
    return rows


def record_constructions(cells, run_dir):
    """The hand-built constructions on every test length of the run, once per run directory (constructions.json)."""
    path = Path(run_dir) / CONSTRUCTIONS_FILE
    if path.exists():
        return
    lo = max(1, min(c.data.test_lengths[0] for c in cells))
    hi = max(c.data.test_lengths[1] for c in cells)
    write_atomically(path, json.dumps(C.encode_inf(construction_rows(lengths=(lo, hi))), indent=1) + "\n")


@contextmanager
def writing(rows_path):
    """Hold the lock of one rows file while a bench appends to it: a second bench into the same file (the same run
    directory and shard) is refused in one line instead of training every group twice. The lock is the operating
    system's (flock), so a killed bench leaves none behind. Opening the file here also finds a file the bench may
    not write before anything trains."""
    lock = rows_path.with_name(f".{rows_path.name}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise C.ConfigError(f"{rows_path.parent}: another bench is writing {rows_path.name}; wait for it to "
                                "finish, or give this one another --run-dir") from None
        os.close(os.open(rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        yield
    finally:
        os.close(fd)


@contextmanager
def flushed_denormals():
    """Subnormal floats flushed to zero while a bench runs, and not after it returns. Weight decay can drive
    parameters below 1e-38, on which CPUs compute tens of times slower; a member whose norm collapsed then slows its
    whole ensemble. Flushed to zero, they cost nothing and change no decision. torch cannot read the setting back, so
    it is restored to torch's default (off)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def run_bench(grid, run_dir=None, force=False, device=None, progress=True, rows_name="cells.jsonl", cells=None,
              command=None):
    """Run every unfinished cell of `grid` (or of `cells`, a subset such as one shard); returns the run directory and
    the number of cells found finished already. `command`, the command line that started the bench, goes into every
    row (default: this process's sys.argv)."""
    device = pick_device(device)
    run_dir = Path(run_dir or RESULTS_ROOT / grid.name)
    if run_dir.exists() and not run_dir.is_dir():
        raise C.ConfigError(f"--run-dir {run_dir}: a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    with writing(run_dir / rows_name), flushed_denormals():  # the lock before --force discards anything
        prepare_run_dir(grid, run_dir, force)
        context = {"versions": versions(), "device": device_name(device), "grid_hash": grid_hash(grid.raw),
                   **source_state(), "command": command or command_line()}
        return run_dir, _run_cells(grid, run_dir, device, progress, rows_name, grid.cells if cells is None else cells,
                                   context)


def _run_cells(grid, run_dir, device, progress, rows_name, cells, context):
    """Train the groups of the cells without a row yet, appending one row per cell; returns how many had one."""
    # Other shards may be appending to their own rows files right now: only our own file may have a torn line cut off.
    if (run_dir / rows_name).exists():
        repair(run_dir / rows_name)
    finished = {row["hash"] for row in read_run(run_dir, fix=False)}
    todo = [c for c in cells if C.cell_hash(c) not in finished]
    groups = defaultdict(list)
    for cell in todo:
        groups[C.group_key(cell)].append(cell)

    dataset_cache = {}
    # One bar over the training steps of every member of every group still to run, so that its rate, and its estimate
    # of the time left, are the run's from the first minute on. smoothing=0 takes the rate over the whole run: after
    # the first group it includes the evaluation and probes between groups, which a recent rate would leave out.
    member_steps = sum(len(group) * group[0].train.steps for group in groups.values())
    bar = tqdm(total=member_steps, desc=f"training ({grid.name})", unit=" member-step", unit_scale=True, smoothing=0,
               disable=not progress)
    finished_cells = len(cells) - len(todo)
    bar.set_postfix_str(f"cells {finished_cells}/{len(cells)}", refresh=False)
    for group in groups.values():
        for row in run_group(group, device, dataset_cache, progress=progress, run_dir=run_dir, bar=bar):
            row.update(context)
            append_row(run_dir / rows_name, row)
            finished_cells += 1
        bar.set_postfix_str(f"cells {finished_cells}/{len(cells)}")
    bar.close()
    record_constructions(cells, run_dir)
    return len(cells) - len(todo)
