"""The layers of models/recognizer.py on tensors with a leading member axis M.

A parameter either is a standalone model's (an nn.Linear weight (out, in)) or carries a member axis in front (M, out,
in), as in a stacked ensemble. The functions below take the module and run one batched kernel either way, so the
Recognizer has one code path for one model and for M: a standalone model is M = 1.
"""

import torch
import torch.nn.functional as F
from torch import nn


def stacked(p: torch.Tensor, dims: int) -> torch.Tensor:
    """Parameter `p` with a member axis in front: as it is when it has one (a stacked ensemble), else as a view of
    one member. `dims` is the parameter's rank in a standalone model."""
    return p if p.dim() > dims else p.unsqueeze(0)


def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) for x (M, ..., in) and a layer whose weight is (out, in) or stacked (M, out, in): one batched matmul
    per call, the bias folded into it (baddbmm), the transposed weight read in place."""
    weight = stacked(layer.weight, 2)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if layer.bias is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(stacked(layer.bias, 1).unsqueeze(1), flat, weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


class _StackedLayerNorm(torch.autograd.Function):
    """Layer norm over the last axis of x (M, ..., d) with a per-member affine, weight and bias (M, 1, ..., 1, d).

    torch's fused layer norm takes one (d,) affine, so a stacked one runs the norm without it and then one addcmul.
    Written out, autograd would differentiate the addcmul on its own (five elementwise passes, two of them only to
    apply its implicit factor of 1); here the backward is the four passes it needs, plus the fused norm's backward."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # in fp32 under autocast, as F.layer_norm
    def forward(ctx, x, weight, bias, eps):
        normalized, mean, rstd = torch.native_layer_norm(x, x.shape[-1:], None, None, eps)
        ctx.save_for_backward(x, normalized, mean, rstd, weight)
        ctx.has_bias = bias is not None
        return normalized * weight if bias is None else torch.addcmul(bias, normalized, weight)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        x, normalized, mean, rstd, weight = ctx.saved_tensors
        members_only = tuple(range(1, x.dim() - 1))  # sum over every axis but the member axis and d (x is 4-D)
        grad_x = torch.ops.aten.native_layer_norm_backward(grad * weight, x, x.shape[-1:], mean, rstd, None, None,
                                                           [True, False, False])[0]
        grad_weight = (grad * normalized).sum(members_only, keepdim=True)
        grad_bias = grad.sum(members_only, keepdim=True) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None


def norm(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer(x) for a LayerNorm (or the Identity of layer_norm: none) on x (M, ..., d), stacked or not."""
    if isinstance(layer, nn.Identity):
        return x
    if layer.weight.dim() == 1:  # one member: torch's fused layer norm with its affine
        return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)  # (M, 1, ..., 1, d)
    bias = None if layer.bias is None else layer.bias.view(shape)
    return _StackedLayerNorm.apply(x, layer.weight.view(shape), bias, layer.eps)


def embed(layer: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
    """The embeddings of tokens (M, B, T): one lookup, into the member's own table when the weight is stacked
    (M, V, d), by offsetting each member's ids into the flattened (M * V, d) table."""
    if layer.weight.dim() == 2:
        return F.embedding(tokens, layer.weight)
    M, V = layer.weight.shape[:2]
    offsets = torch.arange(0, M * V, V, device=tokens.device).view(M, *[1] * (tokens.dim() - 1))
    return F.embedding(tokens + offsets, layer.weight.flatten(0, 1))
