"""Recognition: accuracy and cross-entropy of every member, per test length, at every scale c and tie tolerance.

Scale c multiplies the attention logits (eval.scaling=attention, the default: softmax(c * s) in every layer, which
converges to the exact saturated limit for any architecture) or every parameter (eval.scaling=parameters: the paper's
f(x; c*theta), a temperature sweep only for the homogeneous block, where it equals logits * c^4); `inf` evaluates the
exact saturated limit, every attention layer replaced by saturated attention. At the limit the accuracy is also
measured at every relative tie tolerance of eval.tie_tolerances: a learned mechanism that averages nearly tied keys
survives a tolerance that counts them as tied, and dies at one that does not. With eval.uniform_control the scale
named "uniform" is the other end, c -> 0: every layer attends uniformly over the keys it may see.

Two criteria, each over held-out strings: in distribution (the training lengths) and length generalization (each bin
of eval.length_bins, by default every test length beyond training as one bin).
"""

import contextlib
import math
from dataclasses import dataclass, field

import torch

from satbench.data import stack_splits
from satbench.languages.base import STRING_KINDS
from satbench.models import PAD, saturate, saturated_limit, scale_attention, uniform_attention
from satbench.models.objectives import judge_strings

from .registry import Probe, register

SCALINGS = ("parameters", "attention")
SELECTIONS = ("final", "validation", "best_test")
UNIFORM = "uniform"  # the scale name of the uniform-attention control (eval.uniform_control)


@dataclass
class EvalConfig:
    """The `eval` section of a bench config. Errors name the field as `eval.<field>`."""

    # Scales c (see `scaling`); `inf` is the exact saturated limit. With scaling=attention, c = 1e6 puts every key more
    # than 1e-4 below a row's maximum at exactly 0 weight in fp32 (exp(-100)), so the last finite columns show whether
    # the softmax has reached its limit or a learned mechanism lives in gaps smaller than that.
    scales: list[float] = field(default_factory=lambda: [1.0, 4.0, 16.0, 64.0, 256.0, 1000.0, 1e6, 1e9, math.inf])
    # What c multiplies: the attention logits alone, or every parameter (the paper's saturate(model, c)).
    scaling: str = "attention"  # attention | parameters
    # Relative tie tolerances at which the saturated limit is also evaluated (see models/attention.py, tie_floor).
    tie_tolerances: list[float] = field(default_factory=lambda: [1e-5, 1e-3, 1e-2, 0.1, 0.3, 1.0])
    # Length-generalization bins [lo, hi] within the test lengths; empty: every test length beyond training, one bin.
    length_bins: list[tuple[int, int]] = field(default_factory=list)
    threshold: float = 0.99  # best-seed accuracy at which a language counts as recognized, under either criterion
    # Test strings per member per pass. One pass holds members x batch x heads x T^2 attention scores; on a CPU,
    # passes of tens of MB beat passes of hundreds: for 15 members on 2 cores, 1024 took 2.45 s per scale and 128
    # took 0.58 s. On a GPU larger passes pay (configs/gpu.yaml sets 256 for 360 members).
    batch_size: int = 128
    # Also evaluate every layer attending uniformly over the keys it may see (the c -> 0 end of the sweep, what the
    # model decides without looking at which keys score highest), stored as the scale named "uniform".
    uniform_control: bool = True
    # Which model a member's numbers describe (harness/selection.py). final: the model after the last step.
    # validation: the checkpoint with the lowest recognition cross-entropy on the validation split
    # (data.validation_size; FLaRe's rule), which then stands in for the final model in every metric and probe.
    # best_test: the final model, but at c = 1 each region (in distribution, each bin, every length beyond training)
    # reads its best accuracy over the checkpoints, B20's report: selected on test data, and every table says so.
    select: str = "final"
    checkpoints: int = 10  # for select != final: evaluation points spread evenly over training, the last step included

    def __post_init__(self):
        self.scales = [float(c) for c in self.scales]  # a list of numbers, as YAML gives it: 1 and 1.0 are one scale
        if not self.scales or any(not c > 0 for c in self.scales):
            raise ValueError(f"eval.scales: {self.scales} must be a non-empty list of positive numbers or inf")
        if 1.0 not in self.scales:
            raise ValueError("eval.scales: must contain 1 (the trained model itself)")
        if any(not (math.isfinite(t) and t >= 0) for t in self.tie_tolerances):
            raise ValueError(f"eval.tie_tolerances: {self.tie_tolerances} must be finite numbers >= 0")
        for lo, hi in self.length_bins:
            if not 0 <= lo <= hi:
                raise ValueError(f"eval.length_bins: [{lo}, {hi}] is not a range 0 <= lo <= hi")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"eval.threshold: {self.threshold} must lie in (0, 1]")
        if not self.batch_size > 0:
            raise ValueError(f"eval.batch_size: {self.batch_size} must be > 0")
        if self.scaling not in SCALINGS:
            raise ValueError(f"eval.scaling: {self.scaling!r} is not one of {', '.join(SCALINGS)}")
        if not isinstance(self.uniform_control, bool):
            raise ValueError(f"eval.uniform_control: {self.uniform_control!r} is not true or false")
        if self.select not in SELECTIONS:
            raise ValueError(f"eval.select: {self.select!r} is not one of {', '.join(SELECTIONS)}")
        if isinstance(self.checkpoints, bool) or not isinstance(self.checkpoints, int) or self.checkpoints < 1:
            raise ValueError(f"eval.checkpoints: {self.checkpoints!r} must be an integer >= 1")

    def bins(self, train_lengths, test_lengths) -> list[tuple[int, int]]:
        """The length-generalization bins: the configured ones, or every test length beyond training."""
        if self.length_bins:
            return [tuple(b) for b in self.length_bins]
        return [(train_lengths[1] + 1, test_lengths[1])] if test_lengths[1] > train_lengths[1] else []


