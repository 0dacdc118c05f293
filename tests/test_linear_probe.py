import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from satbench.probes.linear_probe import counter_targets, probe_layers


def test_counter_targets_by_hand():
    t = counter_targets("anbn", ["aabb"])
    assert set(t) == {"count_diff", "prefix_member"}
    np.testing.assert_allclose(t["count_diff"][0], [0, 1, 1, 1 / 3, 0])
    assert t["prefix_member"][0].tolist() == [False, False, False, False, True]

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

    t = counter_targets("parity", ["0101"])  # no counter: the default prefix flag only
    assert set(t) == {"prefix_member"}
    assert t["prefix_member"][0].tolist() == [False, False, True, True, False]


def test_a_language_declaring_nothing_has_no_targets(registry):
    from satbench import languages

    @languages.register
    class Silent(languages.Language):
        """Strings of a's."""

        name = "silent"
        alphabet = "a"
        prefix_flag = None

        def accepts(self, s):
            return set(s) <= {"a"}

        def sample(self, rng, n):
            return "a" * n

    assert counter_targets("silent", ["aaa"]) == {}


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


def test_states_of_a_collapsed_model_still_give_a_score():
    # A model whose norm weight decay drove to zero has features of ~1e-45 in float32: the scaler's scale, cast back
    # to float32, rounded to 0 and the states became NaN (Ridge raised and the bench lost the group's training).
    rng, hidden, tokens, lengths = planted()
    w = rng.normal(size=hidden.shape[-1])
    target = [hidden[1, b, : n + 1].numpy() @ w for b, n in enumerate(lengths)]
    hidden = hidden.clone().float()
    hidden[0, ..., 0] = torch.tensor(rng.choice([0.0, 1e-45], size=hidden.shape[1:3]), dtype=torch.float32)
    for kind, y in (("continuous", target), ("flag", [t > 0 for t in target])):
        scores = probe_layers(hidden, tokens, y, seed=0, kind=kind)
        assert all(math.isfinite(v) for v in scores.values()), scores


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


# --- end to end on a Recognizer -------------------------------------------------------------------------------------


def split_of(strings, alphabet="ab"):
    """A stand-in for a dataset split: .tokens (BOS = 1, symbol k = 3 + k, EOS = 2 at the end, PAD = 0 after)."""
    T = max(len(s) for s in strings) + 2
    tokens = torch.zeros(len(strings), T, dtype=torch.long)
    for b, s in enumerate(strings):
        tokens[b, : len(s) + 2] = torch.tensor([1] + [3 + alphabet.index(x) for x in s] + [2])
    return SimpleNamespace(tokens=tokens)


def test_decode_strings():
    from satbench.probes.linear_probe import decode_strings

    assert decode_strings(split_of(["abba", "", "b"]).tokens, "ab") == ["abba", "", "b"]


def counting_model():
    """One causal layer whose head ties on every score, so it averages the value +1 ('a') / -1 ('b') / 0 (BOS) over
    BOS and the prefix: dimension 3 of layer 1 holds (#a - #b) / (i + 1) at column i. Layer 0 holds only the
    current symbol."""
    from satbench.models import ModelConfig, Recognizer

    d = 8
    model = Recognizer(ModelConfig(vocab_size=5, d_model=d, n_heads=1, n_layers=1, d_ff=8, layer_norm="none",
                                   positional="none"))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.token_embedding.weight[3, 2] = 1.0
        model.token_embedding.weight[4, 2] = -1.0
        model.blocks[0].attn.qkv.weight[2 * d + 2, 2] = 1.0  # value reads dimension 2
        model.blocks[0].attn.proj.weight[3, 2] = 1.0  # and writes to dimension 3
    return model


# Language objects as the probe reads them (name and alphabet), so these tests do not depend on the registry.
MAJORITY = SimpleNamespace(name="majority", alphabet="ab")
DYCK1 = SimpleNamespace(name="dyck1", alphabet="()")


