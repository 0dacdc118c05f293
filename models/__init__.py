"""Recognizers with soft, saturated or hard attention, the saturation operations, stacked ensembles and checkpoints."""

from satbench.languages.base import BOS, EOS, PAD
from satbench.models.attention import (
    SURROGATES,
    VARIANTS,
    SelfAttention,
    Weighting,
    annealed_inverse_temperature,
    get_variant,
    hard_weights,
    register_variant,
    saturated_set,
    saturated_weights,
    soft_weights,
    straight_through,
)
from satbench.models.ensemble import Ensemble
from satbench.models.io import load, save
from satbench.models.recognizer import ModelConfig, Recognizer, parameter_norm
from satbench.models.saturation import (
    attention_layers,
    eval_mode,
    saturate,
    saturated_limit,
    scale_attention,
    uniform_attention,
)

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SURROGATES",
    "VARIANTS",
    "Ensemble",
    "ModelConfig",
    "Recognizer",
    "SelfAttention",
    "Weighting",
    "annealed_inverse_temperature",
    "attention_layers",
    "eval_mode",
    "get_variant",
    "hard_weights",
    "load",
    "parameter_norm",
    "saturate",
    "saturated_limit",
    "register_variant",
    "saturated_set",
    "saturated_weights",
    "save",
    "scale_attention",
    "soft_weights",
    "straight_through",
    "uniform_attention",
]
