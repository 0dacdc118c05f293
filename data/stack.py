"""The splits of several datasets padded into one (M, N, T) block: how a stacked ensemble reads M members' data in one
pass (each member its own dataset)."""

from dataclasses import dataclass

import torch

from satbench.languages.base import STRING_KINDS


@dataclass
class StackedSplit:
    """The splits of M datasets padded to one (M, N, T) block; `count[i]` rows of member i are real."""

    tokens: torch.Tensor  # (M, N, T) long
    labels: torch.Tensor  # (M, N) float
    prefix_labels: torch.Tensor | None  # (M, N, T) float, -1 where there is no label
    lengths: torch.Tensor  # (M, N) long, -1 on padding rows
    count: torch.Tensor  # (M,) long
    next_labels: torch.Tensor | None = None  # (M, N, T, vocab) int8, -1 where there is no label
    # (M, N) long: the index of each string's kind in STRING_KINDS, -1 on padding rows and for splits without kinds.
    # A tensor rather than names, so that the kinds follow any gather of the rows.
    kinds: torch.Tensor | None = None


def stack_splits(splits, device, tokens_only=False):
    """(M, N, T) blocks of the splits; with tokens_only, just the token block (for anything with `.tokens`)."""
    M = len(splits)
    N = max(len(s.tokens) for s in splits)
    T = max(s.tokens.shape[1] for s in splits)
    tokens = torch.zeros(M, N, T, dtype=torch.long)
    for i, s in enumerate(splits):
        tokens[i, :s.tokens.shape[0], :s.tokens.shape[1]] = s.tokens
    if tokens_only:
        return tokens.to(device)
    labels = torch.zeros(M, N)
    lengths = torch.full((M, N), -1, dtype=torch.long)
    has_prefix = splits[0].prefix_labels is not None
    prefix = torch.full((M, N, T), -1.0) if has_prefix else None
    has_next = getattr(splits[0], "next_labels", None) is not None
    next_ = torch.full((M, N, T, splits[0].next_labels.shape[-1]), -1, dtype=torch.int8) if has_next else None
    kinds = torch.full((M, N), -1, dtype=torch.long)
    code = {kind: k for k, kind in enumerate(STRING_KINDS)}
    for i, s in enumerate(splits):
        n, t = s.tokens.shape
        labels[i, :n] = s.labels
        lengths[i, :n] = s.lengths
        if has_prefix:
            prefix[i, :n, :t] = s.prefix_labels
        if has_next:
            next_[i, :n, :t] = s.next_labels
        if getattr(s, "kinds", None) is not None:
            kinds[i, :n] = torch.tensor([code[kind] for kind in s.kinds], dtype=torch.long)
    count = torch.tensor([len(s.labels) for s in splits])
    to = lambda x: None if x is None else x.to(device)  # noqa: E731
    return StackedSplit(to(tokens), to(labels), to(prefix), to(lengths), to(count), to(next_), to(kinds))
