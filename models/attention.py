"""Self-attention with three variants of the weighting: soft, saturated and hard.

Given scores s_ij (query i, key j) and a boolean mask of the keys each query may see:

    soft        softmax over the allowed keys. Disallowed keys' scores are replaced by -inf before the softmax, so
                their weight is exactly 0 at any scale, whatever their score was.
    saturated   the c -> inf limit of softmax(c * s): uniform weight over
                M_i = {j allowed : s_ij >= m_i - tol * max(1, |m_i|)}, m_i = max over allowed k of s_ik,
                0 elsewhere. The tolerance is relative to the row's scale, so it absorbs fp32 rounding at any scale
                of the scores: scores equal in exact arithmetic tie, and padding never changes which keys tie.
    hard        unique hard attention: all weight on the leftmost position of M_i, i.e. the leftmost argmax, with ties
                decided by the same tolerance as `saturated`.

The exact variants have zero gradient with respect to the scores, so training them needs a surrogate:

    ste         straight-through: the forward pass uses the exact weights, the backward pass the gradient of softmax(s).
    anneal      softmax(beta * s) while training, with the inverse temperature beta raised from 1 to `anneal_max` over
                training (see `annealed_inverse_temperature`); exact weights at evaluation.
    tolerant    straight-through, with the exact variants' tie tolerance raised to `tolerant_tol` (relative, 0.1 by
                default) in training and evaluation alike. With tol = 1e-5 two keys tie only when their scores are
                equal to the last bits, which gradient descent reaches only for identical keys; with 0.1 scores within
                10% of the row's maximum tie, so a trained head can average keys that carry different values, which
                is what lets saturated attention count. It changes the model class: "saturated" then means uniform
                attention over the keys within 10% of the best.

A layer reads four knobs that are not parameters (so they are in no state_dict): `inverse_temperature` (anneal), and
`logit_scale`, `exact_override` and `tol_override`, which `models.saturation` sets for its scale sweeps.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import linear

VARIANTS = ("soft", "saturated", "hard")
SURROGATES = ("ste", "anneal", "tolerant")


def open_empty_rows(allowed: torch.Tensor) -> torch.Tensor:
    """`allowed` with every row that allows no key opened to all keys.

    Only the queries of an all-padding string allow no key. Left empty, such a row gives softmax(-inf, ..., -inf) = NaN,
    and a NaN in the forward pass poisons the gradients of the whole batch; opened, it gives finite outputs that are
    never read. Cheap: it works on the boolean mask, which has no head axis.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def mask_scores(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The scores with -inf on disallowed keys: what every weighting below reads.

    Filled, never added: a disallowed key's score is replaced whatever it was, so a +inf or NaN there (an overflow at
    a large scale, a future token) cannot leak into the row's maximum or softmax. Adding a -inf mask would turn +inf
    into NaN and poison the row.
    """
    return scores.masked_fill(~allowed, float("-inf"))


def tie_floor(masked: torch.Tensor, tol: float) -> torch.Tensor:
    """The lowest score that still ties with its row's maximum: max - tol * max(1, |max|).

    The tolerance is relative to the row's scale (absolute below 1), so it holds a tie wherever fp32 rounding can break
    one: under saturate(model, 1000) scores reach ~1e11, where one fp32 step is ~1e4 and an absolute 1e-5 ties
    nothing, and which keys tie would then depend on the shape of the matmul (padding). An infinite maximum (an
    overflow) is its own floor.
    """
    top = masked.amax(dim=-1, keepdim=True)
    return torch.where(top.isinf(), top, top - tol * top.abs().clamp(min=1.0))


def top_set(masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean mask of {j allowed : m_j >= tie_floor(m, tol)} on masked scores, compared in fp32 or wider.
    Intersected with `allowed` explicitly: when every allowed score is -inf the floor is -inf and every key passes the
    comparison; when a score is NaN the floor is NaN, no key passes, and the set is empty."""
    if masked.dtype not in (torch.float32, torch.float64):
        masked = masked.float()
    return allowed & (masked >= tie_floor(masked, tol))


