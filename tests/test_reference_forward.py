"""The Recognizer's forward pass against a float64 reference written from the definitions.

The reference reads the weights out of `model.state_dict()` and recomputes everything with plain tensor operations in
float64: token embedding and positions, every block with its layer-norm placement, the attention scores and the soft,
saturated and hard weightings, the MLP, the final norm and the head. It calls no submodule's forward and none of
models.attention's helpers, so a mistake there (a mask, a tie rule, a norm in the wrong place, the logit read at the
wrong position) shows up as a disagreement instead of being reproduced.

What is checked:
  * prefix logits, membership logits and attention weights agree at c = 1 over variants x layer-norm placements x
    positional encodings x biases, causal and bidirectional;
  * attention weights on future and padded keys are exactly 0, at c = 1 and at every saturation point;
  * appending padding changes no logit at c = 1, under saturate(model, 1000), under scale_attention(model, 1000) and at
    the saturated limit, and the model agrees with the reference at each of these points;
  * saturated_limit(model) computes the saturated weighting whatever the model's own variant;
  * a wide tie tolerance (a `tolerant` model, saturated_limit(model, 0.1)), under which several keys really tie.

The exact weightings compare scores with a tie threshold, and softmax at a huge scale tells apart scores that float32
cannot; a string whose reference logits move beyond the tolerance when its attention scores move by float32's error
is ill-conditioned and left out of the comparison (see `ill_conditioned`; at most a few per batch, which the tests
assert, and none at c = 1).
"""

import contextlib
import itertools
import math

import pytest
import torch
from torch import nn

from satbench.models import BOS, PAD, ModelConfig, Recognizer, saturate, saturated_limit, scale_attention

VARIANTS = ("soft", "saturated", "hard")  # the variants this file recomputes from their definitions

# A float32 attention score q.k / sqrt(head_dim) is off by up to about 5e-7 of |q| |k| / sqrt(head_dim) in these models,
# from rounding in the product and in the layers before it, even at saturate(model, 1000); twice that bounds it.
SCORE_ERROR = 1e-6


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run this module on one intra-op thread, restored afterwards. Its tensors are tiny: a second thread only adds
    synchronisation, which on a busy machine costs far more than the work (a minute instead of seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(attention="soft", layer_norm="pre", positional="sinusoidal", bias=True, causal=True, seed=0,
          **overrides) -> Recognizer:
    """A small model in eval mode (exact weights for the saturated and hard variants)."""
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, attention=attention,
                         layer_norm=layer_norm, positional=positional, bias=bias, causal=causal, **overrides)
    return Recognizer(config).eval()


def make_batch(seed=0, count=16, max_len=12) -> torch.Tensor:
    """BOS + `count` random strings of length 1..max_len over the symbols 3..5 + trailing PAD; no all-padding rows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (count,), generator=g)
    tokens = torch.full((count, int(lengths.max()) + 1), PAD, dtype=torch.long)
    tokens[:, 0] = BOS
    for row, n in enumerate(lengths.tolist()):
        tokens[row, 1 : 1 + n] = torch.randint(3, 6, (n,), generator=g)
    return tokens


def pad_more(tokens: torch.Tensor, columns: int = 4) -> torch.Tensor:
    """The same batch with `columns` more PAD columns."""
    return torch.cat([tokens, torch.full((tokens.shape[0], columns), PAD, dtype=tokens.dtype)], dim=1)


def sinusoids(n_positions: int, d_model: int) -> torch.Tensor:
    """Vaswani et al.'s table in float64: sin at even and cos at odd features of position / 10000^(2k / d_model)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = position / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.empty(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table


def affine(x: torch.Tensor, params: dict, name: str) -> torch.Tensor:
    """x W^T + b for the linear map `name` (no bias term when the model has none)."""
    y = x @ params[f"{name}.weight"].T
    return y + params[f"{name}.bias"] if f"{name}.bias" in params else y


def normalise(x: torch.Tensor, params: dict, name: str, eps: float) -> torch.Tensor:
    """Layer norm over the last axis: (x - mean) / sqrt(biased variance + eps) * weight (+ bias)."""
    centred = x - x.mean(dim=-1, keepdim=True)
    y = centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps) * params[f"{name}.weight"]
    return y + params[f"{name}.bias"] if f"{name}.bias" in params else y


