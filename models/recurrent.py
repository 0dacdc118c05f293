"""Recurrent recognizers, the baselines the peer studies read transformers against: an LSTM and a simple (Elman, tanh)
RNN, with the Recognizer's inputs and outputs, so that the harness trains, evaluates and reports them alike.

model.kind: lstm | rnn. The model reads BOS + s one token at a time from a zero state, through model.n_layers
recurrent layers of model.d_model units; its state after BOS + s[:i] is position i, read by the same heads as the
transformer's (membership, next symbols, train.aux_losses). Layer l computes, as torch's nn.LSTM and nn.RNN do,

    lstm   i, f, g, o = x W_ih^T + b_ih + h W_hh^T + b_hh (in four parts);
           c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')  (s: the sigmoid)
    rnn    h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)

with W_ih, b_ih the weight and bias of `input_maps[l]` and W_hh, b_hh those of `state_maps[l]`, initialised as torch
initialises them (uniform in +-1/sqrt(d_model)): member i of a stacked ensemble computes what nn.LSTM / nn.RNN with its
weights computes. Stacked, every parameter carries the member axis in front and each step is one batched matmul over
the members (models/layers.py). The recurrence runs over the padding that trails a string; nothing there is read.

A recurrent model has no attention: every attention layer list is empty, so the scale sweep, the saturated limit and
the attention probes do not apply to it (the report says n/a).
"""

import math

import torch
from torch import nn

from satbench.languages.base import EOS, PAD
from satbench.models.layers import embed, linear, stacked
from satbench.models.recognizer import counts_toward_norm

GATES = {"lstm": 4, "rnn": 1}


class RecurrentRecognizer(nn.Module):
    """forward(tokens (B, T), internals=False, logit_only=False) returns the Recognizer's "logit", "prefix_logits",
    "next_logits" (with the next-symbol task), "lm_logits" and "aux_next_logits" (with train.aux_losses), and with
    internals=True "hidden" (L + 1, B, T, d): the embeddings and each layer's states."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d, gates = config.d_model, GATES[config.kind]
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        self.input_maps = nn.ModuleList([nn.Linear(d, gates * d, bias=config.bias) for _ in range(config.n_layers)])
        self.state_maps = nn.ModuleList([nn.Linear(d, gates * d, bias=config.bias) for _ in range(config.n_layers)])
        bound = 1 / math.sqrt(d)  # torch's initialisation of nn.LSTM and nn.RNN
        with torch.no_grad():
            for maps in (self.input_maps, self.state_maps):
                for p in maps.parameters():
                    p.uniform_(-bound, bound)
        self.head = nn.Linear(d, config.vocab_size if config.next_symbols else 1, bias=config.bias)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False) if "lm" in config.aux_heads else None
        self.next_head = nn.Linear(d, config.vocab_size, bias=config.bias) \
            if "next_symbols" in config.aux_heads else None
        if config.init_scale != 1:  # the parameters the norm counts, as in the Recognizer
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if counts_toward_norm(name, p.shape):
                        p.mul_(config.init_scale)

    # The knobs a transformer's training sets on its attention layers; a recurrent model has none.
    def attention_layers(self) -> list:
        return []

    def set_inverse_temperature(self, beta: float) -> None:
        pass

    def set_tie_tolerance(self, tol: float) -> None:
        pass

    def set_soft_phase(self, on: bool) -> None:
        pass

    def forward(self, tokens, internals=False, logit_only=False):
        if self.token_embedding.weight.dim() == 3:
            return self.forward_members(tokens, internals, logit_only)
        return {key: value[0] for key, value in self.forward_members(tokens[None], internals, logit_only).items()}

    def forward_members(self, tokens, internals=False, logit_only=False):
        """forward() for tokens (M, B, T), one batch per member; every output has the member axis in front."""
        padding = tokens == PAD
        x = embed(self.token_embedding, tokens)  # (M, B, T, d)
        hidden = [x]
        for input_map, state_map in zip(self.input_maps, self.state_maps, strict=True):
            x = self._layer(input_map, state_map, x)
            hidden.append(x)
        head = linear(self.head, x).masked_fill(padding[..., None], 0.0)
        prefix_logits = head[..., EOS] if self.config.next_symbols else head.squeeze(-1)
        last = (padding.shape[-1] - 1 - padding.sum(dim=-1)).clamp(min=0)  # the padding trails every string
        logit = prefix_logits.gather(-1, last[..., None]).squeeze(-1)
        if logit_only:
            return {"logit": logit}
        out = {"logit": logit, "prefix_logits": prefix_logits}
        if self.config.next_symbols:
            out["next_logits"] = head
        if self.lm_head is not None:
            out["lm_logits"] = linear(self.lm_head, x)
        if self.next_head is not None:
            out["aux_next_logits"] = linear(self.next_head, x)
        if internals:
            out["hidden"] = torch.stack(hidden, dim=1)  # (M, L + 1, B, T, d)
        return out

    def _layer(self, input_map, state_map, x):
        """One recurrent layer over x (M, B, T, d): its states (M, B, T, d). The input maps of every step are one
        matmul; the recurrence is one batched matmul per step."""
        M, B, T, d = x.shape
        inputs = linear(input_map, x)  # (M, B, T, gates * d)
        weight = stacked(state_map.weight, 2).transpose(1, 2)  # (M, d, gates * d)
        bias = None if state_map.bias is None else stacked(state_map.bias, 1).unsqueeze(1)  # (M, 1, gates * d)
        h = x.new_zeros(M, B, d)
        c = x.new_zeros(M, B, d)
        states = []
        for t in range(T):
            gates = inputs[:, :, t] + (torch.bmm(h, weight) if bias is None else torch.baddbmm(bias, h, weight))
            if self.config.kind == "lstm":
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(gates)
            states.append(h)
        return torch.stack(states, dim=2)
