"""Probes: measurements of the members of a trained stacked ensemble, behind one calling convention and a registry.

A probe is a small class registered with `@register`, the shape of the languages' registry. For every shape group the
harness builds a `ProbeRun` and, for every registered probe:

    probe = cls(run)                    before training
    probe.during_training(step, model)  at every logged step: None, or one dict per member merged into its log
    probe.measure(run)                  after training: one flat dict of numbers per member

A probe's numbers go into the row's `metrics` (the recognition itself, section "metrics", which always runs) or into
`metrics["probes"]` (section "probes", switched off together by `probes.enabled: false`); what of them report.md
shows, the probe declares as data in `report` (probes/report_section.py). The forward passes that several probes read
(the exact forward, the saturated limit and the untrained control on the probe strings) are computed once per group,
on first use, by the ProbeRun.

Adding a probe is one class in one file, imported by probes/__init__.py. A probe knows nothing of particular
languages: what it needs from one (the counters a counter machine keeps, the flag worth probing) the language
declares as class attributes (languages/base.py).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

from satbench.data import stack_splits
from satbench.models import Ensemble, saturated_limit
from satbench.models.saturation import eval_mode

from .report_section import ProbeReport

SECTIONS = ("metrics", "probes")


@dataclass
class ProbeConfig:
    """The `probes` section of a bench config."""

    enabled: bool = True  # every registered probe besides recognition, for every cell
    strings: int = 256  # held-out strings the probes look at

    def __post_init__(self):
        if not self.strings > 0:
            raise ValueError(f"probes.strings: {self.strings} must be > 0")


class Probe:
    """The calling convention; subclasses set `name` and override `measure` (and `during_training` if they follow
    training)."""

    name: ClassVar[str]
    section: ClassVar[str] = "probes"
    needs_attention: ClassVar[bool] = False  # true: it measures attention, which a recurrent model.kind has none of
    needs_internals: ClassVar[bool] = False  # true: it reads "hidden", which a plugin's model need not return
    report: ClassVar[ProbeReport | None] = None  # its section of report.md; None: its numbers stay in the rows

    def __init__(self, run: "ProbeRun"):
        self.run = run

    def during_training(self, step: int, ensemble: Ensemble) -> list[dict] | None:
        return None

    def measure(self, run: "ProbeRun") -> list[dict]:
        raise NotImplementedError


PROBES: dict[str, type[Probe]] = {}


def register(cls: type[Probe]) -> type[Probe]:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__}: a probe needs a `name`")
    if cls.section not in SECTIONS:
        raise ValueError(f"probe '{name}': section {cls.section!r} is not one of {', '.join(SECTIONS)}")
    if cls.report is not None and not isinstance(cls.report, ProbeReport):
        raise ValueError(f"probe '{name}': `report` must be a ProbeReport (probes/report_section.py) or None")
    if name in PROBES and PROBES[name] is not cls:
        raise ValueError(f"probe '{name}' is defined twice: {PROBES[name].__qualname__} and {cls.__qualname__}")
    PROBES[name] = cls
    return cls


def probe_classes(enabled: bool = True, attention: bool = True, internals: bool = True) -> list[type[Probe]]:
    """The registered probes, those of section "metrics" first, each section in registration order; with
    enabled=False only those of section "metrics", with attention=False (a model without attention) none that
    measures attention, with internals=False (a plugin's model) none that reads hidden states."""
    return sorted((cls for cls in PROBES.values() if (enabled or cls.section == "metrics")
                   and (attention or not cls.needs_attention) and (internals or not cls.needs_internals)),
                  key=lambda cls: SECTIONS.index(cls.section))


class Strings:
    """Probe strings, their tokens and membership labels: anything `stack_splits(..., tokens_only=True)` can stack."""

    def __init__(self, tokens, strings, labels=None, next_labels=None):
        self.tokens, self.strings, self.labels, self.next_labels = tokens, strings, labels, next_labels


def probe_strings(split, n, seed) -> Strings:
    """A seeded subset of n held-out strings, drawn from the whole split (which is shuffled, so all lengths appear)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:n].sort().values
    next_labels = None if split.next_labels is None else split.next_labels[index]
    return Strings(split.tokens[index], [split.strings[i] for i in index.tolist()], split.labels[index], next_labels)


@dataclass
class ProbeRun:
    """What every probe of one shape group sees: the members' cells, datasets and seeds before training; the trained
    ensemble and the training logs after (`finish`); and the forward passes probes share, each computed once."""

    cells: list  # harness.config.Cell, one per member: the typed sections (cell.eval, cell.probes, ...)
    datasets: list  # data.Dataset, one per member
    device: torch.device
    ensemble: Ensemble | None = None
    logs: list[list[dict]] | None = None

    def finish(self, ensemble, logs):
        self.ensemble, self.logs = ensemble, logs

    @property
    def seeds(self) -> list[int]:
        return [cell.seed for cell in self.cells]

    @cached_property
    def strings(self) -> list[Strings]:
        """Each member's probe strings: `probes.strings` held-out test strings, seeded by the member's seed."""
        n = self.cells[0].probes.strings
        return [probe_strings(d.test, n, seed) for d, seed in zip(self.datasets, self.seeds)]

    @cached_property
    def tokens(self) -> torch.Tensor:
        """(M, n, T) tokens of the probe strings; members with fewer strings are padded with PAD rows."""
        return stack_splits(self.strings, self.device, tokens_only=True)

    @cached_property
    def labels(self) -> torch.Tensor:
        """(M, n) membership labels of the probe strings, -1 on the PAD rows of members with fewer strings."""
        out = torch.full(self.tokens.shape[:2], -1.0)
        for i, strings in enumerate(self.strings):
            out[i, :len(strings.labels)] = strings.labels
        return out.to(self.device)

    @cached_property
    def next_labels(self) -> torch.Tensor | None:
        """(M, n, T, vocab) int8 next-symbol targets of the probe strings (-1: unscored), or None for membership."""
        if self.strings[0].next_labels is None:
            return None
        tokens = self.tokens
        out = torch.full((*tokens.shape, self.strings[0].next_labels.shape[-1]), -1, dtype=torch.int8)
        for i, strings in enumerate(self.strings):
            n, t = strings.tokens.shape
            out[i, :n, :t] = strings.next_labels
        return out.to(self.device)

    @cached_property
    def exact(self) -> dict:
        """The exact forward of the trained ensemble on the probe strings, with internals (hidden, attn)."""
        with torch.no_grad(), eval_mode(self.ensemble):
            return self.ensemble(self.tokens, internals=True)

    @cached_property
    def limit(self) -> dict:
        """The same at the saturated limit."""
        with torch.no_grad(), eval_mode(self.ensemble), saturated_limit(self.ensemble):
            return self.ensemble(self.tokens, internals=True)

    @cached_property
    def control_hidden(self) -> torch.Tensor:
        """Hidden states of the untrained ensemble of the same seeds: member i starts from exactly these weights."""
        with torch.no_grad():
            control = Ensemble(self.ensemble.config, self.seeds).to(self.device).eval()
            return control(self.tokens, internals=True)["hidden"]
