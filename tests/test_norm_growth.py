import math

import numpy as np
import pytest
import torch
from torch import nn

from satbench.probes.norm_growth import (
    counted_parameters,
    direction_cosines,
    fit_power_law,
    fit_sqrt,
    fit_squared_norm,
    layer_of,
    member_norm_entries,
    norm_growth_metrics,
    norm_log_entry,
    norm_per_layer,
    parameter_norm_total,
    parameter_vector,
)

STEPS = np.arange(0, 10_001, 100)


def planted_sqrt(a=2.0, b=5.0, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return a * np.sqrt(STEPS) + b + rng.normal(0.0, noise, size=STEPS.shape)


def test_fit_sqrt_recovers_planted_coefficients():
    fit = fit_sqrt(STEPS, planted_sqrt(a=2.0, b=5.0, noise=0.5))
    # noise 0.5 on a signal that reaches 200: a within 1%, b within 0.5 (about 4 standard errors of the intercept)
    assert fit["a"] == pytest.approx(2.0, rel=0.01)
    assert fit["b"] == pytest.approx(5.0, abs=0.5)
    assert fit["r2"] > 0.999


def test_fit_sqrt_r2_is_low_for_noise():
    rng = np.random.default_rng(1)
    assert fit_sqrt(STEPS, rng.normal(10.0, 1.0, size=STEPS.shape))["r2"] < 0.2


def test_power_law_recovers_exponent_with_interval():
    t = STEPS[1:]
    rng = np.random.default_rng(2)
    norms = 3.0 * t**0.7 * np.exp(rng.normal(0.0, 0.02, size=t.shape))
    fit = fit_power_law(t, norms)
    assert fit["gamma"] == pytest.approx(0.7, abs=0.01)
    assert fit["gamma_lo"] < 0.7 < fit["gamma_hi"]
    assert fit["gamma_hi"] - fit["gamma_lo"] < 0.02
    assert fit["r2"] > 0.99


def test_power_law_of_pure_sqrt_is_one_half():
    fit = fit_power_law(STEPS, 2.0 * np.sqrt(STEPS))  # step 0 (norm 0) must be skipped, not crash the log
    assert fit["gamma"] == pytest.approx(0.5, abs=1e-9)


def test_metrics_on_planted_series_recover_sqrt_and_growth_exponent():
    norms = planted_sqrt(a=2.0, b=5.0, noise=0.05)
    log = [{"step": int(s), "norm": float(n)} for s, n in zip(STEPS, norms, strict=True)]
    m = norm_growth_metrics(log)
    assert m["sqrt_a"] == pytest.approx(2.0, rel=0.01)
    assert m["sqrt_b"] == pytest.approx(5.0, abs=0.2)
    # the growth over the initial norm is exactly 2 sqrt(t); the raw norm's exponent is pulled below 1/2 by b
    assert m["growth_gamma"] == pytest.approx(0.5, abs=0.02)
    assert m["gamma"] < m["growth_gamma"]
    assert m["norm_initial"] == pytest.approx(5.0, abs=0.2)
    assert math.isnan(m["cos_first_last"])  # no parameter vectors were logged


def test_metrics_with_large_initial_norm_give_gamma_one_half_without_offset():
    log = [{"step": int(s), "norm": float(2.0 * np.sqrt(s))} for s in STEPS]
    assert norm_growth_metrics(log)["gamma"] == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_short_logs_give_nan_not_errors(n):
    log = [
        {"step": s, "norm": 1.0 + s, "norm_per_layer": {"blocks.0": 1.0 + s}, "params": np.ones(3)} for s in range(n)
    ]
    m = norm_growth_metrics(log)
    for key in ("sqrt_a", "sqrt_r2", "gamma", "gamma_lo", "growth_gamma"):
        assert math.isnan(m[key]), key
    # two logged vectors are enough for one cosine
    assert math.isnan(m["cos_consecutive_last"]) == (n < 2)


def test_shrinking_norm_gives_nan_growth_exponent():
    log = [{"step": int(s), "norm": float(100.0 / (1 + s))} for s in STEPS]
    m = norm_growth_metrics(log)
    assert math.isnan(m["growth_gamma"])
    assert m["gamma"] < 0


def test_direction_cosines():
    u = np.array([1.0, 0.0])
    v = np.array([1.0, 1.0])
    cos = direction_cosines([u, 2 * u, v, np.zeros(2)])
    assert cos[0] == pytest.approx(1.0)
    assert cos[1] == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(cos[2])
    assert direction_cosines([u]) == []


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding = nn.Embedding(5, 4)
        self.position_embedding = nn.Parameter(torch.ones(8, 4))
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.head = nn.Linear(4, 1)
        self.temperature = nn.Parameter(torch.tensor(3.0))
        self.frozen = nn.Parameter(torch.ones(4), requires_grad=False)


def test_norm_per_layer_rule():
    torch.manual_seed(0)
    model = Toy()
    names = [n for n, _ in counted_parameters(model)]
    assert names == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias", "head.weight", "head.bias"]
    per_layer = norm_per_layer(model)
    assert set(per_layer) == {"blocks.0", "blocks.1", "head"}
    b0 = model.blocks[0]
    expected = torch.cat([b0.weight.reshape(-1), b0.bias]).norm().item()
    assert per_layer["blocks.0"] == pytest.approx(expected, rel=1e-6)
    vec = parameter_vector(model)
    assert vec.dtype == np.float32 and vec.shape == (4 * 4 * 2 + 4 * 2 + 4 + 1,)
    assert parameter_norm_total(per_layer) == pytest.approx(float(np.linalg.norm(vec.astype(np.float64))), rel=1e-6)


def test_norm_per_layer_of_a_recognizer_matches_models_parameter_norm():
    from satbench.models import ModelConfig, Recognizer, parameter_norm

    torch.manual_seed(0)
    model = Recognizer(ModelConfig(vocab_size=5, n_layers=2, positional="learned"))
    per_layer = norm_per_layer(model)
    assert set(per_layer) == {"blocks.0", "blocks.1", "ln_f", "head"}
    assert parameter_norm_total(per_layer) == pytest.approx(parameter_norm(model), rel=1e-9)


def test_member_entries_of_an_ensemble_match_its_members():
    from satbench.models import Ensemble, ModelConfig

    ensemble = Ensemble(ModelConfig(vocab_size=5, n_layers=2, positional="fraction"), seeds=[0, 1, 2])
    entries = member_norm_entries(ensemble)
    norms = ensemble.parameter_norm()
    assert len(entries) == 3
    for i, entry in enumerate(entries):
        member = ensemble.member(i)
        assert entry["norm_per_layer"] == pytest.approx(norm_per_layer(member), rel=1e-9)
        assert parameter_norm_total(entry["norm_per_layer"]) == pytest.approx(norms[i].item(), rel=1e-9)
        np.testing.assert_array_equal(entry["params"], parameter_vector(member))
    assert not np.array_equal(entries[0]["params"], entries[1]["params"])


def test_layer_of():
    assert layer_of("blocks.3.attn.q.weight") == "blocks.3"
    assert layer_of("head.weight") == "head"


def test_log_entries_feed_metrics():
    torch.manual_seed(0)
    model = Toy()
    log = []
    for step in range(4):
        log.append(norm_log_entry(model, step * 10))
        with torch.no_grad():
            for _, p in counted_parameters(model):
                p.mul_(1.5)  # pure scaling: direction fixed, norm grows
    m = norm_growth_metrics(log)
    assert m["cos_first_last"] == pytest.approx(1.0, abs=1e-6)
    assert m["cos_consecutive_min"] == pytest.approx(1.0, abs=1e-6)
    assert m["norm_ratio"] == pytest.approx(1.5**3, rel=1e-5)
    assert m["norm_ratio_blocks.1"] == pytest.approx(1.5**3, rel=1e-5)
    assert set(log[0]) == {"step", "norm", "norm_per_layer", "params"}


def test_the_squared_norm_of_a_planted_sqrt_series_is_a_line():
    steps = np.geomspace(1, 1e5, 40).round()
    norms = np.sqrt(300.0 + 0.02 * steps)  # ||theta||^2 = 300 + 0.02 t: sqrt(t) growth from a norm of 17.3
    fit = fit_squared_norm(steps, norms)
    assert fit["slope"] == pytest.approx(0.02, rel=1e-6)
    assert fit["intercept"] == pytest.approx(300.0, rel=1e-6)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-9)
    metrics = norm_growth_metrics([{"step": t, "norm": n} for t, n in zip(steps, norms)])
    assert metrics["sq_slope"] == pytest.approx(0.02, rel=1e-6)
    # A norm that saturates (grows like log t) fits a line in t badly.
    assert fit_squared_norm(steps, 17.3 + np.log1p(steps))["r2"] < 0.8


def test_the_late_phase_fit_sees_sqrt_growth_after_a_fast_start():
    from satbench.report.probe_sections import late_squared_norm_fit

    steps = np.unique(np.round(np.geomspace(1, 10_000, 30)).astype(int))
    # ||theta||^2: a fast rise over the first thousand steps, then a line of slope 0.005 (the sqrt(t) law).
    square = 150 + 30 * (1 - np.exp(-steps / 300)) + 0.005 * steps
    log = [{"step": int(t), "norm": float(np.sqrt(q))} for t, q in zip(steps, square, strict=True)]
    late = late_squared_norm_fit(log)
    assert late["sq_late_slope"] == pytest.approx(0.005, rel=0.05)
    assert late["sq_late_r2"] > 0.99
    assert fit_squared_norm(steps, np.sqrt(square))["r2"] < late["sq_late_r2"]
