"""Recognition: accuracy and cross-entropy of every member, per test length, at every parameter scale c.

Scale c evaluates f(x; c*theta) (every parameter multiplied by c, as in the paper) or, with eval.scaling=attention,
the model with its attention logits multiplied by c; `inf` evaluates the exact saturated limit, with every attention
layer replaced by saturated attention.
"""

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from models import PAD, saturate, saturated_limit, scale_attention
from models.train import stack_splits

from .registry import Probe, register

SCALINGS = ("parameters", "attention")


@dataclass
class EvalConfig:
    """The `eval` section of a bench config. Errors name the field as `eval.<field>`."""

    # Parameter scales c at which f(x; c*theta) is evaluated; `inf` is the exact saturated limit.
    scales: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 1000.0, math.inf])
    # What c multiplies: every parameter (the paper's saturate(model, c)) or the attention logits alone. Only the
    # latter converges to the `inf` column for every architecture: with biases, layer norm or residual connections the
    # network is not homogeneous, and c*theta changes more than the attention.
    scaling: str = "parameters"  # parameters | attention
    threshold: float = 0.99  # accuracy on the training lengths at which a language counts as recognized
    # Test strings per member per pass. One pass holds members x batch x heads x T^2 attention scores; on a CPU,
    # passes of tens of MB beat passes of hundreds: for 15 members on 2 cores, 1024 took 2.45 s per scale and 128
    # took 0.58 s. On a GPU larger passes pay (configs/gpu.yaml sets 256 for 360 members).
    batch_size: int = 128

    def __post_init__(self):
        if not self.scales or any(not c > 0 for c in self.scales):
            raise ValueError(f"eval.scales: {self.scales} must be a non-empty list of positive numbers or inf")
        if 1.0 not in self.scales:
            raise ValueError("eval.scales: must contain 1 (the trained model itself)")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"eval.threshold: {self.threshold} must lie in (0, 1]")
        if not self.batch_size > 0:
            raise ValueError(f"eval.batch_size: {self.batch_size} must be > 0")
        if self.scaling not in SCALINGS:
            raise ValueError(f"eval.scaling: {self.scaling!r} is not one of {', '.join(SCALINGS)}")


def scale_name(c):
    return "inf" if math.isinf(c) else f"{c:g}"


def at_scale(model, c, scaling="parameters"):
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
def member_logits(ensemble, tokens, batch_size):
    """Membership logits (M, N) for stacked test tokens (M, N, T), in chunks of `batch_size` strings, each chunk cut
    to its longest string (padding trails every string and does not change its logit)."""
    chunks = []
    for i in range(0, tokens.shape[1], batch_size):
        chunk = tokens[:, i:i + batch_size]
        width = max(int((chunk != PAD).sum(dim=-1).max()), 1)
        chunks.append(ensemble(chunk[..., :width])["logit"].float())
    return torch.cat(chunks, dim=1)


def evaluate_ensemble(ensemble, test_splits, train_lengths, eval_cfg, device):
    """Returns, per member, a flat dict of recognition metrics (see `recognition_metrics`)."""
    data = stack_splits(test_splits, device)
    # Laid out by length, the chunks of short strings are short: about half the work of the shuffled order.
    index = align_by_length(data.lengths)
    tokens = gather_rows(data.tokens, index, PAD)
    labels = gather_rows(data.labels, index, 0.0)
    lengths = gather_rows(data.lengths, index, -1)
    real = lengths >= 0
    per_scale = {}
    ensemble.eval()
    for c in eval_cfg.scales:
        with at_scale(ensemble, c, eval_cfg.scaling):
            logits = member_logits(ensemble, tokens, eval_cfg.batch_size)
        # A logit that overflowed at a large scale is a wrong answer, not a crash.
        finite = torch.isfinite(logits)
        correct = ((logits > 0).float() == labels) & finite
        ce = F.binary_cross_entropy_with_logits(logits.nan_to_num(0.0, 1e4, -1e4), labels, reduction="none")
        per_scale[scale_name(c)] = (correct.cpu(), ce.cpu(), (~finite & real).sum(dim=1).cpu())
    lengths, real = lengths.cpu(), real.cpu()
    return [recognition_metrics({name: tuple(x[i] for x in values) for name, values in per_scale.items()},
                                lengths[i], real[i], train_lengths, eval_cfg.threshold)
            for i in range(len(test_splits))]


def recognition_metrics(per_scale, lengths, real, train_lengths, threshold):
    """`acc` (the recognition criterion) is the accuracy on held-out strings of the training lengths. A language with
    very few members per length (a^n b^n, (ab)*, 1*) can have every member of those lengths in the training split and
    so no held-out string there; its `acc` is then taken over all test lengths, which asks for length
    generalization, and `acc_over` says so."""
    lo, hi = train_lengths
    in_train = real & (lengths >= lo) & (lengths <= hi)
    longer = real & (lengths > hi)
    acc_over = "training lengths"
    if not in_train.any():
        in_train, acc_over = real, "all test lengths"
    metrics = {"acc_over": acc_over, "acc": {}, "acc_long": {}, "ce": {}, "recognized": {}, "nonfinite": {},
               "acc_by_length": {}, "ce_by_length": {}}
    of_length = {int(n): real & (lengths == n) for n in lengths[real].unique().tolist()}
    for name, (correct, ce, nonfinite) in per_scale.items():
        acc = correct[in_train].float().mean().item()
        metrics["acc"][name] = acc
        metrics["acc_long"][name] = correct[longer].float().mean().item() if longer.any() else math.nan
        metrics["ce"][name] = ce[in_train].mean().item()
        metrics["recognized"][name] = acc >= threshold
        metrics["nonfinite"][name] = int(nonfinite)
        metrics["acc_by_length"][name] = {n: correct[mask].float().mean().item() for n, mask in of_length.items()}
        metrics["ce_by_length"][name] = {n: ce[mask].mean().item() for n, mask in of_length.items()}
    return metrics


@register
class Recognition(Probe):
    """Accuracy and cross-entropy per test length and scale: the row's own metrics, run even with probes off."""

    name = "recognition"
    section = "metrics"

    def measure(self, run):
        first = run.cells[0]
        return evaluate_ensemble(run.ensemble, [d.test for d in run.datasets], first["data"]["train_lengths"],
                                 EvalConfig(**first["eval"]), run.device)
