"""Saturation: how close a network already is to its c -> inf limit.

Merrill et al. (2021) measure saturation as the cosine similarity between the representations of f(x; theta) and
f(x; c * theta) for a large c (1000): near 1 means scaling the parameters up changes the direction of nothing, i.e.
the attention already behaves as saturated attention. Decision agreement asks the same question of the output: does
the classifier decide the same at c = 1 and at the exact saturated limit?

(models/saturation.py holds the operations that push a model towards saturation; this file measures how far it is.)
"""

import torch

from satbench.models import PAD, eval_mode, saturate, saturated_limit
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


def decision_agreement(model, tokens: torch.Tensor) -> float:
    """Share of strings on which the model decides the same at c = 1 and at the saturated limit (c = inf), in [0, 1]."""
    same = decisions(model, tokens) == decisions(model, tokens, limit=True)
    return float(same.float().mean())


def decided_alike(a: dict, b: dict, next_labels: torch.Tensor | None = None) -> torch.Tensor:
    """(M, B) bool: two forward passes take the same decision about each string (the sign of its membership logit;
    with next-symbol targets, the sign of every scored bit of every prefix)."""
    if next_labels is None:
        return (a["logit"] > 0) == (b["logit"] > 0)
    scored = next_labels[..., :a["next_logits"].shape[-2], :] >= 0
    same = (a["next_logits"] > 0) == (b["next_logits"] > 0)
    return (same | ~scored).all(dim=-1).all(dim=-1)


@torch.no_grad()
def limit_over_training(ensemble, tokens: torch.Tensor, labels: torch.Tensor,
                        next_labels: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Per member, on its probe strings (tokens (M, n, T), labels (M, n) with -1 on padding rows, next-symbol targets
    or None): accuracy as it is (`acc_probe`) and at the saturated limit (`acc_limit`), the share of strings decided
    alike by both (`agree_limit`), and the limit's tie shares (`split_share`, `value_distinct_share`, pooled over
    layers; see probes/ties.py): what the norm-growth study follows through training."""
    with eval_mode(ensemble):
        exact = ensemble(tokens, logit_only=next_labels is None)  # membership: the logit alone (judge, agreement)
        with saturated_limit(ensemble):
            limit = ensemble(tokens, internals=True)
    real = labels >= 0  # (M, n)
    rates = torch.stack([(judge_strings(exact, labels.clamp(min=0), next_labels)[0] & real).sum(1),
                         (judge_strings(limit, labels.clamp(min=0), next_labels)[0] & real).sum(1),
                         (decided_alike(exact, limit, next_labels) & real).sum(1)]) / real.sum(1)
    queries = query_mask_for(ensemble, tokens) & real[..., None]  # (M, n, T)
    ties = member_pooled_shares(limit["attn"], limit["values"], queries)
    return [{"acc_probe": a, "acc_limit": b, "agree_limit": c} | member_ties
            for (a, b, c), member_ties in zip(rates.T.tolist(), ties, strict=True)]


@register
class Saturation(Probe):
    """At every logged step (the last one is the trained member's): saturation similarity per layer, and the probe
    strings' accuracy as is and at the saturated limit, their agreement, and the limit's tie shares
    (`limit_over_training`). After training: decision agreement between c = 1 and the saturated limit."""

    name = "saturation"
    report = ProbeReport(
        title="Saturation",
        text="Per language and variant, mean±std over seeds. `sim_mean`: cosine between the hidden states at c=1 and "
             "with every parameter multiplied by 1000, mean over layers; `decision_agreement`: share of probe strings "
             "decided alike at c=1 and at the saturated limit.",
        columns=["sim_mean", "decision_agreement"],
        tables=[Table(["sim_mean"], rows="field")],
        renderers=["limit_over_training", "saturation_over_training"])

    def during_training(self, step, ensemble):
        similarity = member_saturation_similarity(ensemble, self.run.tokens)
        limit = limit_over_training(ensemble, self.run.tokens, self.run.labels, self.run.next_labels)
        return [a | b for a, b in zip(similarity, limit, strict=True)]

    def measure(self, run):
        out = []
        alike = decided_alike(run.exact, run.limit, run.next_labels)
        for i, (log, strings) in enumerate(zip(run.logs, run.strings)):
            agree = alike[i, :len(strings.strings)]
            member = {k: v for k, v in log[-1].items() if k.startswith("sim_")}
            member["decision_agreement"] = agree.float().mean().item()
            out.append(member)
        return out