def weigh(scores, allowed, weighting: str, sharpen: float, tol: float) -> torch.Tensor:
    """Attention weights of one layer from its (B, H, T, T) scores: softmax(sharpen * s) over the allowed keys, uniform
    over M_i = {allowed j : s_ij >= m_i - tol * r_i} (m_i the row's best allowed score, r_i its largest allowed |s|),
    or all on the leftmost member of M_i."""
    masked = torch.where(allowed, scores, -math.inf)
    top = masked.amax(dim=-1, keepdim=True)
    if weighting == "soft":
        shifted = (sharpen * (masked - top)).exp()  # exp(-inf) = 0 on disallowed keys
        return shifted / shifted.sum(dim=-1, keepdim=True)
    reach = torch.where(allowed, scores.abs(), 0.0).amax(dim=-1, keepdim=True)
    tied = allowed & (scores >= top - tol * reach)
    if weighting == "saturated":
        return tied.double() / tied.sum(dim=-1, keepdim=True)
    if weighting == "hard":
        return (tied & (tied.cumsum(dim=-1) == 1)).double()
    raise ValueError(weighting)


def reference_forward(model: Recognizer, tokens: torch.Tensor, weighting=None, sharpen=1.0, param_scale=1.0,
                      tol=None, nudge=0) -> dict:
    """The forward pass in float64 from the definitions.

    weighting: every layer's attention weighting (default: the model's variant). sharpen: the soft weighting's inverse
    temperature (scale_attention's c; the exact weightings ignore it). param_scale: every parameter times this
    (saturate's c). tol: the exact weightings' tie tolerance (default: config.tol). nudge: +1 or -1 moves every score
    by its float32 error bound towards or away from its row's best score (see `ill_conditioned`).

    Returns logit (B,), prefix_logits (B, T), attn (L, B, H, T, T), magnitude (B, T): the sum of the absolute terms of
    the head's dot product, which its rounding error is relative to, and logit_magnitude (B,), the same for the logit.
    """
    config = model.config
    params = {name: value.detach().double() * param_scale for name, value in model.state_dict().items()}
    eps = {name: module.eps for name, module in model.named_modules() if isinstance(module, nn.LayerNorm)}
    weighting = weighting or config.attention
    tol = config.tol if tol is None else tol
    B, T = tokens.shape
    C, H = config.d_model, config.n_heads
    hd = C // H

    real = tokens != PAD
    allowed = real[:, None, None, :].expand(B, 1, T, T)
    if config.causal:
        allowed = allowed & (torch.arange(T)[None, :] <= torch.arange(T)[:, None])

    x = params["token_embedding.weight"][tokens]
    if config.positional == "sinusoidal":
        x = x + sinusoids(T, C)
    elif config.positional != "none":
        raise NotImplementedError(config.positional)

    def norm(h, name):
        return h if config.layer_norm == "none" else normalise(h, params, name, eps[name])

    attn = []

    def attention(h, layer):
        qkv = affine(h, params, f"blocks.{layer}.attn.qkv")
        q, k, v = (qkv[..., i * C : (i + 1) * C].reshape(B, T, H, hd).transpose(1, 2) for i in range(3))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if nudge:
            reach = q.norm(dim=-1)[..., :, None] * k.norm(dim=-1)[..., None, :] / math.sqrt(hd)  # >= |score|
            best = torch.where(allowed, scores, -math.inf).argmax(dim=-1, keepdim=True)
            toward = torch.where(torch.arange(T) == best, 1.0, -1.0)
            scores = scores + nudge * SCORE_ERROR * reach * toward
        weights = weigh(scores, allowed, weighting, sharpen, tol)
        attn.append(weights)
        return affine((weights @ v).transpose(1, 2).reshape(B, T, C), params, f"blocks.{layer}.attn.proj")

    def mlp(h, layer):
        return affine(torch.relu(affine(h, params, f"blocks.{layer}.mlp.fc")), params, f"blocks.{layer}.mlp.proj")

    for layer in range(config.n_layers):
        ln_1, ln_2 = f"blocks.{layer}.ln_1", f"blocks.{layer}.ln_2"
        if config.layer_norm == "post":
            x = norm(x + attention(x, layer), ln_1)
            x = norm(x + mlp(x, layer), ln_2)
        elif config.layer_norm == "branch":
            x = x + norm(attention(x, layer), ln_1)
            x = x + norm(mlp(x, layer), ln_2)
        else:  # pre, or none (whose norms are the identity)
            x = x + attention(norm(x, ln_1), layer)
            x = x + mlp(norm(x, ln_2), layer)
    if config.layer_norm in ("pre", "branch"):
        x = norm(x, "ln_f")

    prefix_logits = torch.where(real, affine(x, params, "head")[..., 0], 0.0)
    magnitude = (x * params["head.weight"][0]).abs().sum(dim=-1) + params.get("head.bias", torch.zeros(1)).abs()
    # The membership logit: at the last real position for a causal model, at BOS for a bidirectional one.
    read_at = real.sum(dim=1) - 1 if config.causal else torch.zeros(B, dtype=torch.long)
    rows = torch.arange(B)
    return {"logit": prefix_logits[rows, read_at], "prefix_logits": prefix_logits, "attn": torch.stack(attn),
            "magnitude": magnitude, "logit_magnitude": magnitude[rows, read_at]}


