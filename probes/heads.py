"""Attention heads under saturation: how many positions each query attends to.

Under saturated attention a query puts uniform weight on the positions that tie for its maximum score. A head whose
queries almost always have a single maximum acts like hard (argmax) attention; one whose queries spread over several
positions computes averages, which is what counter languages need. Merrill et al. (2021)
plot a histogram of the number of positions attended over all heads; `attended_counts` gives its raw data.
"""

import numpy as np
import torch

from satbench.models import PAD, eval_mode, saturated_limit

from .registry import Probe, register
from .report_section import ProbeReport, Table

ATTENDED_THRESHOLD = 1e-5  # a weight above this counts as attended (ARCHITECTURE.md, "Words": positions attended)
ARGMAX_SPLIT_SHARE = 0.5  # a head is argmax-like when fewer than this share of its queries split attention


def positions_attended(attn, query_mask=None, key_mask=None, threshold: float = ATTENDED_THRESHOLD) -> np.ndarray:
    """Number of keys with weight > threshold, per query.

    attn:       (..., B, H, Tq, Tk) attention weights, e.g. the model's (L, B, H, T, T) or one layer's (B, H, T, T).
    query_mask: (B, Tq) bool, True at real queries; None = all real.
    key_mask:   (B, Tk) bool, True at real keys; defaults to query_mask when Tq == Tk (self-attention), else all real.
                Weight on a padded key is not counted: it is a masking bug, not a position attended.
    Returns an int64 array of shape attn.shape[:-1]. Padded queries get 0; a real query always has at least one
    attended key (its weights sum to 1 over at most 1/threshold keys), so 0 is unambiguous.
    """
    attn = torch.as_tensor(attn).detach()
    above = attn > threshold
    if key_mask is None and query_mask is not None and attn.shape[-1] == attn.shape[-2]:
        key_mask = query_mask
    if key_mask is not None:
        above = above & torch.as_tensor(key_mask, dtype=torch.bool, device=attn.device)[:, None, None, :]
    counts = above.sum(-1)
    if query_mask is not None:
        counts = counts * torch.as_tensor(query_mask, dtype=torch.bool, device=attn.device)[:, None, :]
    return counts.cpu().numpy().astype(np.int64)


def _is_causal(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "causal", False))


def query_mask_for(model, tokens: torch.Tensor) -> torch.Tensor:
    """For tokens (..., T): the queries whose attention is informative: real positions, minus column 0 (BOS) in a
    causal model, where the BOS query can see only itself and would count as a one-position query by construction."""
    mask = tokens != PAD
    if _is_causal(model):
        mask = mask.clone()
        mask[..., 0] = False
    return mask


@torch.no_grad()
def saturated_attention(model, tokens: torch.Tensor) -> torch.Tensor:
    """(L, B, H, T, T) attention weights of the model evaluated at the saturated limit (c = inf)."""
    with eval_mode(model), saturated_limit(model):
        return model(tokens, internals=True)["attn"].float()


def head_statistics(model, tokens: torch.Tensor, attn: torch.Tensor | None = None) -> dict[str, float]:
    """Per-head statistics of positions attended at the saturated limit, over the real queries of `tokens`.

    Keys, for layer l and head h:
      l{l}h{h}_attended_mean, l{l}h{h}_attended_std   mean and std of the number of positions attended
      l{l}h{h}_split_share                            share of queries attending to more than one position
      l{l}h{h}_argmax_like                            1.0 if the head is argmax-like, 0.0 if mean-like
    and over all heads: attended_mean, split_share (pooled over queries), argmax_like_share (share of heads).

    Class rule: argmax-like when split_share < 0.5, i.e. most queries put all their weight on one position; else
    mean-like. A vote over queries does not depend on string length, unlike a threshold on the mean count
    (an averaging head's count grows with the length), and a head that splits on most queries is averaging in the
    typical case, which is the behaviour the counting constructions rely on. Queries are those of `query_mask_for`.
    `attn`: the saturated-limit weights when already computed (e.g. for a whole ensemble in one pass).
    """
    attn = saturated_attention(model, tokens) if attn is None else attn
    qmask = query_mask_for(model, tokens)
    counts = positions_attended(attn, qmask, tokens != PAD)  # (L, B, H, T)
    valid = qmask.cpu().numpy()  # (B, T)
    n_layers, _, n_heads, _ = counts.shape
    out: dict[str, float] = {}
    pooled, classes = [], []
    for layer in range(n_layers):
        for head in range(n_heads):
            c = counts[layer, :, head][valid].astype(np.float64)
            key = f"l{layer}h{head}"
            if c.size == 0:
                out.update({f"{key}_attended_mean": np.nan, f"{key}_attended_std": np.nan})
                out.update({f"{key}_split_share": np.nan, f"{key}_argmax_like": np.nan})
                continue
            split = float(np.mean(c > 1))
            out[f"{key}_attended_mean"] = float(c.mean())
            out[f"{key}_attended_std"] = float(c.std())
            out[f"{key}_split_share"] = split
            out[f"{key}_argmax_like"] = float(split < ARGMAX_SPLIT_SHARE)
            pooled.append(c)
            classes.append(split < ARGMAX_SPLIT_SHARE)
    allc = np.concatenate(pooled) if pooled else np.zeros(0)
    out["attended_mean"] = float(allc.mean()) if allc.size else np.nan
    out["split_share"] = float(np.mean(allc > 1)) if allc.size else np.nan
    out["argmax_like_share"] = float(np.mean(classes)) if classes else np.nan
    return out


def attended_counts(model, tokens: torch.Tensor, attn: torch.Tensor | None = None) -> np.ndarray:
    """Positions attended by every real query of every head at the saturated limit, as one flat int64 array (the raw
    data of the histogram over all heads of a run). Same queries and `attn` as `head_statistics`."""
    attn = saturated_attention(model, tokens) if attn is None else attn
    qmask = query_mask_for(model, tokens)
    counts = positions_attended(attn, qmask, tokens != PAD)  # (L, B, H, T)
    valid = qmask.cpu().numpy()[None, :, None, :]
    return counts[np.broadcast_to(valid, counts.shape)]


@register
class Heads(Probe):
    """Positions attended per head at the saturated limit, and their histogram over all heads."""

    name = "heads"
    needs_attention = True
    report = ProbeReport(
        title="Attention heads under saturation",
        text="Positions attended per query at the saturated limit (weight > 1e-5). A head is argmax-like when fewer "
             "than half of its queries split their attention over more than one position, mean-like otherwise.",
        tables=[Table(["attended_mean", "split_share", "argmax_like_share"], rows="variant")],
        renderers=["head_histogram"])

    def measure(self, run):
        out = []
        for i, strings in enumerate(run.strings):
            n = len(strings.strings)
            tokens, attn = run.tokens[i, :n], run.limit["attn"][i][:, :n]
            member = head_statistics(run.ensemble, tokens, attn=attn)
            counts = np.bincount(attended_counts(run.ensemble, tokens, attn=attn))
            member["attended_histogram"] = {int(k): int(v) for k, v in enumerate(counts) if v}
            out.append(member)
        return out
