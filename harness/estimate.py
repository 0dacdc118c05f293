"""How long a bench will take, measured before it runs (`satbench bench --dry-run`): a short calibration of each of
its stacked ensembles on the device the bench would use, through the code the bench itself runs, scaled up to the run.

For every shape group of the cells still to run (harness.config.group_key):

    datasets    the datasets of a few of the group's members (CALIBRATION_MEMBERS, other languages first), timed per
                language; times the datasets the run builds
    training    TIMED_STEPS training steps of the ensemble at the group's full size after a warm-up step, on those
                datasets repeated to fill every member; times train.steps. And one call of every probe's
                during_training, times the logged steps (on the default grid this is most of the training phase)
    evaluation and probes   every probe's measure once: those of the rows' own metrics (recognition at every
                scale and tie tolerance over the test split, ties) are the evaluation, the others the probes

On a CPU the probes run on the few members only, and their time is scaled by the group's size: their work is batched
over the members and grows in proportion to them. A GPU's time does not grow so, so there they run on every member,
each on a dataset of its own language among the few (`paired`). Groups that differ only in what changes no step's
time (the learning rate, its schedule, the number of steps) are timed once.

Left out: compilation (train.compile is timed uncompiled), the checkpoints of train.keep_checkpoints, the hand-built
constructions and the report at the end, starting the process, and whatever else loads the machine meanwhile. The
fits of the training log (norm growth) see a log of two steps, where there is nothing to fit: on the default grid they
take a few seconds per group in the run.
"""

import dataclasses
import itertools
import json
import statistics
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass

import torch

from satbench.models.train import logged_steps, train_ensemble
from satbench.probes import ProbeRun

from . import config as C
from .run import build_dataset, dataset_key, device_name, group_probe_classes, training_split

# Members whose datasets are built, and on a CPU the members the probes are timed on. Their time per member grows
# a little with the members (memory traffic): on the default grid, timed on 5 it is about a fifth short of 25's.
CALIBRATION_MEMBERS = 5
TIMED_STEPS = 4  # training steps timed after the warm-up step
# Fields that change what a group computes but not how long one of its steps, logged steps or measurements takes.
UNTIMED = ("train.lr", "train.steps", "train.warmup_steps", "train.schedule", "eval.threshold")


@dataclass
class GroupTimes:
    """Seconds of one group at its full size."""

    setup: float  # building the ensemble and its data on the device, the first logged step and the warm-up step
    step: float  # one training step of every member
    log: float  # every probe's during_training at one logged step
    evaluate: float  # the measure of the probes of section "metrics", the rows' `evaluate` phase
    probes: float  # every other probe's measure, the rows' `probes` phase


@dataclass
class Estimate:
    """The estimated seconds of each phase of a bench, and what the estimate rests on."""

    datasets: float
    train: float  # the probes that follow training included, as the rows' `train` phase
    evaluate: float  # evaluation and probes after training
    calibration: float  # seconds the calibration itself took
    device: str
    cells: int
    groups: int

    @property
    def total(self) -> float:
        return self.datasets + self.train + self.evaluate

    def describe(self) -> str:
        return (f"estimated time: about {duration(self.total)} for {self.cells} cells in {self.groups} stacked "
                f"ensembles (datasets {duration(self.datasets)}, training {duration(self.train)}, evaluation and "
                f"probes {duration(self.evaluate)}; from a {self.calibration:.0f} s calibration on {self.device}). "
                "An estimate: other load on the machine changes it, and it leaves out the report at the end")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(device) -> float:
    """Wall seconds, after the device has finished what was queued on it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def sample_members(cells, k):
    """Up to k of a group's cells, in the group's order, one of each language before a second of any: the datasets
    and the probes' work differ by language more than by seed."""
    chosen, languages = [], set()
    for cell in cells:
        if cell.language not in languages:
            chosen.append(cell)
            languages.add(cell.language)
    chosen += [cell for cell in cells if not any(cell is other for other in chosen)]
    return chosen[:k]


def paired(cells, sample, datasets):
    """[(cell, dataset)] for each of `cells`, from the datasets built for the `sample` (`sample_members`): a cell's own
    where it was sampled, else one of its language (the group's cells share their data section; seeds draw other
    strings of the same language), else a sampled cell and its dataset in its place. A probe reads a member's data as
    strings of the member's language: the sample's language-first order is not the group's."""
    own = {id(cell): dataset for cell, dataset in zip(sample, datasets)}
    by_language = {}
    for cell, dataset in zip(sample, datasets):
        by_language.setdefault(cell.language, dataset)
    out = []
    for i, cell in enumerate(cells):
        if id(cell) in own:
            out.append((cell, own[id(cell)]))
        elif cell.language in by_language:
            out.append((cell, by_language[cell.language]))
        else:
            out.append((sample[i % len(sample)], datasets[i % len(sample)]))
    return out


def timing_key(cells) -> str:
    """Groups with the same key take the same time per step, per logged step and per measurement."""
    shared = json.loads(C.group_key(cells[0]))
    for path in UNTIMED:
        section, _, key = path.rpartition(".")
        shared[section].pop(key)
    return C.canonical_json([shared, len(cells)])


