"""Saving and loading models: one file holding the config as JSON text and the state_dict.

The file is a torch.save'd dict of plain types and tensors only, so it loads with `torch.load(weights_only=True)` and
no code from the file is ever run. A file whose tensors do not fit its config is rejected with one line naming the
first offending parameter. Writes go to a temporary file that is renamed into place, so a crash never leaves a
half-written checkpoint under the real name.
"""

import json
import os
import tempfile
from pathlib import Path

import torch

from satbench.models.ensemble import Ensemble
from satbench.models.kinds import build_model, check_state_dict
from satbench.models.recognizer import ModelConfig, Recognizer

FORMAT = "satbench-model"
VERSION = 1


def save(model: Recognizer | Ensemble, path: str | os.PathLike) -> Path:
    """Write `model` (a model built from a ModelConfig, of any model.kind, or an Ensemble) to `path`; returns the
    path."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    if isinstance(model, Ensemble):
        payload["kind"] = "ensemble"
        payload["seeds"] = list(model.seeds)
    elif isinstance(model, torch.nn.Module) and isinstance(getattr(model, "config", None), ModelConfig):
        payload["kind"] = "recognizer"  # a single model of any model.kind (a plugin's too), which the config names
    else:
        raise TypeError(f"save: expected a model built from a ModelConfig or an Ensemble, got {type(model).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Recognizer | Ensemble:
    """Read a file written by `save`. Returns the model in eval mode (call .train() to resume training)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling errors have many types; all mean the same thing here
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable model file ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a satbench model file")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: model file version {payload.get('version')!r}, this satbench reads {VERSION}")
    try:
        config = ModelConfig.from_dict(json.loads(payload["config"]))
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: unreadable model config ({error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    state_dict = payload["state_dict"]

    if payload.get("kind") == "ensemble":
        seeds = payload["seeds"]
        model = Ensemble(config, seeds)
        # Check member 0's slices against the config, so that a mismatch is named as a Recognizer parameter.
        prefix, member0 = "stacked.", {}
        for key, value in state_dict.items():
            if not key.startswith(prefix) or value.dim() == 0 or value.shape[0] != len(seeds):
                raise ValueError(f"{path}: parameter {key!r} does not hold one slice per seed ({len(seeds)} seeds)")
            member0[key[len(prefix) :]] = value[0]
        check_state_dict(config, member0, str(path))
    elif payload.get("kind") == "recognizer":
        model = build_model(config)
        check_state_dict(config, state_dict, str(path))
    else:
        raise ValueError(f"{path}: unknown model kind {payload.get('kind')!r}")
    model.load_state_dict(state_dict)
    return model.to(map_location).eval()
