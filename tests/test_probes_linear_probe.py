import math

import numpy as np
import pytest
import torch

from probes.linear_probe import counter_targets, probe_layers


def test_counter_targets_by_hand():
    t = counter_targets("anbn", ["aabb"])
    assert set(t) == {"count_diff"}
    np.testing.assert_allclose(t["count_diff"][0], [0, 1, 1, 1 / 3, 0])

    t = counter_targets("dyck1", ["(()", "()", ")("])
    assert set(t) == {"depth", "balanced"}
    np.testing.assert_allclose(t["depth"][0], [0, 1, 1, 1 / 3])
    np.testing.assert_allclose(t["depth"][2], [0, -1, 0])
    assert t["balanced"][0].tolist() == [True, False, False, False]
    assert t["balanced"][1].tolist() == [True, False, True]
    assert t["balanced"][2].tolist() == [True, False, False]  # depth returns to 0 after going below: not balanced

    t = counter_targets("equal", ["ba"])
    assert set(t) == {"count_diff", "balanced"}
    np.testing.assert_allclose(t["count_diff"][0], [0, -1, 0])
    assert t["balanced"][0].tolist() == [True, False, True]

    assert counter_targets("parity", ["0101"]) == {}


def planted(n_strings=200, d=16, seed=0):
    """Random hidden states (2, B, T, d) over strings of random lengths, PAD after each string, and the lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 21, size=n_strings)
    T = lengths.max() + 1
    tokens = np.zeros((n_strings, T), dtype=np.int64)
    for b, n in enumerate(lengths):
        tokens[b, 0] = 1
        tokens[b, 1 : n + 1] = rng.integers(2, 4, size=n)
    hidden = rng.normal(size=(2, n_strings, T, d)).astype(np.float32)
    return rng, torch.from_numpy(hidden), torch.from_numpy(tokens), lengths


def test_probe_recovers_planted_linear_feature_and_not_a_shuffled_one():
    rng, hidden, tokens, lengths = planted()
    w = rng.normal(size=hidden.shape[-1])
    # the feature lives in layer 1 only; layer 0 is independent noise
    target = [hidden[1, b, : n + 1].numpy() @ w + rng.normal(0, 0.1, size=n + 1) for b, n in enumerate(lengths)]
    scores = probe_layers(hidden, tokens, target, seed=0)
    assert set(scores) == {"r2_layer0", "r2_layer1"}
    assert scores["r2_layer1"] > 0.9
    assert scores["r2_layer0"] < 0.2

    flat = rng.permutation(np.concatenate([y[1:] for y in target]))
    shuffled, start = [], 0
    for y in target:
        shuffled.append(np.concatenate([[0.0], flat[start : start + len(y) - 1]]))
        start += len(y) - 1
    assert probe_layers(hidden, tokens, shuffled, seed=0)["r2_layer1"] < 0.2


def test_flag_probe_uses_balanced_accuracy():
    rng, hidden, tokens, lengths = planted(seed=1)
    w = rng.normal(size=hidden.shape[-1])
    # a rare flag: about 10% positive, so plain accuracy of "always False" would already be 0.9
    target = [hidden[1, b, : n + 1].numpy() @ w > 1.3 * np.linalg.norm(w) for b, n in enumerate(lengths)]
    scores = probe_layers(hidden, tokens, target, seed=0)
    assert set(scores) == {"bacc_layer0", "bacc_layer1"}
    assert scores["bacc_layer1"] > 0.9
    assert scores["bacc_layer0"] < 0.6


def test_split_is_by_string_not_by_position():
    # Each string has its own random code (the same at all its positions) and its own random target value. A probe
    # fit on some positions of a string could memorise the string's value; fit on other strings it cannot.
    rng = np.random.default_rng(3)
    n_strings, d, n = 40, 64, 12
    tokens = torch.ones(n_strings, n + 1, dtype=torch.long)
    codes = rng.normal(size=(n_strings, 1, d))
    hidden = codes + 0.01 * rng.normal(size=(n_strings, n + 1, d))
    hidden = torch.from_numpy(hidden[None].astype(np.float32))
    values = rng.normal(size=n_strings)
    target = [np.full(n + 1, v) for v in values]
    assert probe_layers(hidden, tokens, target, seed=0)["r2_layer0"] < 0.2


def test_degenerate_inputs_give_nan_or_clear_errors():
    rng, hidden, tokens, lengths = planted(n_strings=10)
    constant = [np.zeros(n + 1) for n in lengths]
    assert math.isnan(probe_layers(hidden, tokens, constant, seed=0)["r2_layer1"])
    one = probe_layers(hidden[:, :1], tokens[:1], [np.arange(lengths[0] + 1.0)], seed=0)
    assert math.isnan(one["r2_layer0"])
    too_long = [np.zeros(n + 3) for n in lengths]
    with pytest.raises(ValueError, match="real token columns"):
        probe_layers(hidden, tokens, too_long, seed=0)
    with pytest.raises(ValueError, match="number of strings"):
        probe_layers(hidden, tokens, constant[:-1], seed=0)


def test_probe_is_reproducible_from_the_seed():
    rng, hidden, tokens, lengths = planted(seed=4)
    target = [hidden[1, b, : n + 1, 0].numpy() for b, n in enumerate(lengths)]
    assert probe_layers(hidden, tokens, target, seed=7) == probe_layers(hidden, tokens, target, seed=7)
