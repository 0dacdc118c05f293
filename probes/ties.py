"""Ties: whether saturated attention can count in this model, layer by layer.

Saturated attention counts by averaging: a query whose maximum score is shared by keys that carry different values
gets the mean of those values, which is a proportion (#a / n) that no single key holds. So the question for a trained
model is not only how often its queries split their attention at the saturated limit but whether the tied keys differ.
Without position information a query ties every key of the same token exactly (identical keys give identical scores),
and those ties average identical values: they split attention but count nothing.

Per member, on the probe strings, with the queries of `heads.query_mask_for` (real, BOS excluded in a causal model):

    split_share_l{l}            at the saturated limit: share of queries (all heads) whose tied set holds > 1 key
    value_distinct_share_l{l}   of those split queries, the share whose tied keys carry different values: some value
                                differs from the set's mean by more than VALUE_TOL of the largest value in the set
    score_gap_l{l}h{h}          as trained (c = 1): median over queries of the gap between the best and the second
                                best allowed score (0 for an exact tie), in the units of q.k / sqrt(d_head)
    score_gap_over_norm_l{l}h{h}  the same divided by the member's parameter norm: under norm growth the scores of
                                the homogeneous block grow like the norm to the 4th power, so a gap that shrinks
                                relative to the norm is a tie forming
and the same pooled over layers (`split_share`, `value_distinct_share`) and the median over heads (`score_gap`,
`score_gap_over_norm`). The accuracy at the limit as the tie tolerance grows is a recognition metric
(probes/evaluate.py, `tie_tolerance_acc`).
"""

import math

import torch

from .heads import query_mask_for
from .registry import Probe, register

VALUE_TOL = 1e-4  # relative: tied values closer than this to their mean count as the same value


def tie_shares(attn: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer: (queries that split, split queries whose tied values differ), counted over heads.

    attn (L, B, H, T, T) saturated weights (exactly 0 outside the tied set); values (L, B, H, T, d); queries (B, T).
    """
    tied = attn > 0
    split = (tied.sum(-1) > 1) & queries[None, :, None, :]  # (L, B, H, T)
    mean = attn @ values  # (L, B, H, T, d): what the query reads
    # Largest deviation from the mean over the tied keys, against the largest tied value: (L, B, H, T).
    deviation = (values[..., None, :, :] - mean[..., :, None, :]).abs().amax(-1)
    magnitude = values.abs().amax(-1)[..., None, :].expand_as(deviation)
    spread = deviation.masked_fill(~tied, 0.0).amax(-1)
    scale = magnitude.masked_fill(~tied, 0.0).amax(-1)
    distinct = split & (spread > VALUE_TOL * scale)
    return split.flatten(1).sum(1), distinct.flatten(1).sum(1)


def pooled_shares(attn: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> dict[str, float]:
    """`split_share` and `value_distinct_share` pooled over layers and heads, for one member's saturated attention
    attn (L, B, H, T, T), values (L, B, H, T, d) and queries (B, T), and `value_distinct_share_layer{l}` per layer
    (see `member_pooled_shares`); NaN where there is nothing to divide."""
    return member_pooled_shares(attn[None], values[None], queries[None])[0]


def member_pooled_shares(attn: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> list[dict[str, float]]:
    """`pooled_shares` of every member: attn (M, L, B, H, T, T), values (M, L, B, H, T, d), queries (M, B, T); one
    dict per member, read back from the device in one go. Each dict also holds `value_distinct_share_layer{l}`, the
    value-distinct share among layer l's split queries (the `value_distinct_share_l{l}` of `member_ties`), which
    comes with the same counts: whether decay leaves a layer averaging different values is asked layer by layer."""
    layers = attn.shape[1]
    counts = []
    for member_attn, member_values, member_queries in zip(attn, values, queries, strict=True):
        # One member at a time: tie_shares holds a (T, T, d) deviation per query, too much for all members at once.
        split, distinct = tie_shares(member_attn.double(), member_values.double(), member_queries)
        asked = member_queries.sum() * attn.shape[3] * layers
        counts.append(torch.cat([split, distinct, asked[None]]))
    out = []
    for member in torch.stack(counts).tolist():
        split, distinct, asked = member[:layers], member[layers:-1], member[-1]
        pooled = shares(int(sum(split)), int(sum(distinct)), int(asked))
        out.append(pooled | {f"value_distinct_share_layer{layer}": d / s if s else math.nan
                             for layer, (s, d) in enumerate(zip(split, distinct, strict=True))})
    return out


def shares(split: int, distinct: int, asked: int) -> dict[str, float]:
    """Split queries among those `asked`, and value-distinct ones among the split; NaN where nothing divides."""
    return {"split_share": split / asked if asked else math.nan,
            "value_distinct_share": distinct / split if split else math.nan}


def score_gaps(scores: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(L, H) median over queries with at least two allowed keys of best minus second-best score; NaN when none."""
    top2 = scores.topk(2, dim=-1).values  # (L, B, H, T, 2), -inf for disallowed keys
    gap = top2[..., 0] - top2[..., 1]
    usable = queries[None, :, None, :] & torch.isfinite(gap)
    gap = gap.masked_fill(~usable, math.nan).transpose(1, 2).flatten(2)  # (L, H, B*T)
    return gap.nanmedian(dim=-1).values


def member_ties(limit: dict, exact: dict, queries: torch.Tensor, norm: float) -> dict[str, float]:
    """The numbers of the module docstring for one member: `limit` and `exact` hold its internals on strings whose
    queries (B, T) are `queries`."""
    split, distinct = tie_shares(limit["attn"].double(), limit["values"].double(), queries)
    n_queries = int(queries.sum()) * limit["attn"].shape[2]  # per layer, over heads
    out = {}
    for layer, (s, d) in enumerate(zip(split.tolist(), distinct.tolist())):
        out[f"split_share_l{layer}"] = s / n_queries if n_queries else math.nan
        out[f"value_distinct_share_l{layer}"] = d / s if s else math.nan
    out.update(shares(int(split.sum()), int(distinct.sum()), n_queries * len(split)))
    gaps = score_gaps(exact["scores"].double(), queries)
    for (layer, head), gap in zip(((l, h) for l in range(gaps.shape[0]) for h in range(gaps.shape[1])),
                                  gaps.flatten().tolist()):
        out[f"score_gap_l{layer}h{head}"] = gap
        out[f"score_gap_over_norm_l{layer}h{head}"] = gap / norm if norm else math.nan  # weight decay can reach 0
    median = float(gaps.flatten().nanmedian())
    out["score_gap"], out["score_gap_over_norm"] = median, median / norm if norm else math.nan
    return out


@register
class Ties(Probe):
    """Tie shares at the saturated limit and score gaps as trained, per layer and head: in every row."""

    name = "ties"
    needs_attention = True
    section = "metrics"

    def measure(self, run):
        norms = run.ensemble.parameter_norm().tolist()
        out = []
        for i, strings in enumerate(run.strings):
            n = len(strings.strings)
            limit, exact = ({k: internals[k][i][:, :n] for k in ("attn", "scores", "values")}
                            for internals in (run.limit, run.exact))
            queries = query_mask_for(run.ensemble, run.tokens[i, :n])
            out.append({"ties": member_ties(limit, exact, queries, norms[i])})
        return out
