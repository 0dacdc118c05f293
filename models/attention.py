"""Self-attention with three variants of the weighting: soft, saturated and hard.

Given scores s_ij (query i, key j) and a boolean mask of the keys each query may see:

    soft        softmax over the allowed keys. Disallowed keys get -inf before the softmax, so their weight is
                exactly 0 at any scale; multiplying scores by a 0/1 mask instead would let a saturated model attend to
                the future.
    saturated   the c -> inf limit of softmax(c * s): uniform weight over
                M_i = {j allowed : s_ij >= max over allowed k of s_ik - tol}, 0 elsewhere. The tolerance absorbs fp32
                rounding, so scores that are equal in exact arithmetic tie.
    hard        unique hard attention: all weight on the leftmost position of M_i, i.e. the leftmost argmax, with ties
                decided by the same tolerance as `saturated`.

The exact variants have zero gradient with respect to the scores, so training them needs a surrogate:

    ste         straight-through: the forward pass uses the exact weights, the backward pass the gradient of softmax(s).
    anneal      softmax(beta * s) while training, with the inverse temperature beta raised from 1 to `anneal_max` over
                training (see `annealed_inverse_temperature`); exact weights at evaluation.

A layer reads three knobs that are not parameters (so they are in no state_dict): `inverse_temperature` (anneal), and
`logit_scale` and `exact_override`, which `models.saturation` sets for its scale sweeps.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("soft", "saturated", "hard")
SURROGATES = ("ste", "anneal")


def open_empty_rows(allowed: torch.Tensor) -> torch.Tensor:
    """`allowed` with every row that allows no key opened to all keys.

    Only the queries of an all-padding string allow no key. Left empty, such a row gives softmax(-inf, ..., -inf) = NaN,
    and a NaN in the forward pass poisons the gradients of the whole batch; opened, it gives finite outputs that are
    never read. Cheap: it works on the boolean mask, which has no head axis.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where `allowed`, -inf elsewhere: added to the scores, it takes disallowed keys out of any softmax or maximum.

    Adding the mask is one pass over the scores, and its gradient passes through unchanged; `masked_fill` would copy
    the scores first and mask the gradient again on the way back.
    """
    return torch.zeros_like(allowed, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def mask_scores(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The scores with -inf on disallowed keys: what every weighting below reads. Adding 0 or -inf rounds nothing, so
    the masked scores equal the scores wherever a key is allowed, in any dtype."""
    return scores + additive_mask(allowed, scores.dtype)


def top_set(masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean mask of {j allowed : m_j >= max_k m_k - tol} on masked scores, compared in fp32 or wider. Intersected
    with `allowed` explicitly: when the allowed scores overflow to -inf the row maximum is -inf and every key passes
    the comparison; when they hold a NaN no key passes it, and the set is empty."""
    if masked.dtype not in (torch.float32, torch.float64):
        masked = masked.float()
    return allowed & (masked >= masked.amax(dim=-1, keepdim=True) - tol)


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
        # argmax returns the first maximal index, i.e. the leftmost member of the set (vmap-safe, unlike one_hot).
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


class FusedAttention(torch.autograd.Function):
    """scaled_dot_product_attention(q, k, v, mask, causal, scale) for an Ensemble, whose layers run under vmap.

    vmap's own rules for the fused kernels do not serve here: on CUDA the memory-efficient kernel's backward fails
    under them ("LSE is not correctly aligned"), and on the CPU there is no rule, so vmap would call the kernel once per
    member. The `vmap` rule below folds the vmapped (member) axis into the kernel's batch and makes one ordinary
    call, whose forward and backward autograd records as for any standalone model. `backward` serves calls made
    outside vmap only, by differentiating a recomputed forward.
    """

    @staticmethod
    def forward(q, k, v, mask, causal, scale):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, mask, causal, scale = inputs
        ctx.save_for_backward(q, k, v, mask)
        ctx.causal, ctx.scale = causal, scale

    @staticmethod
    def backward(ctx, grad):
        q, k, v, mask = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_() for t in (q, k, v)]
            out = F.scaled_dot_product_attention(*inputs, attn_mask=mask, is_causal=ctx.causal, scale=ctx.scale)
        return (*torch.autograd.grad(out, inputs, grad), None, None, None)

    @staticmethod
    def vmap(info, in_dims, q, k, v, mask, causal, scale):
        def fold(t, dim):  # (..., B, ...) with the vmapped axis at `dim` -> (members * B, ...)
            t = t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)
            return t.flatten(0, 1)

        q, k, v = fold(q, in_dims[0]), fold(k, in_dims[1]), fold(v, in_dims[2])
        mask = None if mask is None else fold(mask, in_dims[3])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
        return out.unflatten(0, (info.batch_size, -1)), 0


class SelfAttention(nn.Module):
    """Multi-head self-attention whose weighting is one of VARIANTS.

    forward(x, allowed, need_weights) -> (output, weights or None), where `allowed` (broadcastable to (B, 1, T, T)) is
    True where query i may attend to key j, and every query may attend to some key (the Recognizer opens the rows of
    all-padding strings, see `open_empty_rows`). When no weights are requested and the weighting is a softmax, the fused
    scaled_dot_product_attention kernel computes the same thing without materialising the (T, T) weights.
    """

    def __init__(self, config):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.variant = config.attention
        self.surrogate = config.surrogate
        self.tol = config.tol
        self.causal = config.causal
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        # Knobs, not parameters: set through Recognizer.set_inverse_temperature and models.saturation.
        self.inverse_temperature = 1.0  # beta of the anneal surrogate while training
        self.logit_scale = 1.0  # scale_attention(model, c): scores *= c
        self.exact_override: str | None = None  # saturated_limit(model): evaluate this exact variant instead
        # Devices on which a softmax pass without requested weights uses the fused scaled_dot_product_attention kernel
        # instead of materialising the (T, T) weights. Empty by default: the published GPU run used the explicit path,
        # and the fused one (FusedAttention under vmap) has been checked on the CPU only. Add "cuda" once
        # `pytest -m gpu tests/test_ensemble.py` passes on a GPU.
        self.fused_devices: tuple[str, ...] = ()
        self.under_vmap = False  # set by Ensemble: call the fused kernel through FusedAttention's vmap rule

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
        return "ste", 0.0

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        scale = self.logit_scale / math.sqrt(self.head_dim)
        mode, beta = self._mode()

        if mode == "softmax" and not need_weights and q.device.type in self.fused_devices:
            # A causal model's padding trails the string, so causality alone keeps real queries off padded keys; the
            # outputs at padded queries differ from the explicit path but are never read.
            mask = None if self.causal else allowed
            if self.under_vmap:
                y = FusedAttention.apply(q, k, v, mask, self.causal, beta * scale)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal, scale=beta * scale)
            weights = None
        else:
            # Scaling q rather than the scores touches hd values per position instead of T.
            scores = (q * (beta * scale if mode == "softmax" else scale)) @ k.transpose(-2, -1)  # (B, H, T, T)
            masked = mask_scores(scores, allowed)  # once: the exact weights and the surrogate both read it
            if mode == "softmax":
                weights = weights_from_masked("soft", masked, allowed, self.tol)
            elif mode == "exact":
                weights = weights_from_masked(self.exact_override or self.variant, masked, allowed, self.tol)
            else:
                weights = straight_through(weights_from_masked(self.variant, masked, allowed, self.tol),
                                           weights_from_masked("soft", masked, allowed, self.tol))
            y = weights @ v

        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y), (weights if need_weights else None)