def ill_conditioned(model: Recognizer, tokens: torch.Tensor, ref: dict, **point) -> torch.Tensor:
    """(B,) True for the strings whose reference prefix logits move by more than the comparison's tolerance (see
    `assert_logits_close`) when every attention score moves by its float32 error bound, all towards or all away from
    its row's best score.

    Everything but the weighting is continuous with a modest constant; the weighting is not where a key sits within
    float32's error of the tie threshold, or where softmax at a huge scale tells apart scores that float32 cannot.
    Pushing every score to one end of its error bound takes each row to its most or its least concentrated weighting;
    if neither moves the logits beyond the tolerance, float32 cannot either. Keys that are equal or nearly so carry
    equal values, so a tie broken differently leaves the logits alone and the string counts as well-conditioned.
    """
    real = tokens != PAD
    tolerance = 1e-4 * ref["prefix_logits"].abs() + 1e-5 * ref["magnitude"].clamp(min=1.0)
    ill = torch.zeros(tokens.shape[0], dtype=torch.bool)
    for nudge in (1, -1):
        moved = (reference_forward(model, tokens, nudge=nudge, **point)["prefix_logits"] - ref["prefix_logits"]).abs()
        ill |= (real & (moved > tolerance)).any(dim=1)
    return ill


def assert_reference_agreement(out: dict, ref: dict, tokens: torch.Tensor, keep: torch.Tensor | None = None):
    """Model outputs equal the reference's (rtol 1e-4, atol 1e-5) on the strings in `keep` (default all): prefix logits
    at real positions, the membership logit, and the attention weights of real queries over all keys."""
    keep = torch.ones(tokens.shape[0], dtype=torch.bool) if keep is None else keep
    real = (tokens != PAD) & keep[:, None]
    torch.testing.assert_close(out["prefix_logits"].double()[real], ref["prefix_logits"][real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["logit"].double()[keep], ref["logit"][keep], rtol=1e-4, atol=1e-5)
    got, expected = out["attn"].double().permute(1, 3, 0, 2, 4), ref["attn"].permute(1, 3, 0, 2, 4)  # (B, T, L, H, T)
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-5)


def assert_logits_close(got: torch.Tensor, expected: torch.Tensor, magnitude: torch.Tensor):
    """|got - expected| <= 1e-4 |expected| + 1e-5 max(1, magnitude): relative agreement, where a logit that is a small
    difference of huge terms (saturate(model, 1000)) is allowed the rounding error of those terms."""
    scale = magnitude.clamp(min=1.0)
    torch.testing.assert_close(got.double() / scale, expected / scale, rtol=1e-4, atol=1e-5)


