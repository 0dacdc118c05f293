"""The layers of models/recognizer.py on tensors with a leading member axis M.

A parameter either is a standalone model's (an nn.Linear weight (out, in)) or carries a member axis in front (M, out,
in), as in a stacked ensemble. The functions below take the module and run one batched kernel either way, so the
Recognizer has one code path for one model and for M: a standalone model is M = 1. One function differs by more than
a kernel's rounding: `norm_linear` folds a stacked norm's affine into the map after it.
"""

import torch
import torch.nn.functional as F
from torch import nn


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in fp32, or as it is when it is fp32 or wider (a float64 model keeps its precision)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


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


class _NormLinear(torch.autograd.Function):
    """linear(LN(x)) for x (M, N, d) with a per-member affine in the norm, ln_weight and ln_bias (M, d), and a
    per-member linear map, weight (M, out, d) and bias (M, out), without materialising the norm's affine output.

    The affine is folded into the map, which is parameter-sized: LN(x) W^T + b = x_hat (W * w)^T + (b + W ln_b), where
    x_hat is the norm without affine. So the activations go through the fused norm and one matmul each way, and the
    affine's passes over them (its forward, and the backward's two products with the gradient and two sums) become
    products of (M, out, d) tensors. The gradient of the folded map, x_hat^T dy, gives the original ones:
        dW = dW' * w + db' ln_b^T,   dw = sum_out(dW' * W),   d(ln_b) = W^T db',   db = db' = sum over tokens of dy.
    Under autocast the norm runs in fp32 and the matmuls in the autocast dtype, as F.layer_norm and a Linear would:
    by hand, since custom_fwd's cast_inputs (as in _StackedLayerNorm) would run the matmuls in fp32 too."""

    @staticmethod
    def forward(ctx, x, ln_weight, ln_bias, weight, bias, eps):
        device = x.device.type
        autocast = torch.is_autocast_enabled(device) and x.dtype == torch.float32  # autocast leaves float64 alone
        dtype = torch.get_autocast_dtype(device) if autocast else x.dtype
        with torch.autocast(device, enabled=False):
            normalized, mean, rstd = torch.native_layer_norm(at_least_fp32(x), x.shape[-1:], None, None, eps)
            folded = weight * ln_weight[:, None, :]  # (M, out, d)
            shift = None if bias is None else bias[:, None, :]  # (M, 1, out)
            if ln_bias is not None and shift is None:
                shift = torch.bmm(ln_bias[:, None, :], weight.transpose(1, 2))
            elif ln_bias is not None:
                shift = torch.baddbmm(shift, ln_bias[:, None, :], weight.transpose(1, 2))
            normalized, folded_cast = normalized.to(dtype), folded.to(dtype)
            if shift is None:
                out = torch.bmm(normalized, folded_cast.transpose(1, 2))
            else:
                out = torch.baddbmm(shift.to(dtype), normalized, folded_cast.transpose(1, 2))
        ctx.save_for_backward(x, normalized, mean, rstd, ln_weight, ln_bias, weight, folded_cast)
        ctx.has_shift = shift is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, normalized, mean, rstd, ln_weight, ln_bias, weight, folded = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x = grad_ln_weight = grad_ln_bias = grad_weight = grad_bias = None
        with torch.autocast(x.device.type, enabled=False):
            if needs[0]:
                grad_normalized = at_least_fp32(torch.bmm(grad, folded))
                grad_x = torch.ops.aten.native_layer_norm_backward(
                    grad_normalized, at_least_fp32(x), x.shape[-1:], mean, rstd, None, None, [True, False, False]
                )[0].to(x.dtype)
            # (M, d, out): the layout in which the flat parameter buffer holds a linear weight (models/ensemble.py).
            grad_folded = torch.bmm(normalized.transpose(1, 2), grad).to(weight.dtype)
            grad_shift = grad.sum(dim=1, dtype=weight.dtype) if ctx.has_shift else None  # (M, out)
            if needs[3]:
                grad_weight = grad_folded * ln_weight[:, :, None]
                if ln_bias is not None:
                    grad_weight = torch.baddbmm(grad_weight, ln_bias[:, :, None], grad_shift[:, None, :])
                grad_weight = grad_weight.transpose(1, 2)
            if needs[1]:
                grad_ln_weight = (grad_folded * weight.transpose(1, 2)).sum(dim=2)
            if needs[2]:
                grad_ln_bias = torch.bmm(grad_shift[:, None, :], weight).squeeze(1)
            if needs[4]:
                grad_bias = grad_shift
        return grad_x, grad_ln_weight, grad_ln_bias, grad_weight, grad_bias, None


def norm_linear(ln: nn.Module | None, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """linear(layer, norm(ln, x)), or linear(layer, x) for ln None: a pre-LN block's norm and the map that reads it.
    Stacked, the norm's affine is folded into the map (_NormLinear) where the activations outweigh the map, which
    spares the passes over them that a per-member affine costs; a standalone model's fused layer norm applies its
    (d,) affine in the same kernel."""
    if ln is None:
        return linear(layer, x)
    if isinstance(ln, nn.Identity) or ln.weight.dim() == 1 or x[0].numel() <= layer.weight[0].numel():
        return linear(layer, norm(ln, x))
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    out = _NormLinear.apply(flat, ln.weight, ln.bias, stacked(layer.weight, 2),
                            None if layer.bias is None else stacked(layer.bias, 1), ln.eps)
    return out.view(*x.shape[:-1], out.shape[-1])


def embed(layer: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
    """The embeddings of tokens (M, B, T): one lookup, into the member's own table when the weight is stacked
    (M, V, d), by offsetting each member's ids into the flattened (M * V, d) table."""
    if layer.weight.dim() == 2:
        return F.embedding(tokens, layer.weight)
    M, V = layer.weight.shape[:2]
    offsets = torch.arange(0, M * V, V, device=tokens.device).view(M, *[1] * (tokens.dim() - 1))
    return F.embedding(tokens + offsets, layer.weight.flatten(0, 1))