def attempt(call):
    """`call()`, or None where it fails: a probe may fail on a model trained for one step. The bench itself reports
    a probe that fails; here it costs its time until the failure."""
    try:
        return call()
    except Exception:  # noqa: BLE001  any probe's failure, of any type
        return None


def calibrate(cells, device, dataset_cache, dataset_seconds) -> GroupTimes:
    """Time one group (see the module's docstring); the datasets built go into `dataset_cache`, their seconds into
    `dataset_seconds[language]`."""
    first = cells[0]
    sample = sample_members(cells, CALIBRATION_MEMBERS)
    datasets = []
    for cell in sample:
        start = time.perf_counter()
        built = dataset_key(cell) in dataset_cache
        datasets.append(build_dataset(cell, dataset_cache))
        if not built:
            dataset_seconds[cell.language].append(time.perf_counter() - start)

    # The steps at the group's full size, not scaled from a few members: part of a step's time is a fixed cost per
    # kernel (on the default grid 3 members step in a sixth of the time of 25, not an eighth).
    # A soft phase (train.soft_steps) is timed as the variant's own steps, which cost at least as much.
    train = dataclasses.replace(first.train, steps=1 + TIMED_STEPS, log_schedule="linear", log_every=1 + TIMED_STEPS,
                                compile=False, soft_steps=0)
    filled = [training_split(c, d) for c, d in paired(cells, sample, datasets)]
    marks = []
    start = clock(device)
    train_ensemble(first.model, train, [c.seed for c in cells], filled, device,
                   weight_decays=[c.train.weight_decay for c in cells], progress=False,
                   on_step=lambda _: marks.append(clock(device)))
    # The median step: a step that another process on the machine happened to slow down is not the run's rate.
    setup, step = marks[0] - start, statistics.median(b - a for a, b in itertools.pairwise(marks))

    # The probes, as harness.run.run_group calls them, over one training step.
    members, member_datasets = map(list, zip(*paired(sample if device.type == "cpu" else cells, sample, datasets)))
    run = ProbeRun(cells=members, datasets=member_datasets, device=device)
    probes = [cls(run) for cls in group_probe_classes(first)]
    logged = {}  # the entries of the first logged step and their seconds

    def on_log(step, ensemble):
        if logged:  # one logged step is timed; the later ones repeat its entries, which the measurements read
            return [dict(entry) for entry in logged["entries"]]
        start = clock(device)
        entries = [{} for _ in members]
        for probe in probes:
            numbers = attempt(lambda: probe.during_training(step, ensemble))  # noqa: B023
            for entry, values in zip(entries, numbers or [{} for _ in members], strict=True):
                entry.update(values)
        logged.update(entries=entries, seconds=clock(device) - start)
        return entries

    ensemble, logs = train_ensemble(first.model, dataclasses.replace(train, steps=1, log_every=1),
                                    [c.seed for c in members],
                                    [training_split(c, d) for c, d in zip(members, member_datasets, strict=True)],
                                    device,
                                    weight_decays=[c.train.weight_decay for c in members], on_log=on_log,
                                    progress=False)
    run.finish(ensemble, logs)
    measured = {"evaluate": 0.0, "probes": 0.0}
    for probe in probes:
        start = clock(device)
        attempt(lambda: probe.measure(run))  # noqa: B023
        measured["evaluate" if probe.section == "metrics" else "probes"] += clock(device) - start
    scale = len(cells) / len(members)
    return GroupTimes(setup=setup, step=step, log=scale * logged["seconds"],
                      evaluate=scale * measured["evaluate"], probes=scale * measured["probes"])


def estimate_bench(cells, device) -> Estimate:
    """The estimated time of a bench that runs `cells` (the unfinished ones) on `device`."""
    start = time.perf_counter()
    groups = defaultdict(list)
    for cell in cells:
        groups[C.group_key(cell)].append(cell)
    dataset_cache, dataset_seconds, timed = {}, defaultdict(list), {}
    train = evaluate = 0.0
    # The calibration's models have taken one or two steps, and their logs are two entries long: fits of such logs
    # warn of degenerate data, which says nothing about the run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group in groups.values():
            key = timing_key(group)
            if key not in timed:
                timed[key] = calibrate(group, device, dataset_cache, dataset_seconds)
            times, cfg = timed[key], group[0].train
            train += times.setup + (cfg.steps - 1) * times.step + len(logged_steps(cfg)) * times.log
            evaluate += times.evaluate + times.probes
    # The run builds every distinct dataset once; one of a language not timed takes the mean of those timed.
    per_language = {language: sum(s) / len(s) for language, s in dataset_seconds.items()}
    mean = sum(per_language.values()) / len(per_language)
    languages = {dataset_key(cell): cell.language for cell in cells}
    datasets = sum(per_language.get(language, mean) for language in languages.values())
    return Estimate(datasets=datasets, train=train, evaluate=evaluate, calibration=time.perf_counter() - start,
                    device=device_name(device), cells=len(cells), groups=len(groups))