def assert_agrees_where_well_conditioned(model: Recognizer, tokens: torch.Tensor, out: dict, at_most=4, **point):
    """The model's logits (`out`) agree with the reference at `point` on every well-conditioned string: in value
    relative to the size of the terms the head adds up, and in every decision float32 cannot flip. Returns the
    reference."""
    ref = reference_forward(model, tokens, **point)
    ill = ill_conditioned(model, tokens, ref, **point)
    assert_few_ill(ill, at_most)
    keep = ~ill
    kept = (tokens != PAD) & keep[:, None]
    assert_logits_close(out["logit"][keep], ref["logit"][keep], ref["logit_magnitude"][keep])
    assert_logits_close(out["prefix_logits"][kept], ref["prefix_logits"][kept], ref["magnitude"][kept])
    clear = keep & (ref["logit"].abs() > 1e-3 * ref["logit_magnitude"])
    assert torch.equal(out["logit"][clear] > 0, ref["logit"][clear] > 0)
    return ref


def assert_few_ill(ill: torch.Tensor, at_most: int):
    """Leaving out the ill-conditioned strings must not leave the comparison nearly empty."""
    assert int(ill.sum()) <= at_most, f"{int(ill.sum())} of {len(ill)} strings are ill-conditioned"


# The points of the saturation sweep: a context manager over the model, and the reference's arguments for that point.
POINTS = {
    "c=1": (lambda model: contextlib.nullcontext(), {}),
    "saturate(1000)": (lambda model: saturate(model, 1000.0), {"param_scale": 1000.0}),
    "scale_attention(1000)": (lambda model: scale_attention(model, 1000.0), {"sharpen": 1000.0}),
    "saturated_limit": (saturated_limit, {"weighting": "saturated"}),
}


@pytest.mark.parametrize(
    "attention,layer_norm,positional,bias",
    list(itertools.product(VARIANTS, ("pre", "post", "branch", "none"), ("none", "sinusoidal"), (True, False))),
)
def test_forward_matches_float64_reference(attention, layer_norm, positional, bias):
    """At c = 1 the model computes the definitions: logits everywhere, attention weights of every real query."""
    model = build(attention, layer_norm, positional, bias)
    tokens = make_batch()
    with torch.no_grad():
        out = model(tokens, internals=True)
    ref = reference_forward(model, tokens)
    assert_few_ill(ill_conditioned(model, tokens, ref), at_most=0)  # at c = 1 no score is near a tie threshold
    assert_reference_agreement(out, ref, tokens)
    assert (out["prefix_logits"][tokens == PAD] == 0).all()
    # The reference takes eps from the modules; the definition fixes it.
    assert all(module.eps == 1e-5 for module in model.modules() if isinstance(module, nn.LayerNorm))


@pytest.mark.parametrize("attention", VARIANTS)
def test_bidirectional_forward_matches_float64_reference(attention):
    """Without causality every query sees every real key, and the membership logit is read at BOS."""
    model = build(attention, "pre", "sinusoidal", causal=False)
    tokens = make_batch(seed=1)
    with torch.no_grad():
        out = model(tokens, internals=True)
    ref = reference_forward(model, tokens)
    assert_few_ill(ill_conditioned(model, tokens, ref), at_most=0)
    assert_reference_agreement(out, ref, tokens)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("attention,causal", list(itertools.product(VARIANTS, (True, False))))