def scale_name(c):
    return "inf" if math.isinf(c) else f"{c:g}"


def bin_name(lo, hi):
    return f"{lo}-{hi}"


def at_scale(model, c, scaling="attention"):
    if math.isinf(c):
        return saturated_limit(model)
    if c == 1:
        return contextlib.nullcontext()
    return saturate(model, c) if scaling == "parameters" else scale_attention(model, c)


def align_by_length(lengths: torch.Tensor) -> torch.Tensor:
    """A gather index (M, S) that lays every member's test rows out by length, the same slots for the same length.

    Slots of length n start where those of length n - 1 end, and there are as many as the member with the most
    strings of length n needs; a slot a member does not fill holds -1. Cut into chunks along the slots, every chunk
    then holds strings of a few neighbouring lengths in every member, and can be cut to the longest of them.
    """
    lengths = lengths.cpu()
    longest = int(lengths.max())
    counts = torch.stack([torch.bincount(row[row >= 0], minlength=longest + 1) for row in lengths])  # (M, n + 1)
    slots = counts.max(dim=0).values
    start = torch.cumsum(slots, 0) - slots  # first slot of each length
    index = torch.full((len(lengths), int(slots.sum())), -1, dtype=torch.long)
    for member, row in enumerate(lengths):
        rows = torch.nonzero(row >= 0).squeeze(1)
        rows = rows[torch.argsort(row[rows], stable=True)]
        n = row[rows]
        rank = torch.arange(len(rows)) - (torch.cumsum(counts[member], 0) - counts[member])[n]  # place within length
        index[member, start[n] + rank] = rows
    return index


def gather_rows(x: torch.Tensor, index: torch.Tensor, fill) -> torch.Tensor:
    """x (M, N, ...) gathered along N by `index` (M, S); slots with index -1 get `fill`."""
    index = index.to(x.device)
    out = x[torch.arange(len(x), device=x.device)[:, None], index.clamp(min=0)]
    empty = (index < 0).view(*index.shape, *[1] * (x.dim() - 2))
    return out.masked_fill(empty, fill)


@torch.no_grad()
def judge_members(ensemble, tokens, labels, next_labels, batch_size, prefix_labels=None):
    """Per stacked test string (M, N): right or not, cross-entropy, finite (models.objectives.judge_strings), in chunks
    of `batch_size` strings, each chunk cut to its longest string (padding trails every string and changes nothing).
    Membership reads one logit per string, so its pass computes nothing else (Recognizer.forward's logit_only)."""
    chunks = []
    for i in range(0, tokens.shape[1], batch_size):
        chunk = tokens[:, i:i + batch_size]
        width = max(int((chunk != PAD).sum(dim=-1).max()), 1)
        targets = None if next_labels is None else next_labels[:, i:i + batch_size]
        prefixes = None if prefix_labels is None else prefix_labels[:, i:i + batch_size]
        out = ensemble(chunk[..., :width], logit_only=targets is None and prefixes is None)
        chunks.append(judge_strings(out, labels[:, i:i + batch_size], targets, prefixes))
    return [torch.cat(part, dim=1) for part in zip(*chunks, strict=True)]


def evaluate_ensemble(ensemble, test_splits, data_cfg, eval_cfg, device):
    """Returns, per member, a flat dict of recognition metrics (see `recognition_metrics`)."""
    data = stack_splits(test_splits, device)
    # Laid out by length, the chunks of short strings are short: about half the work of the shuffled order.
    index = align_by_length(data.lengths)
    tokens = gather_rows(data.tokens, index, PAD)
    labels = gather_rows(data.labels, index, 0.0)
    next_labels = None if data.next_labels is None else gather_rows(data.next_labels, index, -1)
    prefix_labels = None if data.prefix_labels is None else gather_rows(data.prefix_labels, index, -1.0)
    lengths = gather_rows(data.lengths, index, -1)
    kinds = gather_rows(data.kinds, index, -1).cpu()  # each string's kind follows it into its slot
    real = lengths >= 0

    def judged():
        right, ce, finite = judge_members(ensemble, tokens, labels, next_labels, eval_cfg.batch_size, prefix_labels)
        return right.cpu(), ce.cpu(), (~finite & real).sum(dim=1).cpu()

    per_scale, per_tol = {}, {}
    ensemble.eval()
    # A model without attention (a recurrent model.kind) has no sweep, limit or tie tolerance: c = 1 alone.
    attends = bool(ensemble.attention_layers())
    if eval_cfg.uniform_control and attends:  # first: the c -> 0 end of the sweep
        with uniform_attention(ensemble):
            per_scale[UNIFORM] = judged()
    for c in eval_cfg.scales if attends else [1.0]:
        with at_scale(ensemble, c, eval_cfg.scaling):
            per_scale[scale_name(c)] = judged()
    for tol in eval_cfg.tie_tolerances if attends else []:
        with saturated_limit(ensemble, tol=tol):
            per_tol[f"{tol:g}"] = judged()[0]
    lengths, real = lengths.cpu(), real.cpu()
    bins = eval_cfg.bins(data_cfg.train_lengths, data_cfg.test_lengths)
    return [recognition_metrics({name: tuple(x[i] for x in values) for name, values in per_scale.items()},
                                {name: correct[i] for name, correct in per_tol.items()},
                                lengths[i], real[i], data_cfg.train_lengths, bins, eval_cfg.threshold,
                                kinds=kinds[i])
            for i in range(len(test_splits))]


