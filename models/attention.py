"""Self-attention whose weighting is one of a registry of variants (VARIANTS): soft, saturated and hard are built in.

Given scores s_ij (query i, key j) and a boolean mask of the keys each query may see:

    soft        softmax over the allowed keys. Disallowed keys' scores are replaced by -inf before the softmax, so
                their weight is exactly 0 at any scale, whatever their score was.
    saturated   the c -> inf limit of softmax(c * s): uniform weight over
                M_i = {j allowed : s_ij >= m_i - tol * r_i}, m_i = max and r_i = max |s_ik| over allowed k,
                0 elsewhere. The tolerance is relative to the row's own scale r_i, with no absolute floor, so the
                set, like the limit it stands for, does not change when the scores are multiplied by any c > 0
                (see `tie_floor`); tol = 0 is exact equality.
    hard        unique hard attention: all weight on the leftmost position of M_i, i.e. the leftmost argmax, with ties
                decided by the same tolerance as `saturated`.

The exact variants have zero gradient with respect to the scores, so training them needs a surrogate:

    ste         straight-through: the forward pass uses the exact weights, the backward pass the gradient of softmax(s).
    anneal      softmax(beta * s) while training, with the inverse temperature beta raised from 1 to `anneal_max` over
                training (see `annealed_inverse_temperature`); exact weights at evaluation.
    tolerant    straight-through, with the exact variants' tie tolerance raised to `tolerant_tol` (0.1 by default)
                in training and evaluation alike (with train.tolerance_schedule linear or cosine it falls to 0 over
                training instead, and evaluation uses `tol`). With tol = 1e-5 two keys tie only when their scores
                are equal to the last bits, which gradient descent reaches only for identical keys; with 0.1 a key
                ties when its score lies within 0.1 r of the maximum (r the row's largest |s|), so a trained head can
                average keys that carry different values, which is what lets saturated attention count. It changes
                the model class: "saturated" then means uniform attention over the keys near the best.

A layer reads knobs that are not parameters (so they are in no state_dict): `inverse_temperature` (anneal), `tol`
(set step by step under train.tolerance_schedule) and `soft_phase` (train.soft_steps: softmax for now), which training
sets, and `logit_scale` and `exact_override`, which `models.saturation` sets for its scale sweeps;
`saturated_limit(model, tol)` also sets the tie tolerance `tol` for its duration. An override names an exact variant
or a control (`CONTROLS`): the uniform weighting, the c -> 0 end of the sweep.
"""

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from satbench.models.layers import at_least_fp32, linear, norm_linear

SURROGATES = ("ste", "anneal", "tolerant")


def open_empty_rows(allowed: torch.Tensor) -> torch.Tensor:
    """`allowed` with every row that allows no key opened to all keys.

    Only the queries of an all-padding string allow no key. Left empty, such a row gives softmax(-inf, ..., -inf) = NaN,
    and a NaN in the forward pass poisons the gradients of the whole batch; opened, it gives finite outputs that are
    never read. Cheap: it works on the boolean mask, which has no head axis.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


@contextlib.contextmanager
def ieee_matmuls(device: torch.device):
    """fp32 matmuls in full fp32 inside the block where a training step runs them in TF32 (models.train.Trainer):
    TF32 rounds its inputs to 11 significant bits, which would tie scores that differ by 0.05%. Not inside a compiled
    graph, which is traced with the step's setting (see TrainConfig.tf32)."""
    if device.type != "cuda" or not torch.backends.cuda.matmul.allow_tf32 or torch.compiler.is_compiling():
        yield
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = True