def random_strings(n, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ab"), size=rng.integers(6, 17))) for _ in range(n)]


def test_linear_probe_metrics_finds_the_counter_the_model_computes():
    from satbench.probes.linear_probe import linear_probe_metrics

    model = counting_model()
    split = split_of(random_strings(200))
    before = torch.random.get_rng_state()
    metrics = linear_probe_metrics(model, split, MAJORITY, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)  # building the control does not move the caller's RNG
    # majority's counter, and the prefix flag every language has by default
    assert set(metrics) == {f"{who}_{target}_{where}" for who in ("probe", "probe_control")
                            for target in ("count_diff_r2", "prefix_member_bacc")
                            for where in ("layer0", "layer1", "best")}
    assert metrics["probe_count_diff_r2_layer1"] > 0.9
    assert metrics["probe_count_diff_r2_layer0"] < metrics["probe_count_diff_r2_layer1"]
    assert metrics["probe_count_diff_r2_best"] == metrics["probe_count_diff_r2_layer1"]
    assert metrics == linear_probe_metrics(model, split, MAJORITY, seed=0)


def test_linear_probe_metrics_keys_for_dyck_and_languages_without_counters():
    from satbench.models import ModelConfig, Recognizer
    from satbench.probes.linear_probe import linear_probe_metrics

    torch.manual_seed(0)
    model = Recognizer(ModelConfig(vocab_size=5, d_model=8, n_heads=2, n_layers=2, d_ff=16))
    rng = np.random.default_rng(1)
    strings = ["".join(rng.choice(list("()"), size=rng.integers(4, 13))) for _ in range(120)]
    metrics = linear_probe_metrics(model, split_of(strings, alphabet="()"), DYCK1, seed=0)
    for who in ("probe", "probe_control"):
        for layer in range(3):
            assert f"{who}_depth_r2_layer{layer}" in metrics
            assert 0.0 <= metrics[f"{who}_balanced_bacc_layer{layer}"] <= 1.0
    parity = linear_probe_metrics(model, split_of(["01", "10", "11"], alphabet="01"), "parity", seed=0)
    assert parity and all("_prefix_member_bacc_" in key for key in parity)  # no counter: the flag only


@pytest.mark.parametrize("name", ["anbn", "majority", "equal", "dyck1", "shuffle2", "anbncn"])
def test_counter_languages_declare_counters_over_their_own_alphabet(name):
    from satbench.languages.base import get_language

    language = get_language(name)
    assert language.counters, f"{name} declares no counter"
    for up, down in language.counters.values():
        assert {up, down} <= set(language.alphabet) and up != down


def test_decoded_strings_of_a_real_dataset_are_its_strings():
    from satbench.data import make_dataset
    from satbench.probes.linear_probe import decode_strings

    data = make_dataset("dyck1", train_lengths=(2, 10), test_lengths=(2, 12), train_size=50, test_per_length=4, seed=0)
    assert decode_strings(data.test.tokens, "()") == list(data.test.strings)
    targets = counter_targets("dyck1", data.test.strings)
    # membership and the final balanced flag agree on Dyck-1 (a balanced whole string is a member)
    assert [bool(t[-1]) for t in targets["balanced"]] == [bool(y) for y in data.test.labels.tolist()]


@pytest.mark.slow  # worker processes: about 3 s of torch and scikit-learn imports in each
def test_linear_probes_spread_over_worker_processes_give_the_same_numbers(monkeypatch, tiny_config):
    from satbench.harness import config as C
    from satbench.harness.run import build_dataset
    from satbench.models.train import train_ensemble
    from satbench.probes import ProbeRun, linear_probe

    raw = C.apply_overrides(tiny_config, ["languages=[majority, dyck1, first]", "model.attention=soft",
                                          "train.steps=5", "probes.strings=16"])
    cells = C.expand(raw).cells
    datasets = [build_dataset(cell, {}) for cell in cells]
    run = ProbeRun(cells=cells, datasets=datasets, device=torch.device("cpu"))
    ensemble, logs = train_ensemble(cells[0].model, cells[0].train, run.seeds,
                                    [d.train for d in datasets], torch.device("cpu"), progress=False)
    run.finish(ensemble, logs)
    monkeypatch.setattr(linear_probe, "cpu_count", lambda: 2)  # two workers even on a one-core machine

    def probe(members_per_worker):
        monkeypatch.setattr(linear_probe, "MEMBERS_PER_PROBE_WORKER", members_per_worker)
        return linear_probe.LinearProbes(run).measure(run)

    alone, spread = probe(10**6), probe(1)
    assert any("probe_count_diff_r2_best" in member for member in alone)  # the counter languages were probed
    first = [m for m, d in zip(alone, datasets) if d.language == "first"]
    # A language without counters gets its prefix flag only.
    assert first and all({k.split("_")[1] for k in m if k.startswith("probe_")} <= {"prefix", "control"} for m in first)
    assert all("probe_prefix_member_bacc_best" in m for m in first)
    for a, b in zip(alone, spread, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key.startswith("probe_"):
                assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key]))
