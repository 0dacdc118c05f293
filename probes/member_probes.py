"""The probes of one cell: what is followed during training, and what is measured on the trained member.

During training (`training_probe`), at every logged step and for every member at once: the parameter norm per layer,
saturation similarity per layer, and the cosine of the parameter vector with the previous logged one and with the
initial one (the vectors themselves stay in memory, never in the rows). After training (`probe_ensemble`), per
member: norm-growth fits, decision agreement between c = 1 and the saturated limit, head
statistics at the saturated limit, and linear probes for counter values beside a random-init control, computed
for all members in a few passes over the ensemble.
"""

import math

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed

from models import Ensemble, saturated_limit

from .heads import attended_counts, head_statistics
from .linear_probe import COUNTER_SYMBOLS, probe_scores
from .norm_growth import cosine, member_norm_entries, norm_growth_metrics
from .saturation import EvalMode, member_saturation_similarity
from .train import stack_splits

# Fewer members' linear probes than this per worker process do not repay starting the process.
MEMBERS_PER_PROBE_WORKER = 8


def probe_strings(split, n, seed):
    """A seeded subset of n held-out strings, drawn from the whole split (which is shuffled, so all lengths appear)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:n].sort().values
    return split.tokens[index], [split.strings[i] for i in index.tolist()]


class _Subset:
    """Probe strings and their tokens."""

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


@torch.no_grad()
def probe_ensemble(ensemble, datasets, logs, n_strings, seeds):
    """Every probe's numbers for every member, as a list of flat dicts.

    Three passes over the whole ensemble serve all members: the exact forward (hidden states for the linear probes),
    the saturated limit (attention for the head statistics) and the untrained ensemble of the same seeds (the linear
    probes' random-init control: member i starts from exactly those weights).
    """
    device = next(ensemble.parameters()).device
    subsets = [_Subset(*probe_strings(d.test, n_strings, seed)) for d, seed in zip(datasets, seeds)]
    tokens = stack_splits(subsets, device, tokens_only=True)  # (M, n, T); members with fewer strings are padded
    with EvalMode(ensemble):
        exact = ensemble(tokens, internals=True)
        with saturated_limit(ensemble):
            limit = ensemble(tokens, internals=True)
    control = Ensemble(ensemble.config, seeds).to(device).eval()(tokens, internals=True)["hidden"]

    results, probe_jobs = [], []
    for i, (dataset, log, subset) in enumerate(zip(datasets, logs, subsets)):
        n = len(subset.strings)
        member_tokens = tokens[i, :n]
        out = norm_growth_metrics(log)
        consecutive = [e["cos_prev"] for e in log if np.isfinite(e.get("cos_prev", math.nan))]
        if consecutive:
            out.update(cos_first_last=log[-1]["cos_first"], cos_consecutive_last=consecutive[-1],
                       cos_consecutive_min=min(consecutive))
        out.update({k: v for k, v in log[-1].items() if k.startswith("sim_")})
        agree = (exact["logit"][i, :n] > 0) == (limit["logit"][i, :n] > 0)
        out["decision_agreement"] = agree.float().mean().item()
        attn = limit["attn"][i][:, :n]
        out.update(head_statistics(ensemble, member_tokens, attn=attn))
        counts = np.bincount(attended_counts(ensemble, member_tokens, attn=attn))
        out["attended_histogram"] = {int(k): int(v) for k, v in enumerate(counts) if v}
        if dataset.language in COUNTER_SYMBOLS:
            probe_jobs.append((i, delayed(probe_scores)(exact["hidden"][i][:, :n].cpu().numpy(),
                                                         control[i][:, :n].cpu().numpy(), member_tokens.cpu().numpy(),
                                                         dataset.language, seeds[i])))
        results.append(out)
    # The linear probes are scikit-learn fits on the CPU, hundreds of them in a large group: spread over the cores.
    n_jobs = min(cpu_count(), len(probe_jobs) // MEMBERS_PER_PROBE_WORKER) or 1  # cores this process may use
    scores = Parallel(n_jobs=n_jobs)(job for _, job in probe_jobs)
    for (i, _), member_scores in zip(probe_jobs, scores, strict=True):
        results[i].update(member_scores)
    return results