def test_no_weight_on_future_or_padded_keys(attention, causal, point):
    """Future and padded keys get exactly 0, not a tiny weight, whatever the scale: at saturate(model, 1000) a leak of
    1e-30 times a huge value would still move a logit."""
    model = build(attention, "pre", "sinusoidal", causal=causal)
    tokens = pad_more(make_batch(seed=2), 3)
    T = tokens.shape[1]
    with torch.no_grad(), POINTS[point][0](model):
        weights = model(tokens, internals=True)["attn"]  # (L, B, H, T, T)
    real = tokens != PAD
    allowed = real[:, None, None, :].expand(-1, 1, T, T)
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
    forbidden = ~allowed.expand_as(weights[0])
    assert all((layer[forbidden] == 0).all() for layer in weights)  # exactly, not approximately
    # And every query, padded ones included, spreads a total weight of 1 over the keys it may see.
    sums = weights.sum(dim=-1)
    torch.testing.assert_close(sums, torch.ones_like(sums))


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("positional", ("none", "sinusoidal"))
@pytest.mark.parametrize("layer_norm,bias", [("pre", True), ("post", True), ("branch", True), ("branch", False)])
@pytest.mark.parametrize("attention", VARIANTS)
def test_padding_invariance_and_reference_at_scale(attention, layer_norm, bias, positional, point):
    """Four extra PAD columns change no logit, at c = 1 and at the three saturation points, and the model agrees with
    the reference there on every well-conditioned string: in every clear decision, and in value relative to the size
    of the terms the head adds up (saturate(model, 1000) makes them huge)."""
    model = build(attention, layer_norm, positional, bias)
    tokens = make_batch(seed=3)
    real = tokens != PAD
    context, arguments = POINTS[point]
    with torch.no_grad(), context(model):
        out = model(tokens)
        padded = model(pad_more(tokens))
    torch.testing.assert_close(padded["logit"], out["logit"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded["prefix_logits"][:, : tokens.shape[1]][real], out["prefix_logits"][real],
                               rtol=1e-4, atol=1e-5)

    assert_agrees_where_well_conditioned(model, tokens, out, **arguments)


@pytest.mark.parametrize("positional", ("none", "sinusoidal"))
@pytest.mark.parametrize("layer_norm,bias", [("pre", True), ("post", True), ("branch", False), ("none", True)])
@pytest.mark.parametrize("attention", ("soft", "hard"))
def test_saturated_limit_is_the_saturated_weighting(attention, layer_norm, bias, positional):
    """saturated_limit(model) gives every layer the saturated weighting, whatever the model's own variant, and
    scale_attention's c does not change it."""
    model = build(attention, layer_norm, positional, bias)
    tokens = make_batch(seed=4)
    with torch.no_grad(), saturated_limit(model):
        out = model(tokens, internals=True)
        with scale_attention(model, 1000.0):
            sharpened = model(tokens)
    ref = reference_forward(model, tokens, weighting="saturated")
    assert_few_ill(ill_conditioned(model, tokens, ref, weighting="saturated"), at_most=0)
    assert_reference_agreement(out, ref, tokens)
    torch.testing.assert_close(sharpened["logit"], out["logit"], rtol=0, atol=0)
    if attention == "soft":
        # The override took effect: softmax weights give other logits.
        soft = reference_forward(model, tokens)["logit"]
        assert not torch.allclose(soft, ref["logit"], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("point", ("c=1", "saturate(1000)"))
@pytest.mark.parametrize("layer_norm,bias", [("pre", True), ("branch", False)])
@pytest.mark.parametrize("case", ("saturated-tolerant", "hard-tolerant", "soft-saturated_limit(0.1)"))
def test_wide_tie_tolerance_matches_reference(case, layer_norm, bias, point):
    """With a tie tolerance of 0.1 (a `tolerant` model's exact variants, or saturated_limit(model, 0.1)) several keys
    tie in many rows, so the relative threshold, the averaging over M and the leftmost pick are exercised, not just an
    argmax."""
    if case == "soft-saturated_limit(0.1)":
        model = build("soft", layer_norm, "sinusoidal", bias)
        limit, weighting, tol = (lambda: saturated_limit(model, 0.1)), "saturated", 0.1
    else:
        model = build(case.split("-")[0], layer_norm, "sinusoidal", bias, surrogate="tolerant")
        limit, weighting, tol = contextlib.nullcontext, None, model.config.tolerant_tol
    tokens = make_batch(seed=5)
    context, arguments = POINTS[point]
    with torch.no_grad(), context(model), limit():
        out = model(tokens, internals=True)
    ref = assert_agrees_where_well_conditioned(model, tokens, out, weighting=weighting, tol=tol, **arguments)
    if point == "c=1":
        assert_reference_agreement(out, ref, tokens)
    real_queries = (tokens != PAD)[None, :, None, :]
    wide = reference_forward(model, tokens, weighting="saturated", tol=tol, **arguments)["attn"]
    assert ((wide > 0).sum(dim=-1) > 1)[real_queries.expand(wide.shape[:-1])].any()
