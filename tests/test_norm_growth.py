import math

import numpy as np
import pytest
import torch
from torch import nn

from satbench.probes.norm_growth import (
    LAWS,
    counted_parameters,
    direction_cosines,
    fit_offset_power_law,
    fit_power_law,
    fit_sqrt,
    fit_squared_norm,
    heldout_errors,
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


# --- telling growth laws apart ----------------------------------------------------------------------------------

LOGGED = np.concatenate([[0], np.unique(np.round(np.geomspace(1, 10_000, 30)))])  # a log schedule of 30 points


def noisy(norms, seed=0, relative=0.003):
    return norms * (1 + np.random.default_rng(seed).normal(0.0, relative, size=norms.shape))


@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_the_offset_power_law_recovers_its_exponent_inside_the_bootstrap_interval(gamma):
    # A large initial norm (b = 3, growth 2 over the run) is what pulls the log-log exponent of `fit_power_law` down;
    # the offset fit must not be pulled.
    norms = noisy(3.0 + 2.0 * (LOGGED / LOGGED[-1]) ** gamma)
    fit = fit_offset_power_law(LOGGED, norms)
    assert fit["gamma"] == pytest.approx(gamma, abs=0.03)
    assert fit["gamma_lo"] < gamma < fit["gamma_hi"]
    assert fit["gamma_hi"] - fit["gamma_lo"] < 0.1
    assert fit["b"] == pytest.approx(3.0, abs=0.05)
    assert fit_power_law(LOGGED, norms)["gamma_hi"] < gamma  # the fit without an offset excludes the true exponent


def test_the_bootstrap_interval_is_the_same_on_a_rerun():
    norms = noisy(3.0 + 2.0 * np.sqrt(LOGGED / LOGGED[-1]))
    assert fit_offset_power_law(LOGGED, norms) == fit_offset_power_law(LOGGED, norms)


@pytest.mark.parametrize("law,norms", [
    ("sqrt", 3.0 + 0.02 * np.sqrt(LOGGED)),
    ("linear", 3.0 + 2e-4 * LOGGED),
    ("log", 3.0 + 0.2 * np.log(np.maximum(LOGGED, 1))),
], ids=["sqrt", "linear", "log"])
def test_the_held_out_comparison_picks_the_law_that_made_the_data(law, norms):
    log = [{"step": int(t), "norm": float(n)} for t, n in zip(LOGGED, noisy(norms, seed=1), strict=True)]
    m = norm_growth_metrics(log)
    assert m["best_law"] == law
    errors = {other: m[f"heldout_rmse_{other}"] for other in LAWS}
    assert errors[law] < 0.02  # noise of 0.3% on the norm: the right law predicts the last third closely
    assert all(errors[other] > 3 * errors[law] for other in LAWS if other != law)


def test_the_power_law_exponent_separates_the_laws_of_the_held_out_comparison():
    norms = {"sqrt": 3.0 + 0.02 * np.sqrt(LOGGED), "linear": 3.0 + 2e-4 * LOGGED,
             "log": 3.0 + 0.2 * np.log(np.maximum(LOGGED, 1))}
    gamma = {law: fit_offset_power_law(LOGGED, noisy(y), n_resamples=20)["gamma"] for law, y in norms.items()}
    assert gamma["log"] < 0.15
    assert gamma["sqrt"] == pytest.approx(0.5, abs=0.05)
    assert gamma["linear"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("log", [
    [],
    [{"step": 0, "norm": 1.0}],
    [{"step": t, "norm": 1.0 + t} for t in (0, 1, 2, 3)],  # four points, three of them with t > 0
    [{"step": int(t), "norm": 2.0} for t in LOGGED],  # a constant norm: every law fits, none is preferred
], ids=["empty", "one", "short", "constant"])
def test_short_or_constant_logs_give_nan_laws_not_errors(log):
    m = norm_growth_metrics(log)
    for key in ("law_gamma", "law_gamma_lo", "law_gamma_hi", "heldout_rmse_sqrt", "heldout_rmse_linear",
                "heldout_rmse_log"):
        assert math.isnan(m[key]), key
    assert m["best_law"] is None


def test_the_norm_ratio_with_embeddings_reads_its_own_series():
    log = [{"step": 0, "norm": 2.0, "norm_with_embeddings": 10.0},
           {"step": 10, "norm": 8.0, "norm_with_embeddings": 12.0}]
    m = norm_growth_metrics(log)
    assert m["norm_ratio"] == pytest.approx(4.0)
    assert m["norm_ratio_with_embeddings"] == pytest.approx(1.2)
    assert math.isnan(norm_growth_metrics([{"step": 0, "norm": 2.0}, {"step": 9, "norm": 3.0}])[
        "norm_ratio_with_embeddings"])


def test_heldout_errors_fit_on_the_earliest_two_thirds_only():
    # Linear up to the last third, then flat: fitted on the first two thirds, the linear law overshoots the rest.
    t = np.arange(1, 31, dtype=float)
    norms = np.minimum(t, 20.0)
    errors = heldout_errors(t, norms)
    assert errors["linear"] == pytest.approx(np.sqrt(np.mean((t[20:] - 20.0) ** 2)) / 20.0, rel=1e-9)


# --- model.init_scale --------------------------------------------------------------------------------------------

SMALL = dict(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, positional="learned", layer_norm="branch",
             bias=False)


def test_init_scale_scales_every_counted_parameter_and_leaves_the_embeddings():
    from satbench.models import ModelConfig, Recognizer, parameter_norm

    torch.manual_seed(3)
    default = Recognizer(ModelConfig(**SMALL))
    torch.manual_seed(3)
    small = Recognizer(ModelConfig(**SMALL, init_scale=0.1))
    counted = {name for name, _ in counted_parameters(default)}
    assert any("ln" in name for name in counted)  # layer-norm gains count toward the norm, so they are scaled
    for (name, p), (_, q) in zip(default.named_parameters(), small.named_parameters(), strict=True):
        assert torch.equal(q, p * 0.1 if name in counted else p), name
    assert {"token_embedding.weight", "positions.position_embedding.weight"} <= {
        name for name, _ in default.named_parameters()} - counted
    assert parameter_norm(small) == pytest.approx(0.1 * parameter_norm(default), rel=1e-6)


def test_an_ensemble_member_with_init_scale_is_the_standalone_model_of_its_seed():
    from satbench.models import Ensemble, ModelConfig, Recognizer

    config = ModelConfig(**SMALL, init_scale=0.3)
    ensemble = Ensemble(config, [4, 9])
    for i, seed in enumerate([4, 9]):
        torch.manual_seed(seed)
        alone = Recognizer(config)
        member = ensemble.member_state_dict(i)
        for name, p in alone.state_dict().items():
            assert torch.equal(member[name], p), name
        assert ensemble.parameter_norm()[i].item() == pytest.approx(norm_growth_total(alone), rel=1e-9)


def norm_growth_total(model):
    return parameter_norm_total(norm_per_layer(model))


@pytest.mark.parametrize("value", [0, -0.5, math.inf, math.nan, True, "small"])
def test_a_bad_init_scale_is_one_clear_error(value):
    from satbench.models import ModelConfig

    with pytest.raises(ValueError, match=r"^model\.init_scale: .* is not a finite number > 0$"):
        ModelConfig(**SMALL, init_scale=value)


@pytest.mark.parametrize(
    "at_default,changed",
    [({"init_scale": 1.0}, {"init_scale": 0.1}),
     # Model fields added later in the same way: qk_norm, and the attention_scale it resolves.
     ({"qk_norm": False}, {"qk_norm": True, "attention_scale": 4.0}),
     ({"qk_norm": False, "attention_scale": None}, {"qk_norm": True, "attention_scale": 0.5})],
    ids=["init_scale", "qk_norm", "attention_scale"],
)
def test_a_model_field_at_its_default_leaves_the_cell_hash_as_it_was(at_default, changed):
    from satbench.harness import config as C

    raw = {"name": "n", "languages": ["dyck1"]}
    default = C.expand(raw).cells[0]
    explicit = C.expand({**raw, "model": at_default}).cells[0]
    other = C.expand({**raw, "model": changed}).cells[0]
    assert not set(at_default) & set(default.as_dict()["model"]) and C.cell_hash(explicit) == C.cell_hash(default)
    assert all(other.as_dict()["model"][key] == value for key, value in changed.items())
    assert C.cell_hash(other) != C.cell_hash(default)


def test_the_published_norm_growth_run_still_resumes():
    # Its rows must hash as the cells of its recorded config do today (a run written before model.init_scale existed
    # included), or a bench on that directory would train them all again.
    from pathlib import Path

    from satbench.harness import config as C
    from satbench.harness.results import read_run

    published = Path(__file__).resolve().parents[1] / "results" / "norm_growth"
    if not (published / "config.yaml").exists():
        pytest.skip("no published norm-growth run in this tree")
    grid = C.load_grid(published / "config.yaml")
    assert {row["hash"] for row in read_run(published)} <= {C.cell_hash(cell) for cell in grid.cells}


def test_every_number_the_report_declares_is_one_the_metrics_give():
    from satbench.probes.norm_growth import NormGrowth

    norms = noisy(3.0 + 0.02 * np.sqrt(LOGGED))
    log = [{"step": int(t), "norm": float(n), "norm_with_embeddings": float(n) + 10, "params": np.ones(3) * n}
           for t, n in zip(LOGGED, norms, strict=True)]
    keys = set(norm_growth_metrics(log))
    report = NormGrowth.report
    declared = set(report.columns) | {key for table in report.tables for key in table.columns}
    assert declared <= keys, declared - keys
    assert {"law_gamma", "law_gamma_lo", "law_gamma_hi", "heldout_rmse_sqrt", "norm_ratio_with_embeddings",
            "cos_first_last"} <= set(report.tables[0].columns)


def test_the_report_counts_the_seeds_that_prefer_each_law():
    from satbench.report.probe_renderers import law_counts

    def row(language, seed, law):
        return {"config": {"language": language, "seed": seed, "model": {"attention": "soft"},
                           "train": {"weight_decay": 0.0}}, "metrics": {"probes": {"best_law": law}}}

    rows = [row("a", 0, "sqrt"), row("a", 1, "sqrt"), row("a", 2, "log"), row("a", 3, None),
            row("b", 0, "linear")]
    counts = law_counts(rows, [])
    assert list(counts.columns) == ["sqrt", "linear", "log"]
    assert counts.loc[("a", "soft")].tolist() == ["2/3", "0/3", "1/3"]
    assert counts.loc[("b", "soft")].tolist() == ["0/1", "1/1", "0/1"]
    assert law_counts([row("a", 0, None)], []) is None
