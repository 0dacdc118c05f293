"""What a recognizer's outputs are measured against, for each label kind: the loss it trains on (member_losses) and the
decision it is judged by (judge_strings). Training (models/train.py) and the probes read both from here."""

import torch
import torch.nn.functional as F


def member_losses(out, labels, prefix_labels=None, next_labels=None):
    """Each member's own mean loss, shape (M,): the ensemble minimises their sum."""
    if next_labels is not None:
        known = next_labels >= 0
        losses = F.binary_cross_entropy_with_logits(out["next_logits"].float(), next_labels.clamp(min=0).float(),
                                                    reduction="none")
        return (losses * known).sum(dim=(-3, -2, -1)) / known.sum(dim=(-3, -2, -1)).clamp(min=1)
    if prefix_labels is None:
        losses = F.binary_cross_entropy_with_logits(out["logit"].float(), labels, reduction="none")
        return losses.mean(dim=-1)
    known = prefix_labels >= 0
    losses = F.binary_cross_entropy_with_logits(out["prefix_logits"].float(), prefix_labels.clamp(min=0),
                                                reduction="none")
    return (losses * known).sum(dim=(-2, -1)) / known.sum(dim=(-2, -1)).clamp(min=1)


def judge_strings(out, labels, next_labels=None):
    """Per string (M, B): right or not, its cross-entropy, and whether its logits were finite.

    Membership: the sign of the logit against the label. The next-symbol task (Bhattamishra et al. 2020): right only
    if every scored bit of every prefix is; the cross-entropy is the mean over those bits. A logit that overflowed at
    a large scale is a wrong answer, not a crash."""
    if next_labels is None:
        logit = out["logit"].float()
        finite = torch.isfinite(logit)
        right = ((logit > 0).float() == labels) & finite
        ce = F.binary_cross_entropy_with_logits(logit.nan_to_num(0.0, 1e4, -1e4), labels, reduction="none")
        return right, ce, finite
    logits = out["next_logits"].float()
    next_labels = next_labels[..., :logits.shape[-2], :]  # the batch may be cut to its longest string
    known = next_labels >= 0
    finite = (torch.isfinite(logits) | ~known).all(dim=-1).all(dim=-1)
    right = (((logits > 0) == (next_labels > 0)) | ~known).all(dim=-1).all(dim=-1) & finite
    bits = F.binary_cross_entropy_with_logits(logits.nan_to_num(0.0, 1e4, -1e4), next_labels.clamp(min=0).float(),
                                              reduction="none")
    ce = (bits * known).sum(dim=(-2, -1)) / known.sum(dim=(-2, -1)).clamp(min=1)
    return right, ce, finite
