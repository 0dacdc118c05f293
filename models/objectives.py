"""What a recognizer's outputs are measured against, for each label kind: the loss it trains on (member_losses) and the
decision it is judged by (judge_strings). Training (models/train.py) and the probes read both from here."""

import torch
import torch.nn.functional as F

from satbench.languages.base import EOS, PAD


def member_losses(out, labels, prefix_labels=None, next_labels=None, loss="bce"):
    """Each member's own mean loss, shape (M,): the ensemble minimises their sum. `loss` (train.loss): bce, binary
    cross-entropy on the logits; mse, the squared error of their sigmoids, as Bhattamishra et al. (2020) trained."""
    per_bit = _binary_cross_entropy if loss == "bce" else _squared_error
    if next_labels is not None:
        known = next_labels >= 0
        losses = per_bit(out["next_logits"].float(), next_labels.clamp(min=0).float())
        return (losses * known).sum(dim=(-3, -2, -1)) / known.sum(dim=(-3, -2, -1)).clamp(min=1)
    if prefix_labels is None:
        return per_bit(out["logit"].float(), labels).mean(dim=-1)
    known = prefix_labels >= 0
    losses = per_bit(out["prefix_logits"].float(), prefix_labels.clamp(min=0))
    return (losses * known).sum(dim=(-2, -1)) / known.sum(dim=(-2, -1)).clamp(min=1)


def _binary_cross_entropy(logits, targets):
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def _squared_error(logits, targets):
    return (torch.sigmoid(logits) - targets).square()


def judge_strings(out, labels, next_labels=None, prefix_labels=None):
    """Per string (M, B): right or not, its cross-entropy, and whether its logits were finite.

    Membership: the sign of the logit against the label. The next-symbol task (Bhattamishra et al. 2020): right only
    if every scored bit of every prefix is; the cross-entropy is the mean over those bits. The prefix task alike, with
    one bit per prefix, its membership. A logit that overflowed at a large scale is a wrong answer, not a crash."""
    if next_labels is None and prefix_labels is None:
        logit = out["logit"].float()
        finite = torch.isfinite(logit)
        right = ((logit > 0).float() == labels) & finite
        ce = F.binary_cross_entropy_with_logits(logit.nan_to_num(0.0, 1e4, -1e4), labels, reduction="none")
        return right, ce, finite
    if next_labels is not None:
        logits, targets = out["next_logits"].float(), next_labels
    else:
        logits, targets = out["prefix_logits"].float()[..., None], prefix_labels[..., None]
    targets = targets[..., :logits.shape[-2], :]  # the batch may be cut to its longest string
    known = targets >= 0
    finite = (torch.isfinite(logits) | ~known).all(dim=-1).all(dim=-1)
    right = (((logits > 0) == (targets > 0)) | ~known).all(dim=-1).all(dim=-1) & finite
    bits = F.binary_cross_entropy_with_logits(logits.nan_to_num(0.0, 1e4, -1e4), targets.clamp(min=0).float(),
                                              reduction="none")
    ce = (bits * known).sum(dim=(-2, -1)) / known.sum(dim=(-2, -1)).clamp(min=1)
    return right, ce, finite


def auxiliary_losses(out, tokens, labels, aux_next_labels, weights):
    """FLaRe's auxiliary losses (Butoi et al. 2025; train.aux_losses), each member's weighted sum, shape (M,).

    Both read the members of the batch only, at every position of BOS + s, n + 1 of them: "lm_logits" against the
    next token (EOS after the last symbol), by cross-entropy; "aux_next_logits" against the set of symbols (and EOS)
    that can follow, by binary cross-entropy averaged over the scored ids. Each is a mean per string, summed over the
    batch's members and divided by the batch's size, members and non-members alike, as FLaRe normalises them. `weights`
    maps a head's name to its (M,) coefficients."""
    for name, key in (("lm", "lm_logits"), ("next_symbols", "aux_next_logits")):
        if name in weights and key not in out:  # a plugin's model that ignores config.aux_heads
            raise ValueError(f"train.aux_losses: {name} needs the model's output {key!r}, which it does not return")
    real = tokens != PAD  # (M, B, T)
    member = labels > 0.5  # (M, B)
    batch = labels.shape[-1]
    total = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device)
    if "lm_logits" in out:
        following = torch.cat([tokens[..., 1:], torch.full_like(tokens[..., :1], PAD)], dim=-1)
        target = following.masked_fill(real & (following == PAD), EOS)  # EOS right after the last symbol
        logits = out["lm_logits"].float()
        ce = F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none").view_as(target)
        per_string = (ce * real).sum(-1) / real.sum(-1).clamp(min=1)
        total = total + weights["lm"] * (per_string * member).sum(-1) / batch
    if "aux_next_logits" in out:
        targets = aux_next_labels[..., :tokens.shape[-1], :]  # the batch may be cut to its longest string
        known = targets >= 0
        bits = F.binary_cross_entropy_with_logits(out["aux_next_logits"].float(), targets.clamp(min=0).float(),
                                                  reduction="none")
        per_position = (bits * known).sum(-1) / known.sum(-1).clamp(min=1)
        scored = known.any(-1)
        per_string = (per_position * scored).sum(-1) / scored.sum(-1).clamp(min=1)
        total = total + weights["next_symbols"] * (per_string * member).sum(-1) / batch
    return total