def attention_scores(q: torch.Tensor, k: torch.Tensor, future: torch.Tensor | None = None,
                     scale: float | None = None) -> torch.Tensor:
    """scale * q.k for q, k (B, H, T, d_head): (B, H, T, T), plus `future` (T, T) if given, added in the same kernel
    (a causal mask of 0 and -inf). `scale` is 1 / sqrt(d_head) unless given (a layer's `score_scale`).

    In fp32 (or wider) even under bf16 autocast. bf16 keeps 8 significant bits, so its scores would tie keys whose
    scores differ by up to 0.4%, 400 times the exact variants' tolerance; computed in fp32 from bf16 q and k, only
    keys that are equal in bf16 tie."""
    B, H, T, hd = q.shape
    scale = 1 / math.sqrt(hd) if scale is None else scale
    with torch.autocast(q.device.type, enabled=False), ieee_matmuls(q.device):
        q, k = at_least_fp32(q), at_least_fp32(k)
        if future is None:
            # Scaling q rather than the scores touches hd values per position instead of T.
            return (q * scale) @ k.transpose(-2, -1)
        return torch.baddbmm(future.to(q.dtype), q.reshape(B * H, T, hd), k.reshape(B * H, T, hd).transpose(1, 2),
                             alpha=scale).view(B, H, T, T)


def unit_length(x: torch.Tensor) -> torch.Tensor:
    """x / |x| over the last axis (a head's q or k, model.qk_norm), computed in fp32 or wider and returned in x's
    dtype, so that under bf16 the norm is not rounded before the division; a zero vector stays zero."""
    return F.normalize(at_least_fp32(x), dim=-1).to(x.dtype)


def mask_scores(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The scores with -inf on disallowed keys: what every weighting below reads.

    Filled, never added: a disallowed key's score is replaced whatever it was, so a +inf or NaN there (an overflow at
    a large scale, a future token) cannot leak into the row's maximum or softmax. Adding a -inf mask would turn +inf
    into NaN and poison the row.
    """
    return scores.masked_fill(~allowed, float("-inf"))


def tie_floor(masked: torch.Tensor, tol: float) -> torch.Tensor:
    """The lowest score that still ties with its row's maximum: m - tol * r, where m is the row's maximum and r its
    largest |s| over the allowed keys (disallowed keys carry -inf and are not counted).

    Why this rule. softmax(c s) tends, as c -> inf, to uniform weight over the exact argmax set {j : s_j = m}, and
    that set is the same for s and for a s, any a > 0: the limit does not depend on the scale of the scores. A rule
    that ties keys within tol * r keeps that property, since m and r both scale with a, so a model whose scores are
    all tiny (weight decay shrinking W_q) has the same limit as the same model with its scores multiplied by 1e6. An
    absolute floor (tol * max(1, |m|), the rule before) does not: below |m| = 1 it tied every key within tol of the
    maximum, and scores of 1e-6 that differ by 1e-9 became a tie. tol = 0 is exact equality.

    Why tol > 0 at all. Scores equal in exact arithmetic (identical keys: the same symbol without positions) come out
    of the same kernel bit for bit, but scores computed along different paths (another padding, another kernel) can
    differ in their last bits: fp32 rounds q.k to within a few ulps of |q| |k|, which is of the order of r wherever
    the row is not a cancellation of large terms. tol = 1e-5 (the default) is about a hundred ulps of r, far below
    any gap a trained model would use. Under saturate(model, 1000) scores reach ~1e11 and the floor grows with them.

    An infinite maximum (an overflow) is its own floor.
    """
    top = masked.amax(dim=-1, keepdim=True)
    # r: the largest |s| over the allowed keys; a disallowed key's -inf would read as +inf after abs().
    reach = masked.abs().nan_to_num_(posinf=0.0).amax(dim=-1, keepdim=True)
    return torch.where(top.isinf(), top, top - tol * reach)


def top_set(masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean mask of {j allowed : m_j >= tie_floor(m, tol)} on masked scores, compared in fp32 or wider.
    Intersected with `allowed` explicitly: when every allowed score is -inf the floor is -inf and every key passes the
    comparison; when a score is NaN the floor is NaN, no key passes, and the set is empty."""
    masked = at_least_fp32(masked)
    return allowed & (masked >= tie_floor(masked, tol))


