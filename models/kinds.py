"""The model of each model.kind: the transformer Recognizer (models/recognizer.py) or a recurrent baseline
(models/recurrent.py), built from one ModelConfig, and the check that a state dict fits the model a config builds."""

import torch
from torch import nn

from satbench.models.recognizer import ModelConfig, Recognizer
from satbench.models.recurrent import RecurrentRecognizer


def build_model(config: ModelConfig) -> nn.Module:
    """The model of config.kind."""
    return Recognizer(config) if config.kind == "transformer" else RecurrentRecognizer(config)


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
