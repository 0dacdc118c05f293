"""Saturation: how close a network already is to its c -> inf limit.

Merrill et al. (2021) measure saturation as the cosine similarity between the representations of f(x; theta) and
f(x; c * theta) for a large c (1000): near 1 means scaling the parameters up changes the direction of nothing, i.e.
the attention already behaves as saturated attention. The other measures ask the same question in ways that can
move over training, on the probe strings (`limit_over_training`, logged at every logged step; the last step's numbers
are the trained member's):

    kappa_limit             Cohen's kappa between the decisions at c = 1 and at the exact saturated limit: agreement
                            beyond chance. Raw agreement cannot move: at initialisation both are constant classifiers
                            (agreement 1), and a limit that stays constant agrees with an accurate model on just
                            the share of strings that carry its one label. NaN where both decide constantly and alike
    balanced_acc_probe      mean of the true-positive and true-negative rates at c = 1, and at the limit; a constant
    balanced_acc_limit      classifier scores 0.5, whatever the balance of the labels
    acc_limit_layer{l}      accuracy with layer l alone saturated, the others at c = 1: whose saturation costs what
    tv_limit_layer{l}       distance to saturation: mean over real queries and heads of the total-variation distance
                            between layer l's weights as trained and the saturated weights of the same scores (its own
                            inputs, its own tie tolerance); it falls to 0 as softmax concentrates on the tied maximum
    tv_limit                the mean of tv_limit_layer{l} over layers
    acc_uniform             accuracy with every layer attending uniformly (the c -> 0 control)
    split_share, value_distinct_share, value_distinct_share_layer{l}
                            the limit's ties (probes/ties.py): the share of queries that split, pooled over layers,
                            and of those the share whose tied keys carry different values, pooled and per layer

Kappa and balanced accuracy compare membership decisions; a next-symbol task has many decisions per string and they
are NaN there. An exact-variant model is its own limit: its TV distance is 0 for saturated attention, and for hard
attention the distance of one key from the uniform average over a tie (1 - 1/|M| on a query that ties |M| keys).

(models/saturation.py holds the operations that push a model towards saturation; this file measures how far it is.)
"""

import math

import torch

from satbench.models import (
    PAD,
    attention_layers,
    eval_mode,
    saturate,
    saturated_limit,
    saturated_weights,
    uniform_attention,
)
from satbench.models.objectives import judge_strings

from .heads import query_mask_for
from .registry import Probe, register
from .report_section import ProbeReport, Table
from .ties import member_pooled_shares


@torch.no_grad()
def _forward(model, tokens: torch.Tensor) -> dict:
    return model(tokens, internals=True)


def saturation_similarity(model, tokens: torch.Tensor, c: float = 1000.0) -> dict[str, float]:
    """Per layer, cosine similarity between the hidden states of f(x; theta) and f(x; c * theta), averaged over the
    real positions (tokens != PAD, BOS included) of all strings.

    Returns {"sim_layer0": ..., ..., "sim_layer{L}": ..., "sim_mean": mean over layers 1..L}. Layer 0 is the residual
    stream after the embedding; its similarity is 1 when the positional encoding scales with the parameters and below
    1 when it is fixed (sinusoidal), so it is left out of sim_mean. The cosine is computed in float64 on states that
    are normalised first, because the scaled states can be large enough to overflow a float32 dot product; a state
    that is not finite gives NaN for its layer.
    """
    h1, hc = _hidden_pair(model, tokens, c)
    return _similarity(h1, hc, tokens != PAD)


def member_saturation_similarity(ensemble, tokens: torch.Tensor, c: float = 1000.0) -> list[dict[str, float]]:
    """`saturation_similarity` of every member of a stacked models.Ensemble in one pass: a list of M dicts, member i's
    equal to saturation_similarity(ensemble.member(i), member i's tokens). tokens: (B, T) shared by all members or
    (M, B, T), one batch per member (members may be trained on different languages)."""
    h1, hc = _hidden_pair(ensemble, tokens, c)  # (M, L + 1, B, T, d)
    real = (tokens != PAD).expand(h1.shape[0], *tokens.shape[-2:])
    return _similarity(h1, hc, real)