class Weighting:
    """One attention variant: how a row of masked scores (see `mask_scores`) becomes weights over its keys.

    `exact` variants are limits of softmax(c s) as c -> inf: the scale sweep leaves them alone, they have no gradient
    with respect to the scores (so they train through a surrogate, SURROGATES), and their ties are decided within the
    layer's tolerance `tol`. A variant that is not exact trains through its own gradient, and the sweep hands it the
    scores times c. `softmax` marks the one whose weights are softmax(s), which training computes in the fused kernel.
    Adding a variant is one subclass in this file, registered with `@register_variant`, plus its entries in
    report/theory.yaml (docs/add-an-attention-variant.md).
    """

    name: str
    exact: bool = True
    softmax: bool = False

    def weights(self, masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
        """(..., T) weights from masked scores and the mask they were masked with; disallowed keys get exactly 0."""
        raise NotImplementedError

    def average(self, masked: torch.Tensor, v: torch.Tensor, tol: float) -> torch.Tensor:
        """weights @ v for the fused training pass (exact variants only): the weights found without gradient (they
        have none), so that v's gradient is that of the exact weights. `masked` carries -inf on disallowed keys."""
        with torch.no_grad():
            weights = self.weights(masked, masked > float("-inf"), tol)
        return weights.to(v.dtype) @ v


VARIANTS: dict[str, Weighting] = {}  # name -> weighting, in registration order (the order of every table)


def register_variant(cls: type[Weighting]) -> type[Weighting]:
    if cls.name in VARIANTS and type(VARIANTS[cls.name]) is not cls:
        raise ValueError(f"attention variant '{cls.name}' is defined twice: {type(VARIANTS[cls.name]).__qualname__} "
                         f"and {cls.__qualname__}")
    VARIANTS[cls.name] = cls()
    return cls


def get_variant(name: str) -> Weighting:
    if name not in VARIANTS:
        raise ValueError(f"attention variant: {name!r} is not one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


@register_variant
class Soft(Weighting):
    """softmax over the allowed keys."""

    name, exact, softmax = "soft", False, True

    def weights(self, masked, allowed, tol):
        return masked.softmax(dim=-1)


@register_variant
class Saturated(Weighting):
    """Uniform weight over the tie set M (`top_set`); a row whose set is empty (NaN scores) is 0."""

    name = "saturated"

    def weights(self, masked, allowed, tol):
        in_set = top_set(masked, allowed, tol).to(masked.dtype)
        return in_set / in_set.sum(dim=-1, keepdim=True).clamp(min=1.0)

    def average(self, masked, v, tol):
        # Disallowed keys are -inf and every row's maximum is finite, so comparing with the floor is the set (`top_set`
        # without its intersection with the mask). A row holding a NaN (a diverged model) ties nothing and averages
        # to 0, as in `weights`.
        with torch.no_grad():
            in_set = masked >= tie_floor(masked, tol)
        count = in_set.sum(dim=-1, keepdim=True).clamp(min=1)
        return (in_set.to(v.dtype) @ v) / count


@register_variant
class Hard(Weighting):
    """All weight on the leftmost key of the tie set M (the leftmost argmax); a row whose set is empty is 0."""

    name = "hard"

    def weights(self, masked, allowed, tol):
        in_set = top_set(masked, allowed, tol)
        # argmax returns the first maximal index, i.e. the leftmost member of the set.
        leftmost = in_set.to(masked.dtype).argmax(dim=-1, keepdim=True)
        picked = torch.arange(masked.shape[-1], device=masked.device) == leftmost
        return (picked & in_set.any(dim=-1, keepdim=True)).to(masked.dtype)

    def average(self, masked, v, tol):
        # The value at the leftmost key of the set. A row holding a NaN reads key 0, where `weights` gives 0.
        with torch.no_grad():
            in_set = masked >= tie_floor(masked, tol)
            leftmost = in_set.to(torch.uint8).argmax(dim=-1, keepdim=True)
        return v.gather(2, leftmost.expand(-1, -1, -1, v.shape[-1]))


class Uniform(Weighting):
    """Uniform weight over the allowed keys, whatever their scores: the c -> 0 limit of softmax(c s), the other end of
    the scale sweep from `Saturated`. A control, not a variant: nothing trains with it, so it is not registered (and
    needs no theory entry); evaluation reaches it through a layer's `exact_override` (`CONTROLS`,
    models.saturation.uniform_attention). Like the exact variants it has no gradient with respect to the scores and
    ignores the sweep's c."""

    name = "uniform"

    def weights(self, masked, allowed, tol):
        allowed = allowed.expand_as(masked).to(masked.dtype)
        return allowed / allowed.sum(dim=-1, keepdim=True).clamp(min=1.0)


CONTROLS: dict[str, Weighting] = {"uniform": Uniform()}  # weightings an override may name beside VARIANTS


def override_weighting(name: str) -> Weighting:
    """The weighting a layer's `exact_override` names: a control (CONTROLS) or a registered variant."""
    return CONTROLS[name] if name in CONTROLS else get_variant(name)


def weights_from_masked(variant: str, masked: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """`variant`'s weights from masked scores (see `mask_scores`) and the mask they were masked with.

    The attention layer masks once and derives both the exact weights and, for the straight-through surrogate, the
    softmax from the same tensor."""
    return get_variant(variant).weights(masked, allowed, tol)


def soft_weights(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax over the allowed keys; disallowed keys get weight exactly 0. `allowed` broadcasts against `scores`; a row
    that allows no key is treated as allowing every key (see `open_empty_rows`)."""
    opened = open_empty_rows(allowed)
    return weights_from_masked("soft", mask_scores(scores, opened), opened, 0.0)


def saturated_set(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean mask of M = {j allowed : s_j >= tie_floor(s, tol)} (a tolerance relative to the row's largest |s|),
    computed in fp32 or wider; empty for a row that allows no key."""
    return top_set(mask_scores(scores, allowed), allowed, tol)


def saturated_weights(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """Uniform weight over the saturated set M (see `saturated_set`), 0 elsewhere; a row with no allowed key is 0
    (the Recognizer opens such rows first, see `open_empty_rows`)."""
    return weights_from_masked("saturated", mask_scores(scores, allowed), allowed, tol)


def hard_weights(scores: torch.Tensor, allowed: torch.Tensor, tol: float) -> torch.Tensor:
    """All weight on the leftmost position of the saturated set M: the leftmost argmax, ties decided within `tol`; a
    row with no allowed key is 0."""
    return weights_from_masked("hard", mask_scores(scores, allowed), allowed, tol)


class _StraightThrough(torch.autograd.Function):
    """Forward: `exact`, as it is, bit for bit. Backward: the incoming gradient to both inputs: to `surrogate`, and to
    `exact` where it has one. Exact weights derived from comparisons have none, and then this is
    `surrogate + (exact - surrogate).detach()` without its two elementwise passes and their rounding; the fused
    path's exact output (its weights @ v) has one, and v gets it."""

    @staticmethod
    def forward(ctx, exact, surrogate):
        return exact.view_as(exact)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def straight_through(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Forward value `exact`; the gradient reaches `surrogate` (and `exact` where it has one, see _StraightThrough).
    Exact zeros (disallowed keys, keys outside M) stay 0."""
    return _StraightThrough.apply(exact, surrogate)


def annealed_inverse_temperature(progress: float, final: float) -> float:
    """Inverse temperature for the `anneal` surrogate at `progress` in [0, 1] of training: 1 at the start, `final` at
    the end, growing geometrically (final ** progress): equal stretches of training multiply it by equal factors.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return float(final) ** progress


class KeyMask:
    """Which keys each query may see in one forward pass: built on first use and then shared by every layer of the
    pass. The fused causal training path needs none of it but the exact variants' (T, T) `future`.

    padding (M * B, T): True at padding tokens. `allowed` (M * B, 1, 1 or T, T) is True where query i may attend to
    key j: real keys only, and for a causal model only those at or before the query; every query may see some key
    (the rows of all-padding strings are opened, see `open_empty_rows`). `past` (T, T) is True on and below the
    diagonal, and `future` (T, T) is 0 there and -inf above it: added to the scores, it masks a causal model's future
    keys. A causal model's padding trails its strings, so `past` alone keeps its real queries off padded keys.
    `padding_bias(dtype)` (M * B, 1, 1, T) masks the padded keys of a bidirectional pass when added to the scores.
    With bos_key false (model.bos_key) the BOS column is no key for any query but BOS's own: position i reads s[:i]
    alone, as a model without a start symbol does.
    """

    def __init__(self, padding: torch.Tensor, causal: bool, bos_key: bool = True):
        self.padding, self.causal, self.bos_key = padding, causal, bos_key
        # Built on first use. Not functools.cached_property: its lock (Python 3.11) breaks a torch.compile graph.
        self._allowed: torch.Tensor | None = None
        self._past: torch.Tensor | None = None
        self._future: torch.Tensor | None = None
        self._padding_bias: torch.Tensor | None = None

    def padding_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """0 on real keys and the dtype's lowest finite value on padded ones, (M * B, 1, 1, T): the fused kernel's
        mask of a bidirectional pass, one kernel where a boolean mask costs several. Finite rather than -inf, so that
        the rows of an all-padding string stay finite, as `open_empty_rows` keeps them: uniform here rather than a
        softmax of their scores, which no one reads."""
        if self._padding_bias is None or self._padding_bias.dtype != dtype:
            lowest = max(torch.finfo(dtype).min, torch.finfo(torch.float32).min)  # computed in fp32 (bool * float)
            self._padding_bias = (self._hidden_keys()[:, None, None, :] * lowest).to(dtype)
        return self._padding_bias

    @property
    def allowed(self) -> torch.Tensor:
        if self._allowed is None:
            # A causal mask hides BOS in `past`, which shows it to BOS's own query.
            allowed = ~(self.padding if self.causal else self._hidden_keys())[:, None, None, :]
            if self.causal:
                allowed = allowed & self.past
            self._allowed = open_empty_rows(allowed)  # only all-padding strings have queries that may see nothing
        return self._allowed

    @property
    def past(self) -> torch.Tensor:
        """(T, T): True on and below the diagonal, the keys a causal query may see if it ignores padding."""
        if self._past is None:
            T = self.padding.shape[-1]
            self._past = torch.ones(T, T, dtype=torch.bool, device=self.padding.device).tril()
            if not self.bos_key:
                self._past[1:, 0] = False
        return self._past

    @property
    def future(self) -> torch.Tensor:
        if self._future is None:
            T = self.padding.shape[-1]
            self._future = torch.full((T, T), float("-inf"), device=self.padding.device).triu(1)
            if not self.bos_key:
                self._future[1:, 0] = float("-inf")
        return self._future

    def _hidden_keys(self) -> torch.Tensor:
        """(M * B, T): True at the keys a bidirectional query does not see: padding, and BOS when it is no key."""
        if self.bos_key:
            return self.padding
        hidden = self.padding.clone()
        hidden[:, 0] = ~self.padding[:, 1:].all(dim=1)  # the empty string keeps BOS, its only key
        return hidden

    def fused_mask(self, dtype) -> tuple[torch.Tensor | None, bool]:
        """(attn_mask, is_causal) for F.scaled_dot_product_attention: the causal flag alone where it says it all."""
        if self.causal and self.bos_key:
            return None, True
        if self.causal:
            return self.future.to(dtype), False
        return self.padding_bias(dtype), False


class SelfAttention(nn.Module):
    """Multi-head self-attention whose weighting is one of VARIANTS.

    forward(x, keys, need_weights, ln, rows) -> (output, internals or None) for x (M, B, T, d) (M members, see
    models/recognizer.py) and the pass's KeyMask `keys` (the members are folded into the attention's batch). With
    need_weights the internals are the weights used ("attn"), the scores at c = 1 ("scores", -inf on disallowed keys)
    and the values ("values"), each (M * B, H, T, .). A pre-LN block passes its norm as `ln`; `rows` (M, B) asks for
    the output at one query per string, (M, B, 1, d) (see Recognizer._membership_logit).

    Training at c = 1 without internals takes a fused path that never materialises weights with a gradient: a softmax
    runs in the fused scaled_dot_product_attention kernel, and the straight-through surrogate averages the values
    over the exact variant's tied keys (found without gradient) while the fused softmax, fed values without gradient,
    carries the gradient to q and k. Its gradients are those of the explicit path's straight_through of the weights:
    v gets the exact weights' gradient, the scores the softmax's.
    """

    def __init__(self, config):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        # model.qk_norm: unit q and k per head, scores attention_scale * cos(q, k), a scale no weight can change. Every
        # path (fused, explicit, tie scores) reads the one score_scale, so they compute the same scores.
        self.qk_norm = config.qk_norm
        self.score_scale = config.attention_scale if config.qk_norm else 1 / math.sqrt(self.head_dim)
        self.variant = config.attention
        self.weighting = get_variant(config.attention)
        self.surrogate = config.surrogate
        # The exact variants' tie tolerance; `tolerant` training raises it for training and evaluation alike (a
        # train.tolerance_schedule lowers it step by step and leaves config.tol for evaluation; Recognizer.set_tie_tol).
        self.tol = config.tolerant_tol if config.surrogate == "tolerant" and self.weighting.exact else config.tol
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        # Knobs, not parameters: set through Recognizer.set_inverse_temperature and models.saturation.
        # beta of the anneal surrogate while training: a tensor, so that changing it each step costs no host sync
        # and no recompilation of a compiled step. Not persistent: checkpoints hold parameters only.
        self.register_buffer("inverse_temperature", torch.ones(()), persistent=False)
        self.logit_scale = 1.0  # scale_attention(model, c): scores *= c
        # saturated_limit(model), uniform_attention(model): evaluate this exact variant or control instead
        self.exact_override: str | None = None
        # train.soft_steps: an exact variant that computes softmax attention for now, in training and evaluation
        # alike (the limit's override excepted), so that training can start from a soft solution.
        self.soft_phase = False
        # Devices on which a training pass takes the fused path (`_fused_training`: scaled_dot_product_attention, and
        # for the straight-through surrogate no (T, T) weights with a gradient); () forces the explicit path (the
        # tests' reference).
        self.fused_devices: tuple[str, ...] = ("cpu", "cuda")

    def _mode(self) -> tuple[str, float | torch.Tensor]:
        """What this forward pass computes: ('softmax', beta), ('own', 1), ('exact', 0) or ('ste', 0); beta is 1.0 for
        soft attention and the inverse temperature tensor for the anneal surrogate; 'own' is a variant that is neither
        softmax nor exact, whose weights come from its Weighting with their own gradient."""
        if self.exact_override is not None:
            return "exact", 0.0
        if self.soft_phase:
            return "softmax", 1.0
        if not self.weighting.exact:
            return ("softmax" if self.weighting.softmax else "own"), 1.0
        if not self.training:
            return "exact", 0.0
        if self.surrogate == "anneal":
            return "softmax", self.inverse_temperature
        return "ste", 0.0  # ste and tolerant

    def forward(self, x: torch.Tensor, keys: KeyMask, need_weights: bool = False, ln: nn.Module | None = None,
                rows: torch.Tensor | None = None):
        """With a layer norm `ln` (a pre-LN block's), x is the residual stream and the layer reads ln(x). With `rows`
        (M, B), only the query at that position of each string is answered (output (M, B, 1, C)); `keys` must then
        be the mask of those queries (see Recognizer._membership_logit)."""
        M, B, T, C = x.shape
        q, k, v = norm_linear(ln, self.qkv, x).flatten(0, 1).split(C, dim=2)  # (M * B, T, C): members in the batch
        if rows is not None:
            q = q.gather(1, rows.reshape(M * B, 1, 1).expand(-1, 1, C))
        q, k, v = (t.unflatten(2, (self.n_heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))  # (MB, H, T, hd)
        if self.qk_norm:  # before any path reads q and k, so that the fused, explicit and tie scores all see unit ones
            q, k = unit_length(q), unit_length(k)
        mode, beta = self._mode()

        # Fused in training only: evaluation keeps the explicit path, whose softmax of equal scores is exactly uniform,
        # so that a construction's logits at c = 1 equal those of its saturated limit bit for bit; a sweep's c could
        # also overflow the fused kernel.
        fusable = self.training and mode in ("softmax", "ste") and self.logit_scale == 1.0 and not need_weights
        if fusable and q.device.type in self.fused_devices:
            y, weights = self._fused_training(q, k, v, keys, mode, beta), None
        else:
            y, weights, scores = self._explicit(q, k, v, keys, mode, beta, need_weights)
        y = linear(self.proj, y.transpose(1, 2).reshape(M, B, q.shape[2], C))
        if not need_weights:
            return y, None
        # What the tie probes read: the weights used, the scores at c = 1 (-inf on disallowed keys) and the values.
        return y, {"attn": weights, "scores": mask_scores(scores, keys.allowed), "values": v}

    def _tie_scores(self, q, k, keys: KeyMask) -> torch.Tensor:
        """Masked scores for finding ties, when the scores at c = 1 themselves are not wanted: a causal model adds the
        future's -inf in the score matmul instead of a masking pass (masked as by `keys.past`), which changes only the
        rows of padded queries, and they are never read."""
        if keys.causal:
            return attention_scores(q, k, keys.future, self.score_scale)
        return mask_scores(attention_scores(q, k, scale=self.score_scale), keys.allowed)

    def _explicit(self, q, k, v, keys: KeyMask, mode, beta, need_weights):
        """(output, weights, scores at c = 1, or None where no internals are asked of an exact weighting) with the
        (T, T) weights materialised: evaluation, sweeps, internals."""
        sharpen = beta * self.logit_scale  # softmax(sharpen * s): the anneal surrogate's beta times the sweep's c
        if mode == "exact" and not need_weights:
            scores, allowed = None, keys.past if keys.causal else keys.allowed
            masked = self._tie_scores(q, k, keys)
        else:
            scores, allowed = attention_scores(q, k, scale=self.score_scale), keys.allowed
            masked = mask_scores(scores, allowed)  # once: the exact weights and the surrogate both read it
        if mode == "softmax" and (isinstance(sharpen, torch.Tensor) or sharpen != 1.0):
            # softmax(c * s) = softmax(c * (s - max s)): the shifted scores are <= 0, so no c overflows them to +inf,
            # and at a c large enough every key below the maximum gets exactly 0 (the numerical limit). The shift has
            # no gradient to give: softmax does not see it.
            masked = (masked - masked.amax(dim=-1, keepdim=True).detach()) * sharpen
        elif mode == "own" and self.logit_scale != 1.0:
            masked = masked * self.logit_scale  # c * s as it is: a weighting other than softmax need not ignore shifts
        # The exact weights ignore the sweep's c: they are its limit already, and their tie tolerance, relative to the
        # row's largest |s|, makes them invariant to scaling the scores.
        tol = self.tol
        if mode == "softmax":
            weights = weights_from_masked("soft", masked, allowed, tol)
        elif mode == "own":
            weights = self.weighting.weights(masked, allowed, tol)
        elif mode == "exact":
            exact = override_weighting(self.exact_override) if self.exact_override else self.weighting
            weights = exact.weights(masked, allowed, tol)
        else:
            weights = straight_through(self.weighting.weights(masked, allowed, tol),
                                       weights_from_masked("soft", masked, allowed, tol))
        return weights.to(v.dtype) @ v, weights, scores

    def _fused_training(self, q, k, v, keys: KeyMask, mode, beta):
        """A training pass at c = 1 without materialising weights that carry a gradient (see the class docstring)."""
        # A causal model's padding trails the string, so causality alone keeps real queries off padded keys; the
        # outputs at padded queries differ from the explicit path's but are never read.
        mask, causal = keys.fused_mask(q.dtype)
        scale = self.score_scale  # the explicit path's (attention_scores), so that both compute the same scores
        if mode == "softmax":
            if isinstance(beta, torch.Tensor):  # the anneal surrogate's softmax(beta * s)
                q = q * beta
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
        exact = self._exact_average(q, k, v, keys)
        surrogate = F.scaled_dot_product_attention(q, k, v.detach(), attn_mask=mask, is_causal=causal, scale=scale)
        return straight_through(exact, surrogate)

    def _exact_average(self, q, k, v, keys: KeyMask) -> torch.Tensor:
        """The exact variant's output, weights @ v, from its Weighting.average (weights found without gradient)."""
        with torch.no_grad():
            masked = self._tie_scores(q, k, keys)
        return self.weighting.average(masked, v, self.tol)