def recognition_metrics(per_scale, per_tol, lengths, real, train_lengths, bins, threshold, kinds=None):
    """One member's metrics, each a dict by scale name ("1", ..., "inf"):

        acc, ce, recognized   in distribution: held-out strings of the training lengths
        acc_bins[bin]         length generalization: held-out strings with lengths in the bin ("21-40")
        acc_long              every test length beyond training
        acc_by_length, ce_by_length, nonfinite
        acc_by_kind[kind]     in distribution, on the strings of one kind: "member" or the kind of negative that
                              produced them (languages.base.STRING_KINDS); a constant answer on one kind shows here
    and `tie_tolerance_acc[tol]`: {"in": accuracy in distribution, bin: accuracy on the bin} at the saturated limit
    with relative tie tolerance tol. With `kinds` (each row's index in STRING_KINDS, -1 where unknown) also
    `kind_counts[kind]`, the strings of each kind in distribution, and `counts[region][class]`, the members and
    non-members in distribution ("in") and in each bin: how many strings each accuracy rests on.

    A language with very few members per length (a^n b^n, (ab)*, 1*) can have every member of the training lengths
    in the training split and so no held-out string there; its `acc` is then taken over all test lengths, which asks
    for length generalization, and `acc_over` says so."""
    lo, hi = train_lengths
    in_train = real & (lengths >= lo) & (lengths <= hi)
    longer = real & (lengths > hi)
    acc_over = "training lengths"
    if not in_train.any():
        in_train, acc_over = real, "all test lengths"
    regions = {"in": in_train, **{bin_name(a, b): real & (lengths >= a) & (lengths <= b) for a, b in bins}}

    def accuracy(correct, where):
        return correct[where].float().mean().item() if where.any() else math.nan

    metrics = {"acc_over": acc_over, "acc": {}, "acc_long": {}, "ce": {}, "recognized": {}, "nonfinite": {},
               "acc_bins": {bin_name(a, b): {} for a, b in bins}, "acc_by_length": {}, "ce_by_length": {}}
    of_length = {int(n): real & (lengths == n) for n in lengths[real].unique().tolist()}
    for name, (correct, ce, nonfinite) in per_scale.items():
        acc = accuracy(correct, in_train)
        metrics["acc"][name] = acc
        metrics["acc_long"][name] = accuracy(correct, longer)
        for a, b in bins:
            metrics["acc_bins"][bin_name(a, b)][name] = accuracy(correct, regions[bin_name(a, b)])
        metrics["ce"][name] = ce[in_train].mean().item()
        metrics["recognized"][name] = acc >= threshold
        metrics["nonfinite"][name] = int(nonfinite)
        metrics["acc_by_length"][name] = {n: correct[mask].float().mean().item() for n, mask in of_length.items()}
        metrics["ce_by_length"][name] = {n: ce[mask].mean().item() for n, mask in of_length.items()}
    metrics["tie_tolerance_acc"] = {tol: {region: accuracy(correct, where) for region, where in regions.items()}
                                    for tol, correct in per_tol.items()}
    if kinds is not None and bool((kinds[real] >= 0).all()) and real.any():
        of_kind = {STRING_KINDS[k]: in_train & (kinds == k) for k in kinds[in_train].unique().tolist()}
        metrics["acc_by_kind"] = {name: {kind: accuracy(correct, where) for kind, where in of_kind.items()}
                                  for name, (correct, _, _) in per_scale.items()}
        metrics["kind_counts"] = {kind: int(where.sum()) for kind, where in of_kind.items()}
        member = kinds == STRING_KINDS.index("member")
        metrics["counts"] = {region: {"member": int((where & member).sum()), "non-member": int((where & ~member).sum())}
                             for region, where in regions.items()}
    return metrics


@register
class Recognition(Probe):
    """Accuracy and cross-entropy per test length and scale: the row's own metrics, run even with probes off."""

    name = "recognition"
    section = "metrics"

    def measure(self, run):
        first = run.cells[0]
        return evaluate_ensemble(run.ensemble, [d.test for d in run.datasets], first.data, first.eval, run.device)
