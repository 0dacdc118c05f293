"""Query and key maps: what weight decay does to each attention layer, followed through training.

Weight decay pulls every weight towards 0. A layer whose queries reach 0 (its query map, and the query bias of a model
with biases, which the norm below leaves out) scores every key a query sees alike: an exact tie, so it attends uniformly
at any scale and at the saturated limit, and a uniform average over the keys is a proportion such as #a / n, which is
what saturated attention counts with. Whether decay gets there, and layer by layer, is what these numbers follow. The
score spread is the test: it is 0 exactly when the queries tie every key, whatever the reason. Per member and attention
layer l, on the probe strings, at every logged step and for the trained member:

    wq_norm_layer{l}          Frobenius norm of the query map: the q third of the layer's qkv weight, its bias left
    wk_norm_layer{l}          out; the same of the key map (a pre-LN layer's norm gain, which scales its input first,
                              is a parameter of the norm, not of the map)
    score_spread_layer{l}     mean over the real queries and the heads of max - min score over the keys the query may
                              see, at c = 1 (the scores of the internals, q.k / sqrt(d_head)): 0 exactly when every
                              query ties every key it sees, which is uniform attention by construction
    relative_spread_layer{l}  the same with each row's spread divided by the row's largest |score| (0 for a row of
                              zeros). Saturated attention ties the keys within tol times that largest |score| of the
                              best, so a row whose relative spread is at most tol ties every key it sees at the limit,
                              however large its scores; multiplying the scores by any c > 0 leaves it as it is

With model.qk_norm the scores are attention_scale * cos(q, k), which a smaller query map does not shrink: there only
queries of exactly 0 tie every key. The queries are those of `heads.query_mask_for`: real positions, less BOS in a
causal model, whose one key makes its spread 0 by construction. The share of layer l's split queries whose tied keys
carry different values at the limit (`value_distinct_share_layer{l}`) comes from the same pass as the other tie shares,
so the saturation probe logs it (probes/saturation_similarity.py, from probes/ties.py's counts) rather than this one
computing the limit again.
"""

import math

import torch

from satbench.models import attention_layers, eval_mode
from satbench.models.layers import stacked

from .heads import query_mask_for
from .registry import Probe, register
from .report_section import ProbeReport, Table

NUMBERS = ("wq_norm", "wk_norm", "score_spread", "relative_spread")  # each logged as {name}_layer{l}


@torch.no_grad()
def query_key_norms(model) -> torch.Tensor:
    """(M, L, 2) float64: per member and attention layer, the Frobenius norms of the query map and of the key map (the
    first and second thirds of the rows of the layer's qkv weight, which the layer splits into q, k and v in that
    order). `model` is a stacked models.Ensemble, or a Recognizer as M = 1. The weights are read in place, whatever
    their layout: training holds them as views of one flat buffer."""
    width = model.config.d_model
    per_layer = []
    for layer in attention_layers(model):
        weight = stacked(layer.qkv.weight, 2)  # (M, 3 d, d)
        maps = (weight[:, :width], weight[:, width:2 * width])
        per_layer.append(torch.stack([torch.linalg.vector_norm(m, dim=(1, 2), dtype=torch.float64) for m in maps], -1))
    return torch.stack(per_layer, dim=1)


