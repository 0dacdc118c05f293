"""Recurrent recognizers, the baselines the peer studies read transformers against: an LSTM and a simple (Elman, tanh)
RNN, with the Recognizer's inputs and outputs, so that the harness trains, evaluates and reports them alike.

model.kind: lstm | rnn. The model reads BOS + s one token at a time from a zero state, through model.n_layers
recurrent layers of model.d_model units; its state after BOS + s[:i] is position i, read by the same heads as the
transformer's (membership, next symbols, train.aux_losses). Layer l computes, as torch's nn.LSTM and nn.RNN do,

    lstm   i, f, g, o = x W_ih^T + b_ih + h W_hh^T + b_hh (in four parts);
           c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')  (s: the sigmoid)
    rnn    h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)

with W_ih, b_ih the weight and bias of `input_maps[l]` and W_hh, b_hh those of `state_maps[l]`, initialised as torch
initialises them (uniform in +-1/sqrt(d_model)). Member i of a stacked ensemble computes what nn.LSTM / nn.RNN with its
weights computes, since each member's layer is torch's fused module called with that member's weights (`_layer`); every
parameter carries the member axis in front. The recurrence runs over the padding that trails a string; nothing there
is read.

A recurrent model has no attention: every attention layer list is empty, so the scale sweep, the saturated limit and
the attention probes do not apply to it (the report says n/a).
"""

import math

import torch
from torch import nn

from satbench.languages.base import PAD
from satbench.models.layers import embed, stacked
from satbench.models.recognizer import output_heads, read_heads, scale_counted_parameters

GATES = {"lstm": 4, "rnn": 1}
RECURRENT_KINDS = tuple(GATES)


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
        self.head, self.lm_head, self.next_head = output_heads(config)
        scale_counted_parameters(self, config.init_scale)

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
        out = read_heads(self, x, padding, causal=True)  # a recurrent model reads left to right
        if logit_only:
            return {"logit": out["logit"]}
        if internals:
            out["hidden"] = torch.stack(hidden, dim=1)  # (M, L + 1, B, T, d)
        return out

    def _layer(self, input_map, state_map, x):
        """One recurrent layer over x (M, B, T, d): its states (M, B, T, d), member by member through torch's own
        nn.LSTM / nn.RNN (one fused kernel over the positions, which a loop of one batched matmul per position was
        3.9 times slower than on the CPU) with the member's weights."""
        template = self._torch_layer()
        states = []
        for m in range(x.shape[0]):
            weights = {"weight_ih_l0": stacked(input_map.weight, 2)[m], "weight_hh_l0": stacked(state_map.weight, 2)[m]}
            if input_map.bias is not None:
                weights |= {"bias_ih_l0": stacked(input_map.bias, 1)[m], "bias_hh_l0": stacked(state_map.bias, 1)[m]}
            out, _ = torch.func.functional_call(template, weights, (x[m],))
            states.append(out)
        return torch.stack(states)

    def _torch_layer(self):
        """torch's one-layer module of this kind, whose own weights are never used (`_layer` passes every member's):
        built once, kept outside the module's parameters."""
        if not hasattr(self, "_template"):
            kind = torch.nn.LSTM if self.config.kind == "lstm" else torch.nn.RNN
            with torch.device("meta"):
                self._template = [kind(self.config.d_model, self.config.d_model, bias=self.config.bias,
                                       batch_first=True)]
        return self._template[0]
