"""The model of each model.kind, built from one ModelConfig: the transformer Recognizer (models/recognizer.py), a
recurrent baseline (models/recurrent.py), or a plugin's model; and the check that a state dict fits a config's model.

A plugin package registers a model under the entry-point group `satbench.models`: the entry point's name is the
kind, and it names a builder, a callable from a ModelConfig to a torch module (often the module class itself). The
module's forward contract:

    forward(tokens) -> dict      tokens (B, T) long: BOS (id 1), the string's symbols (ids 3, 4, ... in alphabet
                                 order), PAD (id 0) after it
        "logit"          (B,)    the membership logit of each string (> 0: a member)
        "prefix_logits"  (B, T)  with data.label_kind prefix: a logit per prefix, position i having read BOS + s[:i]
        "next_logits"    (B, T, vocab)  with data.label_kind next_symbols (config.next_symbols): a logit per token
                                 id that it can follow s[:i], EOS (id 2) meaning s[:i] is a member
        "lm_logits", "aux_next_logits"  (B, T, vocab)  with train.aux_losses (config.aux_heads holds "lm",
                                 "next_symbols"): the next token's logits and the next-symbol logits at each position
        "hidden"         (L + 1, B, T, d), optional: the built-in models' states, which the linear probes read; a
                                 plugin's are not read (its rows leave the linear probes out)

The harness trains it as it trains its own models (same data, batches, optimizer, losses, evaluation and rows). A
builder with `stackable = True` promises a module that torch.func.vmap can run over a member axis of its parameters,
and its members train together as a stacked ensemble; any other trains one member at a time.
"""

import importlib.metadata

import torch
from torch import nn

from satbench.models.recognizer import KINDS, ModelConfig, Recognizer
from satbench.models.recurrent import RECURRENT_KINDS, RecurrentRecognizer

PLUGIN_GROUP = "satbench.models"
_plugins: dict | None = None


def plugin_builders() -> dict:
    """{kind: builder} of the installed plugins, loaded once per process; a plugin that fails to load is named."""
    global _plugins
    if _plugins is None:
        found = {}
        for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
            if entry.name in KINDS:
                raise ValueError(f"model plugin '{entry.name}' ({entry.value}) takes the name of a built-in kind")
            try:
                found[entry.name] = entry.load()
            except Exception as error:
                raise ValueError(f"model plugin '{entry.name}' ({entry.value}) failed to load: "
                                 f"{type(error).__name__}: {error}") from error
        _plugins = found
    return _plugins


def model_kinds() -> list[str]:
    return list(KINDS) + list(plugin_builders())


def check_kind(kind: str) -> None:
    if kind not in model_kinds():
        raise ValueError(f"model.kind: {kind!r} is not one of {', '.join(model_kinds())} (a plugin registers its "
                         f"model under the entry-point group {PLUGIN_GROUP})")


def is_plugin(kind: str) -> bool:
    return kind not in KINDS


def stackable(kind: str) -> bool:
    """Whether the members of `kind` train together in one stacked ensemble."""
    return not is_plugin(kind) or bool(getattr(plugin_builders()[kind], "stackable", False))


def build_model(config: ModelConfig) -> nn.Module:
    """The model of config.kind."""
    if config.kind == "transformer":
        return Recognizer(config)
    if config.kind in RECURRENT_KINDS:
        return RecurrentRecognizer(config)
    check_kind(config.kind)
    model = plugin_builders()[config.kind](config)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model plugin '{config.kind}': its builder returned {type(model).__name__}, not a torch "
                         "module")
    if not hasattr(model, "config"):
        model.config = config  # what a checkpoint records (models/io.py)
    return model


def check_state_dict(config: ModelConfig, state_dict: dict, where: str) -> None:
    """Raise ValueError with one line if `state_dict` does not fit the model `config` builds."""
    with torch.device("meta"):
        expected = build_model(config).state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise ValueError(f"{where}: missing parameter {key!r} required by its config")
        got = tuple(state_dict[key].shape)
        if got != tuple(value.shape):
            raise ValueError(
                f"{where}: parameter {key!r} has shape {got} but its config needs {tuple(value.shape)}"
            )
    for key in state_dict:
        if key not in expected:
            raise ValueError(f"{where}: unexpected parameter {key!r} for its config")