def score_spreads(scores: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, L) spread and (M, L) relative spread, both float64: per layer, the mean over the `queries` (M, B, T) and
    every head of max - min score over the keys a query may see, and of that divided by the row's largest |score| (0
    for an all-zero row). `scores` (M, L, B, H, T, T) as the exact forward's internals give them: at c = 1, -inf on
    the keys a query may not see. NaN for a member without queries."""
    heads = scores.shape[3]
    asked = queries.sum(dim=(-2, -1)).double() * heads  # (M,)
    where = queries[:, :, None, :]  # (M, B, 1, T): over heads
    spread, relative = [], []
    for layer in range(scores.shape[1]):  # one layer at a time: the masked copy below is as large as its scores
        layer_scores = scores[:, layer]
        high = layer_scores.amax(-1)  # the -inf of a hidden key is never the maximum: every query sees some key
        low = layer_scores.masked_fill(layer_scores == -math.inf, math.inf).amin(-1)
        gap = high - low  # (M, B, H, T)
        largest = torch.maximum(high.abs(), low.abs())  # the row's largest |score|: its scores lie in [low, high]
        ratio = torch.where(largest == 0, 0.0, gap / largest)  # a NaN row stays NaN
        # torch.where, not a product: a padded query's row may hold anything, and NaN * 0 is NaN.
        for out, value in ((spread, gap), (relative, ratio)):
            out.append(torch.where(where, value, 0.0).sum(dim=(1, 2, 3), dtype=torch.float64) / asked)
    return torch.stack(spread, dim=1), torch.stack(relative, dim=1)


@torch.no_grad()
def attention_map_numbers(ensemble, tokens: torch.Tensor, scores: torch.Tensor | None = None) -> list[dict[str, float]]:
    """The numbers of the module docstring for every member of a stacked models.Ensemble, on its probe strings
    `tokens` (M, n, T) (rows of PAD for a member with fewer strings): one dict per member. `scores`: the exact forward's
    scores on those tokens where they are already computed (the ProbeRun's, after training); else one forward pass."""
    if scores is None:
        with eval_mode(ensemble):
            scores = ensemble(tokens, internals=True)["scores"]
    spread, relative = score_spreads(scores, query_mask_for(ensemble, tokens))
    norms = query_key_norms(ensemble).to(spread.device)
    columns = torch.stack([norms[..., 0], norms[..., 1], spread, relative], dim=1)  # (M, 4, L), in NUMBERS' order
    keys = [f"{name}_layer{layer}" for name in NUMBERS for layer in range(columns.shape[2])]
    return [dict(zip(keys, member, strict=True)) for member in columns.flatten(1).tolist()]  # one read-back


@register
class AttentionMaps(Probe):
    """Per layer, the norms of the query and key maps and the spread of the scores, at every logged step (one forward
    pass on the probe strings) and for the trained member (from the pass the ties probe made already)."""

    name = "attention_maps"
    needs_attention = True
    report = ProbeReport(
        title="Query and key maps",
        text="Per layer l, for the trained members on their probe strings, mean±std over seeds. `wq_norm_layer{l}`, "
             "`wk_norm_layer{l}`: Frobenius norm of the layer's query and key maps (the q and k thirds of its qkv "
             "weight, biases left out). `score_spread_layer{l}`: mean over the real queries and the heads of the "
             "largest minus the smallest score (q.k / sqrt(d_head), c = 1) among the keys a query may see; 0 means "
             "uniform attention by construction, at any scale and at the saturated limit. `relative_spread_layer{l}`: "
             "the same with each row's spread over its largest |score| (0 for a row of zeros); saturated attention "
             "ties every key of a row whose relative spread is at most its tie tolerance. "
             "`value_distinct_share_layer{l}` (from the saturation probe): of layer l's queries that split their "
             "attention at the limit, the share whose tied keys carry different values, which is what lets "
             "saturated attention count. The training logs hold every number at every logged step.",
        # One quantity pair per table: a table wider than the report's limit is cut into parts at arbitrary columns.
        columns=["wq_norm_layer*", "wk_norm_layer*"],
        tables=[Table(["score_spread_layer*", "relative_spread_layer*", "value_distinct_share_layer*"],
                      title="Score spread and value-distinct ties"),
                Table(["wq_norm_layer*", "score_spread_layer*", "relative_spread_layer*",
                       "value_distinct_share_layer*"], rows="field")])

    def during_training(self, step, ensemble):
        return attention_map_numbers(ensemble, self.run.tokens)

    def measure(self, run):
        return attention_map_numbers(run.ensemble, run.tokens, scores=run.exact["scores"])