def weights_from_masked(variant: str, masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """`variant`'s weights from masked scores (see `mask_scores`) and the mask they were masked with.

    The attention layer masks once and derives both the exact weights and, for the straight-through surrogate, the
    softmax from the same tensor. Disallowed keys get exactly 0; a row whose set is empty (NaN scores) is 0 under the
    exact variants.
    """
    if variant == "soft":
        return masked.softmax(dim=-1)
    in_set = top_set(masked, allowed, tol)
    if variant == "saturated":
        in_set = in_set.to(masked.dtype)
        return in_set / in_set.sum(dim=-1, keepdim=True).clamp(min=1.0)
    if variant == "hard":
        # argmax returns the first maximal index, i.e. the leftmost member of the set.
        leftmost = in_set.to(masked.dtype).argmax(dim=-1, keepdim=True)
        picked = torch.arange(masked.shape[-1], device=masked.device) == leftmost
        return (picked & in_set.any(dim=-1, keepdim=True)).to(masked.dtype)
    raise ValueError(f"attention variant: {variant!r} is not one of {', '.join(VARIANTS)}")


def soft_weights(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax over the allowed keys; disallowed keys get weight exactly 0. `allowed` broadcasts against `scores`; a row
    that allows no key is treated as allowing every key (see `open_empty_rows`)."""
    opened = open_empty_rows(allowed)
    return weights_from_masked("soft", mask_scores(scores, opened), opened, 0.0)


def saturated_set(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean mask of M = {j allowed : s_j >= max over allowed s - tol}, computed in fp32 or wider; empty for a row
    that allows no key."""
    return top_set(mask_scores(scores, allowed), allowed, tol)


def saturated_weights(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Uniform weight over the saturated set M (see `saturated_set`), 0 elsewhere; a row with no allowed key is 0
    (the Recognizer opens such rows first, see `open_empty_rows`)."""
    return weights_from_masked("saturated", mask_scores(scores, allowed), allowed, tol)


def hard_weights(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """All weight on the leftmost position of the saturated set M: the leftmost argmax, ties decided within `tol`; a
    row with no allowed key is 0."""
    return weights_from_masked("hard", mask_scores(scores, allowed), allowed, tol)


def straight_through(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Forward value `exact`, gradient that of `surrogate`.

    Where `exact` is 0 (disallowed keys, keys outside M) the value is exactly 0, since x + (0 - x) == 0 in floating
    point; elsewhere it equals `exact` up to one rounding.
    """
    return surrogate + (exact - surrogate).detach()


def annealed_inverse_temperature(progress: float, final: float) -> float:
    """Inverse temperature for the `anneal` surrogate at `progress` in [0, 1] of training: 1 at the start, `final` at
    the end, growing geometrically (final ** progress): equal stretches of training multiply it by equal factors.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return float(final) ** progress


class SelfAttention(nn.Module):
    """Multi-head self-attention whose weighting is one of VARIANTS.

    forward(x, allowed, need_weights) -> (output, internals or None) for x (M, B, T, d) (M members, see
    models/recognizer.py), where `allowed` (broadcastable to (M * B, 1, T, T): the members are folded into the batch)
    is True where query i may attend to key j, and every query may attend to some key (the Recognizer opens the rows
    of all-padding strings, see `open_empty_rows`). With need_weights the internals are the weights used ("attn"), the
    scores at c = 1 ("scores", -inf on disallowed keys) and the values ("values"), each (M * B, H, T, .). In training,
    when no weights are requested and the weighting is a softmax at c = 1, the fused scaled_dot_product_attention
    kernel computes the same thing without materialising the (T, T) weights.
    """

    def __init__(self, config):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.variant = config.attention
        self.surrogate = config.surrogate
        # The exact variants' tie tolerance; `tolerant` training raises it for training and evaluation alike.
        self.tol = config.tolerant_tol if config.surrogate == "tolerant" and config.attention != "soft" else config.tol
        self.causal = config.causal
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        # Knobs, not parameters: set through Recognizer.set_inverse_temperature and models.saturation.
        self.inverse_temperature = 1.0  # beta of the anneal surrogate while training
        self.logit_scale = 1.0  # scale_attention(model, c): scores *= c
        self.exact_override: str | None = None  # saturated_limit(model): evaluate this exact variant instead
        self.tol_override: float | None = None  # saturated_limit(model, tol): ... with this tie tolerance
        # Devices on which a training pass of softmax attention uses the fused scaled_dot_product_attention kernel
        # instead of materialising the (T, T) weights; () forces the explicit path (the tests' reference).
        self.fused_devices: tuple[str, ...] = ("cpu", "cuda")

    def _mode(self) -> tuple[str, float]:
        """What this forward pass computes: ('softmax', beta), ('exact', 0) or ('ste', 0)."""
        if self.exact_override is not None:
            return "exact", 0.0
        if self.variant == "soft":
            return "softmax", 1.0
        if not self.training:
            return "exact", 0.0
        if self.surrogate == "anneal":
            return "softmax", float(self.inverse_temperature)
        return "ste", 0.0  # ste and tolerant

    def tie_tolerance(self) -> float:
        return self.tol if self.tol_override is None else self.tol_override

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False):
        M, B, T, C = x.shape
        q, k, v = linear(self.qkv, x).flatten(0, 1).split(C, dim=2)  # (M * B, T, C): members folded into the batch
        q, k, v = (t.view(M * B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (MB, H, T, hd)
        mode, beta = self._mode()
        sharpen = beta * self.logit_scale  # softmax(sharpen * s): the anneal surrogate's beta times the sweep's c

        # Fused in training only: evaluation keeps the explicit path, whose softmax of equal scores is exactly uniform,
        # so that a construction's logits at c = 1 equal those of its saturated limit bit for bit; a sweep's c could
        # also overflow the fused kernel.
        fusable = self.training and mode == "softmax" and self.logit_scale == 1.0 and not need_weights
        if fusable and q.device.type in self.fused_devices:
            # A causal model's padding trails the string, so causality alone keeps real queries off padded keys; the
            # outputs at padded queries differ from the explicit path but are never read.
            mask = None if self.causal else allowed
            scale = beta / math.sqrt(self.head_dim)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal, scale=scale)
            weights = None
        else:
            # Scaling q rather than the scores touches hd values per position instead of T.
            scores = (q * (1 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, H, T, T)
            masked = mask_scores(scores, allowed)  # once: the exact weights and the surrogate both read it
            if mode == "softmax" and sharpen != 1.0:
                # softmax(c * s) = softmax(c * (s - max s)): the shifted scores are <= 0, so no c overflows them to
                # +inf, and at a c large enough every key below the maximum gets exactly 0 (the numerical limit).
                # The shift has no gradient to give: softmax does not see it.
                masked = (masked - masked.amax(dim=-1, keepdim=True).detach()) * sharpen
            # The exact weights ignore the sweep's c: they are its limit already, and their relative tie tolerance
            # makes them invariant to scaling the scores (apart from the absolute floor below |max| = 1).
            tol = self.tie_tolerance()
            if mode == "softmax":
                weights = weights_from_masked("soft", masked, allowed, tol)
            elif mode == "exact":
                weights = weights_from_masked(self.exact_override or self.variant, masked, allowed, tol)
            else:
                weights = straight_through(weights_from_masked(self.variant, masked, allowed, tol),
                                           weights_from_masked("soft", masked, allowed, tol))
            y = weights @ v

        y = linear(self.proj, y.transpose(1, 2).reshape(M, B, T, C))
        if not need_weights:
            return y, None
        # What the tie probes read: the weights used, the scores at c = 1 (-inf on disallowed keys) and the values.
        return y, {"attn": weights, "scores": mask_scores(scores, allowed), "values": v}
