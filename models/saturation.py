"""The three ways to push a model towards saturation, as context managers over a Recognizer or an Ensemble, and the
one way to measure it with the exact forward.

    saturate(model, c)         every parameter multiplied by c: the paper's f(x; c * theta), with c = 1000 there
    scale_attention(model, c)  only the attention scores multiplied by c: softmax(c * s) in every layer
    saturated_limit(model)     every attention layer computes exact saturated attention: the c = inf point (with an
                               optional relative tie tolerance, for the tolerance sweep; `layers` saturates only some)
    uniform_attention(model)   every attention layer weighs its allowed keys uniformly: the c -> 0 end, a control
    eval_mode(model)           the exact forward (model.eval(); saturated and hard attention train through a surrogate)

Each restores the model exactly on exit, also when the body raises. `saturate` keeps a copy of the parameters and
copies it back, because dividing by c again would not give the original bits.
"""

import math
from contextlib import contextmanager

import torch
from torch import nn

from satbench.models.attention import SelfAttention


def attention_layers(model: nn.Module) -> list[SelfAttention]:
    """Every attention layer in a Recognizer, an Ensemble or any module holding them."""
    return [m for m in model.modules() if isinstance(m, SelfAttention)]


def _check_finite(what: str, c: float) -> float:
    c = float(c)
    if not math.isfinite(c):
        raise ValueError(f"{what}: c = {c} is not finite; use saturated_limit(model) for the c = inf point")
    return c


@contextmanager
def saturate(model: nn.Module, c: float):
    """Multiply every parameter by c inside the block; the original values come back bit-exactly on exit."""
    c = _check_finite("saturate", c)
    params = list(model.parameters())
    with torch.no_grad():
        originals = [p.detach().clone() for p in params]
        for p in params:
            p.mul_(c)
    try:
        yield model
    finally:
        with torch.no_grad():
            for p, original in zip(params, originals, strict=True):
                p.copy_(original)


@contextmanager
def scale_attention(model: nn.Module, c: float):
    """Multiply the attention scores of every layer by c inside the block (on top of any scale already set)."""
    c = _check_finite("scale_attention", c)
    layers = attention_layers(model)
    before = [layer.logit_scale for layer in layers]
    for layer in layers:
        layer.logit_scale = layer.logit_scale * c
    try:
        yield model
    finally:
        for layer, scale in zip(layers, before, strict=True):
            layer.logit_scale = scale


def _chosen_layers(model: nn.Module, layers) -> list[SelfAttention]:
    """The attention layers of `model` at the indices `layers` (in `attention_layers` order), or all of them."""
    every = attention_layers(model)
    if layers is None:
        return every
    layers = [int(i) for i in layers]
    if any(not 0 <= i < len(every) for i in layers):
        raise ValueError(f"layers: {layers} are not indices of the model's {len(every)} attention layers")
    return [every[i] for i in layers]


@contextmanager
def _override(model: nn.Module, weighting: str, layers=None, tol: float | None = None):
    """The chosen layers evaluate `weighting` (an exact variant or a control, see models.attention.CONTROLS) inside
    the block, with tie tolerance `tol` if given; every knob comes back on exit."""
    chosen = _chosen_layers(model, layers)
    before = [(layer.exact_override, layer.tol) for layer in chosen]
    for layer in chosen:
        layer.exact_override = weighting
        if tol is not None:
            layer.tol = float(tol)
    try:
        yield model
    finally:
        for layer, (override, own_tol) in zip(chosen, before, strict=True):
            layer.exact_override, layer.tol = override, own_tol


@contextmanager
def saturated_limit(model: nn.Module, tol: float | None = None, layers=None):
    """Every attention layer evaluates exact saturated attention inside the block, in train and eval mode alike
    (it has no gradient with respect to the scores), with relative tie tolerance `tol` (default: the tolerance in
    effect, each layer's own unless an enclosing saturated_limit set one).

    `layers`: indices into `attention_layers(model)` (block order, also for an Ensemble, whose members share one
    layer per block) of the only layers to saturate; the others compute what they would without the block. None: all.
    """
    with _override(model, "saturated", layers, tol):
        yield model


@contextmanager
def uniform_attention(model: nn.Module):
    """Every attention layer weighs the keys its queries may see uniformly inside the block, whatever their scores:
    what softmax(c s) tends to as c -> 0, the control at the other end of the sweep from `saturated_limit`. What a
    model decides here it decides without looking at which keys score highest."""
    with _override(model, "uniform"):
        yield model


@contextmanager
def eval_mode(model: nn.Module):
    """model.eval() inside the block; the training mode comes back on exit, also when the body raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