def _hidden_pair(model, tokens: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of f(x; theta) and f(x; c * theta), exact forward."""
    with eval_mode(model):
        h1 = _forward(model, tokens)["hidden"]
        with saturate(model, c):
            hc = _forward(model, tokens)["hidden"]
    return h1, hc


def _similarity(h1: torch.Tensor, hc: torch.Tensor, real: torch.Tensor) -> dict[str, float] | list[dict[str, float]]:
    """h1, hc: (L + 1, B, T, d); real: (B, T) bool. See `saturation_similarity` for the keys. With a member axis in
    front of all three, one dict per member, read back from the device in one go."""
    if h1.dim() == 4:
        return _similarity(h1[None], hc[None], real[None])[0]
    real = real.to(h1.device)[:, None]  # (M, 1, B, T)
    h1, hc = h1.double(), hc.double()
    u = h1 / h1.norm(dim=-1, keepdim=True)
    v = hc / hc.norm(dim=-1, keepdim=True)
    cos = (u * v).sum(-1)  # (M, L + 1, B, T); NaN where a state is zero or not finite
    # The mean over real positions; a NaN there makes it NaN, one at a padded position does not count.
    means = torch.where(real, cos, 0.0).sum(dim=(-2, -1)) / real.sum(dim=(-2, -1))  # (M, L + 1)
    out = []
    for layers in means.tolist():
        member = {f"sim_layer{layer}": value for layer, value in enumerate(layers)}
        deep = layers[1:]
        member["sim_mean"] = float(sum(deep) / len(deep)) if deep else float("nan")
        out.append(member)
    return out


def decisions(model, tokens: torch.Tensor, limit: bool = False) -> torch.Tensor:
    """(B,) bool accept decisions, logit > 0, of the exact forward; with limit=True at the saturated limit."""
    with eval_mode(model):
        if limit:
            with saturated_limit(model):
                logit = _forward(model, tokens)["logit"]
        else:
            logit = _forward(model, tokens)["logit"]
    return logit > 0


def cohen_kappa(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(M,) Cohen's kappa of two boolean decisions a, b (M, n) over the rows where `real` (M, n) is True: the observed
    agreement p_o beyond the p_e that two independent classifiers accepting as often would reach by chance,
    (p_o - p_e) / (1 - p_e). 1: alike beyond chance; 0: no more alike than chance. NaN where p_e = 1 (both
    classifiers constant and identical, where no agreement can be beyond chance) or where no row is real."""
    real = real.double()
    n = real.sum(-1)
    p_o = ((a == b).double() * real).sum(-1) / n
    p_a, p_b = (a.double() * real).sum(-1) / n, (b.double() * real).sum(-1) / n
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    return torch.where(p_e < 1, (p_o - p_e) / (1 - p_e), math.nan)


def balanced_accuracy(decided: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(M,) mean of the true-positive and true-negative rates of boolean decisions (M, n) against membership labels
    (M, n) (1 member, 0 not, -1 a padding row left out). On labels of both classes a constant classifier scores 0.5
    however unbalanced they are. A class the labels lack is left out of the mean, as in
    sklearn.metrics.balanced_accuracy_score; NaN where no row is real."""
    positive, negative = labels == 1, labels == 0
    hit = (decided & positive).sum(-1).double() / positive.sum(-1)  # NaN (0 / 0) without positives
    rejected = (~decided & negative).sum(-1).double() / negative.sum(-1)
    return torch.stack([hit, rejected]).nanmean(0)


def decision_kappa(model, tokens: torch.Tensor) -> float:
    """Cohen's kappa (`cohen_kappa`) between the model's decisions on `tokens` (B, T) at c = 1 and at the saturated
    limit (c = inf)."""
    alike = cohen_kappa(decisions(model, tokens)[None], decisions(model, tokens, limit=True)[None],
                        torch.ones(1, len(tokens), dtype=torch.bool))
    return float(alike[0])


def distance_to_saturation(attn: torch.Tensor, scores: torch.Tensor, queries: torch.Tensor,
                           tols: list[float]) -> torch.Tensor:
    """(M, L) per layer, the mean over the `queries` (M, B, T) and every head of the total-variation distance
    0.5 * sum_j |a_ij - sat_ij| between the weights `attn` a layer used and the saturated weights of the same `scores`
    (both (M, L, B, H, T, T), as the exact forward's internals give them: scores at c = 1, -inf on the keys a query
    may not see), each layer with its own tie tolerance `tols[l]`. NaN for a member without queries."""
    heads = attn.shape[3]
    asked = queries.sum(dim=(-2, -1)).double() * heads  # (M,)
    where = queries[:, :, None, :]  # (M, B, 1, T): over heads
    out = []
    for layer, tol in enumerate(tols):  # one layer at a time: the saturated weights are as large as the attention
        layer_scores = scores[:, layer]
        limit = saturated_weights(layer_scores, layer_scores > float("-inf"), tol)
        distance = 0.5 * (attn[:, layer].float() - limit).abs().sum(-1)  # (M, B, H, T)
        # torch.where, not a product: a padded query's row may hold anything, and NaN * 0 is NaN.
        out.append(torch.where(where, distance, 0.0).sum(dim=(1, 2, 3), dtype=torch.float64) / asked)
    return torch.stack(out, dim=1)


@torch.no_grad()
def limit_over_training(ensemble, tokens: torch.Tensor, labels: torch.Tensor,
                        next_labels: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Per member, on its probe strings (tokens (M, n, T), labels (M, n) with -1 on padding rows, next-symbol targets
    or None): accuracy as it is (`acc_probe`), at the saturated limit (`acc_limit`), with only layer l saturated
    (`acc_limit_layer{l}`) and with uniform attention (`acc_uniform`); agreement beyond chance with the limit
    (`kappa_limit`) and balanced accuracy as it is and at the limit (`balanced_acc_probe`, `balanced_acc_limit`),
    membership only, NaN for next-symbol targets; the distance to saturation (`tv_limit_layer{l}`, `tv_limit`); and
    the limit's tie shares (`split_share`, `value_distinct_share`, pooled over layers, and
    `value_distinct_share_layer{l}`; see probes/ties.py): what the norm-growth and weight-decay studies follow through
    training. See the module docstring for each."""
    membership = next_labels is None
    layers = attention_layers(ensemble)
    real = labels >= 0  # (M, n)
    targets = labels.clamp(min=0)

    def accuracy(out):
        return (judge_strings(out, targets, next_labels)[0] & real).sum(1) / real.sum(1)

    columns = {}
    with eval_mode(ensemble):
        exact = ensemble(tokens, internals=True)
        with saturated_limit(ensemble):
            limit = ensemble(tokens, internals=True)
        columns["acc_probe"], columns["acc_limit"] = accuracy(exact), accuracy(limit)
        for layer in range(len(layers)):
            if len(layers) == 1:  # the one layer alone saturated is the limit itself
                columns["acc_limit_layer0"] = columns["acc_limit"]
                break
            with saturated_limit(ensemble, layers=[layer]):
                columns[f"acc_limit_layer{layer}"] = accuracy(ensemble(tokens, logit_only=membership))
        with uniform_attention(ensemble):
            columns["acc_uniform"] = accuracy(ensemble(tokens, logit_only=membership))
    if membership:
        said, said_at_limit = exact["logit"] > 0, limit["logit"] > 0
        columns["kappa_limit"] = cohen_kappa(said, said_at_limit, real)
        columns["balanced_acc_probe"] = balanced_accuracy(said, labels)
        columns["balanced_acc_limit"] = balanced_accuracy(said_at_limit, labels)
    else:
        for key in ("kappa_limit", "balanced_acc_probe", "balanced_acc_limit"):
            columns[key] = torch.full((len(tokens),), math.nan)
    queries = query_mask_for(ensemble, tokens) & real[..., None]  # (M, n, T)
    distances = distance_to_saturation(exact["attn"], exact["scores"], queries, [layer.tol for layer in layers])
    columns.update({f"tv_limit_layer{layer}": distances[:, layer] for layer in range(len(layers))})
    columns["tv_limit"] = distances.mean(dim=1)
    ties = member_pooled_shares(limit["attn"], limit["values"], queries)
    values = torch.stack([column.double().cpu() for column in columns.values()], dim=1)  # one read-back for all
    return [dict(zip(columns, member, strict=True)) | member_ties
            for member, member_ties in zip(values.tolist(), ties, strict=True)]


# What the probe reports for the trained member: the last logged step's numbers (taken after the last update).
FINAL_KEYS = ("acc_probe", "acc_limit", "acc_uniform", "balanced_acc_probe", "balanced_acc_limit", "tv_limit")
FINAL_PREFIXES = ("sim_", "acc_limit_layer", "tv_limit_layer", "value_distinct_share_layer")


@register
class Saturation(Probe):
    """At every logged step (the last one is the trained member's): saturation similarity per layer, and on the probe
    strings the measures of `limit_over_training`. After training: the trained member's numbers, the kappa with the
    limit as `decision_kappa`."""

    name = "saturation"
    needs_attention = True
    report = ProbeReport(
        title="Saturation",
        text="Per language and variant, mean±std over seeds, on the probe strings of the trained members. "
             "`sim_mean`: cosine between the hidden states at c=1 and with every parameter multiplied by 1000, mean "
             "over layers. `decision_kappa`: Cohen's kappa between the decisions at c=1 and at the saturated limit, "
             "agreement beyond chance (1 alike, 0 no more alike than chance, — where both decide constantly and "
             "alike). `balanced_acc_limit`: mean of the true-positive and true-negative rates at the limit, 0.5 for "
             "a constant classifier. `acc_limit_layer{l}`: accuracy with layer l alone saturated, the others as "
             "trained. `tv_limit_layer{l}`: distance to saturation, the mean over queries and heads of the "
             "total-variation distance between layer l's attention weights as trained and the saturated weights of "
             "the same scores; 0 when the layer already attends like its limit. Kappa and balanced accuracy are for "
             "membership labels only.",
        columns=["sim_mean", "decision_kappa", "balanced_acc_limit", "acc_limit_layer*", "tv_limit_layer*"],
        tables=[Table(["sim_mean", "decision_kappa", "tv_limit"], rows="field")],
        renderers=["limit_over_training", "saturation_over_training"])

    def during_training(self, step, ensemble):
        similarity = member_saturation_similarity(ensemble, self.run.tokens)
        limit = limit_over_training(ensemble, self.run.tokens, self.run.labels, self.run.next_labels)
        return [a | b for a, b in zip(similarity, limit, strict=True)]

    def measure(self, run):
        out = []
        for log in run.logs:
            last = log[-1]
            member = {k: v for k, v in last.items() if k.startswith(FINAL_PREFIXES) or k in FINAL_KEYS}
            member["decision_kappa"] = last["kappa_limit"]
            out.append(member)
        return out
