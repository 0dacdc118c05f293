"""Checkpoints: config JSON + state_dict, loaded with weights_only, and rejected with one line when they do not fit."""

import json

import pytest
import torch

from satbench.models import BOS, Ensemble, ModelConfig, Recognizer, load, save


def config(**overrides):
    values = dict(vocab_size=7, d_model=16, n_heads=2, n_layers=2, d_ff=24, attention="saturated",
                  positional="learned", max_len=12, causal=False, bias=False)
    values.update(overrides)
    return ModelConfig(**values)


def tokens():
    t = torch.randint(3, 7, (4, 8), generator=torch.Generator().manual_seed(0))
    t[:, 0] = BOS
    return t


def test_recognizer_round_trip(tmp_path):
    torch.manual_seed(1)
    model = Recognizer(config()).eval()
    path = save(model, tmp_path / "sub" / "model.pt")
    loaded = load(path)
    assert isinstance(loaded, Recognizer) and loaded.config == model.config and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(model(tokens())["logit"], loaded(tokens())["logit"])
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.pt"]  # no temporary file left behind


def test_ensemble_round_trip(tmp_path):
    ensemble = Ensemble(config(attention="hard"), seeds=[4, 5]).eval()
    loaded = load(save(ensemble, tmp_path / "ensemble.pt"))
    assert isinstance(loaded, Ensemble) and loaded.seeds == [4, 5]
    assert torch.equal(ensemble(tokens())["logit"], loaded(tokens())["logit"])


def test_the_file_loads_with_weights_only_and_holds_the_config_as_json(tmp_path):
    path = save(Recognizer(config()), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert json.loads(payload["config"]) == config().to_dict()


def test_shape_mismatch_is_rejected_with_one_line(tmp_path):
    path = save(Recognizer(config()), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"] = json.dumps(config(d_ff=48).to_dict())  # the weights no longer fit the config
    torch.save(payload, path)
    with pytest.raises(ValueError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message
    assert message == f"{path}: parameter 'blocks.0.mlp.fc.weight' has shape (24, 16) but its config needs (48, 16)"


def test_other_bad_files_are_rejected_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such model file"):
        load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable model file"):
        load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a satbench model file"):
        load(other)
    path = save(Recognizer(config()), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"] = json.dumps({**config().to_dict(), "attention": "sofft"})
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"model\.attention: 'sofft' is not one of soft, saturated, hard"):
        load(path)
    payload["config"] = json.dumps(config().to_dict())
    payload["state_dict"]["surplus"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(ValueError, match="unexpected parameter 'surplus'"):
        load(path)
