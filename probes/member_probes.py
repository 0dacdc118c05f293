"""The probes of one cell: what is followed during training, and what is measured on the trained member.

During training (`training_probe`), at every logged step and for every member at once: the parameter norm per layer,
saturation similarity per layer, and the cosine of the parameter vector with the previous logged one and with the
initial one (the vectors themselves stay in memory, never in the rows). After training (`probe_member`), on the
member as a standalone Recognizer: norm-growth fits, decision agreement between c = 1 and the saturated limit, head
statistics at the saturated limit, and linear probes for counter values beside a random-init control.
"""

import math

import numpy as np
import torch

from .heads import attended_counts, head_statistics
from .linear_probe import linear_probe_metrics
from .norm_growth import cosine, member_norm_entries, norm_growth_metrics
from .saturation import decision_agreement, member_saturation_similarity
from .train import stack_splits


def probe_strings(split, n, seed):
    """A seeded subset of n held-out strings drawn across all lengths (the split is ordered by length)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:n].sort().values
    return split.tokens[index], [split.strings[i] for i in index.tolist()]


class _Subset:
    """The slice of a split that linear_probe_metrics reads."""

    def __init__(self, tokens, strings):
        self.tokens, self.strings = tokens, strings


def training_probe(splits, n_strings, seeds, device):
    """A callback for `train_ensemble`: one dict per member with the quantities followed over training."""
    tokens = stack_splits([_Subset(*probe_strings(s, n_strings, seed)) for s, seed in zip(splits, seeds)],
                          device, tokens_only=True)
    first, previous = {}, {}

    def on_log(step, ensemble):
        entries = member_norm_entries(ensemble, keep_params=True)
        similarity = member_saturation_similarity(ensemble, tokens)
        for i, entry in enumerate(entries):
            params = entry.pop("params")
            first.setdefault(i, params)
            entry["cos_prev"] = cosine(previous[i], params) if i in previous else math.nan
            entry["cos_first"] = cosine(first[i], params)
            previous[i] = params
            entry.update(similarity[i])
        return entries

    return on_log


def probe_member(model, dataset, log, n_strings, seed):
    """Flat dict of every probe's numbers for one trained member."""
    tokens, strings = probe_strings(dataset.test, n_strings, seed)
    tokens = tokens.to(next(model.parameters()).device)
    out = norm_growth_metrics(log)
    consecutive = [e["cos_prev"] for e in log if np.isfinite(e.get("cos_prev", math.nan))]
    if consecutive:
        out.update(cos_first_last=log[-1]["cos_first"], cos_consecutive_last=consecutive[-1],
                   cos_consecutive_min=min(consecutive))
    out.update({k: v for k, v in log[-1].items() if k.startswith("sim_")})
    out["decision_agreement"] = decision_agreement(model, tokens)
    out.update(head_statistics(model, tokens))
    counts = np.bincount(attended_counts(model, tokens))
    out["attended_histogram"] = {int(k): int(v) for k, v in enumerate(counts) if v}
    out.update(linear_probe_metrics(model, _Subset(tokens.cpu(), strings), dataset.language, seed,
                                    max_strings=n_strings))
    return out
