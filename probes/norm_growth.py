"""Norm growth: how the parameter norm and direction move over training.

Merrill et al. (2021) observe that the l2 norm of a transformer's parameters grows roughly like sqrt(t) during
training, which drives attention towards saturation. This file holds what is recorded during training
(`norm_log_entry`, `member_norm_entries`), what is computed from that log afterwards (`norm_growth_metrics`), and the
`norm_growth` probe that does both for every member of an ensemble.

The training log is a list of dicts, one per logged step of ONE member, each with the keys
    "step"            int, optimizer steps taken so far (0 = initialisation)
    "norm"            float, parameter norm (see `norm_per_layer` for which parameters count)
    "norm_per_layer"  dict[str, float], the same norm split by layer
    "params"          optional, flat float32 numpy vector of the same parameters, for the direction cosines
`norm_log_entry(model, step)` returns exactly such a dict.
"""

import math

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LinearRegression
from torch import nn

from satbench.models.recognizer import counts_toward_norm

from .registry import Probe, register
from .report_section import ProbeReport, Table


def counted_parameters(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The parameters the paper's norm is taken over, as (name, tensor) pairs in registration order.

    Rule (models.counts_toward_norm, so that the total equals models.parameter_norm): trainable (requires_grad)
    parameters with at least one dimension whose name does not contain "embedding" (token embedding, learned or
    fractional positions). Embeddings are left out as in the paper's protocol; 0-d parameters are knobs, not weights.
    """
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad and counts_toward_norm(name, p.shape)]


def layer_of(name: str) -> str:
    """Group key of a parameter name: everything up to the first integer component ("blocks.3.attn.w" -> "blocks.3"),
    or the first component when there is none ("head.weight" -> "head")."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


@torch.no_grad()
def norm_per_layer(model: nn.Module) -> dict[str, float]:
    """l2 norm of the counted parameters (see `counted_parameters`), grouped by `layer_of` their name.

    The total norm is sqrt(sum of the squared layer norms); `parameter_norm_total` computes it from this dict.
    Computed in float64 so that a saturated model's large norm does not lose digits.
    """
    squares: dict[str, float] = {}
    for name, p in counted_parameters(model):
        key = layer_of(name)
        squares[key] = squares.get(key, 0.0) + float(p.detach().double().pow(2).sum())
    return {key: math.sqrt(s) for key, s in squares.items()}


def parameter_norm_total(per_layer: dict[str, float]) -> float:
    """Total l2 norm from the per-layer norms."""
    return math.sqrt(sum(v * v for v in per_layer.values()))


@torch.no_grad()
def parameter_vector(model: nn.Module) -> np.ndarray:
    """The counted parameters flattened into one float32 vector, in registration order (same order every call)."""
    parts = [p.detach().reshape(-1).float().cpu() for _, p in counted_parameters(model)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(parts).numpy()


def norm_log_entry(model: nn.Module, step: int, keep_params: bool = True) -> dict:
    """One training-log entry: {"step", "norm", "norm_per_layer"} and, if keep_params, "params".

    Keep the parameter vector only when the direction cosines are wanted: it costs one copy of the model per entry.
    """
    per_layer = norm_per_layer(model)
    entry = {"step": int(step), "norm": parameter_norm_total(per_layer), "norm_per_layer": per_layer}
    if keep_params:
        entry["params"] = parameter_vector(model)
    return entry


@torch.no_grad()
def member_norm_entries(ensemble: nn.Module, keep_params: bool = True) -> list[dict]:
    """For a stacked models.Ensemble: one dict per member with "norm_per_layer" (as `norm_per_layer` would give for
    ensemble.member(i)) and, if keep_params, "params" (as `parameter_vector`), read straight off the stacked
    parameters (leading member axis) without building the members. Merge them into the members' log entries; the
    entries' "norm" comes from Ensemble.parameter_norm, the same rule.
    """
    M = ensemble.M
    squares = [{} for _ in range(M)]
    parts = []
    for name, p in ensemble.stacked.named_parameters():
        if not (p.requires_grad and counts_toward_norm(name, p.shape[1:])):
            continue
        flat = p.detach().reshape(M, -1)
        per_member = flat.double().pow(2).sum(dim=1).tolist()
        key = layer_of(name)
        for i in range(M):
            squares[i][key] = squares[i].get(key, 0.0) + per_member[i]
        if keep_params:
            parts.append(flat.float().cpu())
    vectors = torch.cat(parts, dim=1).numpy() if parts else np.zeros((M, 0), dtype=np.float32)
    entries = []
    for i in range(M):
        entry = {"norm_per_layer": {key: math.sqrt(v) for key, v in squares[i].items()}}
        if keep_params:
            entry["params"] = vectors[i].copy()
        entries.append(entry)
    return entries


def _clean(steps, values, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Finite (step, value) pairs as float64; with positive=True only pairs where both are > 0 (for logs)."""
    t = np.asarray(steps, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if t.shape != y.shape:
        raise ValueError(f"steps and norms differ in length: {t.shape[0]} vs {y.shape[0]}")
    keep = np.isfinite(t) & np.isfinite(y) & (t >= 0)
    if positive:
        keep &= (t > 0) & (y > 0)
    return t[keep], y[keep]


def fit_sqrt(steps, norms) -> dict[str, float]:
    """Least-squares fit of norm(t) = a * sqrt(t) + b.

    Returns {"a", "b", "r2"}; all NaN with fewer than 3 usable points (two points fit any curve exactly) or when
    every step is the same.
    """
    t, y = _clean(steps, norms, positive=False)
    nan = {"a": math.nan, "b": math.nan, "r2": math.nan}
    if len(t) < 3 or np.ptp(t) == 0:
        return nan
    x = np.sqrt(t)[:, None]
    reg = LinearRegression().fit(x, y)
    # r2 is undefined for a constant series (zero total variance); sklearn would return a misleading 1.0 or 0.0.
    r2 = float(reg.score(x, y)) if np.ptp(y) > 0 else math.nan
    return {"a": float(reg.coef_[0]), "b": float(reg.intercept_), "r2": r2}


def fit_squared_norm(steps, norms) -> dict[str, float]:
    """Least-squares line through ||theta(t)||^2 against t: if the norm grows like sqrt(t), its square grows linearly,
    and r2 says how well. Returns {"slope", "intercept", "r2"}; NaN with fewer than 3 usable points."""
    t, y = _clean(steps, norms, positive=False)
    if len(t) < 3 or np.ptp(t) == 0:
        return {"slope": math.nan, "intercept": math.nan, "r2": math.nan}
    fit = stats.linregress(t, y**2)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept),
            "r2": float(fit.rvalue**2) if np.ptp(y) > 0 else math.nan}


def fit_power_law(steps, norms, confidence: float = 0.95) -> dict[str, float]:
    """Fit norm(t) ~ C * t^gamma by least squares on log(norm) against log(t).

    Only points with t > 0 and norm > 0 enter (step 0 has no logarithm). The interval is gamma +- q * stderr, where
    stderr is the slope's standard error from scipy.stats.linregress and q the two-sided Student-t quantile with n - 2
    degrees of freedom. Returns {"gamma", "gamma_lo", "gamma_hi", "r2"}; all NaN with fewer than 3 usable points.
    """
    t, y = _clean(steps, norms, positive=True)
    nan = {"gamma": math.nan, "gamma_lo": math.nan, "gamma_hi": math.nan, "r2": math.nan}
    if len(t) < 3 or np.ptp(t) == 0:
        return nan
    fit = stats.linregress(np.log(t), np.log(y))
    q = stats.t.ppf(0.5 + confidence / 2, df=len(t) - 2)
    r2 = float(fit.rvalue**2) if np.ptp(y) > 0 else math.nan
    return {
        "gamma": float(fit.slope),
        "gamma_lo": float(fit.slope - q * fit.stderr),
        "gamma_hi": float(fit.slope + q * fit.stderr),
        "r2": r2,
    }


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine similarity of two vectors in float64; NaN if either is zero or they differ in length."""
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if u.shape != v.shape:
        return math.nan
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0 or not (np.isfinite(nu) and np.isfinite(nv)):
        return math.nan
    return float(np.dot(u / nu, v / nv))


def direction_cosines(param_vectors) -> list[float]:
    """Cosine between consecutive parameter vectors: element k compares vector k and vector k + 1.

    A direction that converges while the norm grows shows as cosines approaching 1. Empty for fewer than 2 vectors.
    """
    vs = list(param_vectors)
    return [cosine(vs[k], vs[k + 1]) for k in range(len(vs) - 1)]


def norm_growth_metrics(log: list[dict]) -> dict[str, float]:
    """Flat summary of one member's training log (format in the module docstring).

    Keys:
      norm_initial, norm_final, norm_ratio (final / initial)
      sqrt_a, sqrt_b, sqrt_r2              fit of norm = a * sqrt(t) + b over all logged steps
      sq_slope, sq_intercept, sq_r2        fit of norm^2 = slope * t + intercept (linear under sqrt(t) growth)
      gamma, gamma_lo, gamma_hi, gamma_r2  power law norm ~ t^gamma, steps > 0 (95% interval)
      growth_gamma, growth_gamma_lo, growth_gamma_hi, growth_gamma_r2
                                           power law on the growth norm(t) - norm(t0) over t - t0, t0 = the first
                                           logged step, where the growth is > 0. The raw-norm exponent is pulled
                                           towards 0 by the initial norm (a sqrt(t) + b with large b looks flat in
                                           log-log); the growth exponent is not. NaN when the norm never grows.
      cos_first_last                       cosine between the first and last parameter vectors
      cos_consecutive_last, cos_consecutive_min
                                           last and smallest cosine between consecutive logged vectors
      norm_final_<layer>, norm_ratio_<layer>  per layer, from "norm_per_layer"
    A log too short for a quantity gives NaN for it, never an exception; "params" and "norm_per_layer" are optional.
    """
    log = sorted(log, key=lambda e: e["step"])
    steps = np.array([e["step"] for e in log], dtype=np.float64)
    norms = np.array([e["norm"] for e in log], dtype=np.float64)
    out: dict[str, float] = {}

    out["norm_initial"] = float(norms[0]) if len(norms) else math.nan
    out["norm_final"] = float(norms[-1]) if len(norms) else math.nan
    out["norm_ratio"] = out["norm_final"] / out["norm_initial"] if len(norms) and norms[0] != 0 else math.nan

    for k, v in fit_sqrt(steps, norms).items():
        out[f"sqrt_{k}"] = v
    out.update({f"sq_{k}": v for k, v in fit_squared_norm(steps, norms).items()})
    power = fit_power_law(steps, norms)
    out.update({"gamma": power["gamma"], "gamma_lo": power["gamma_lo"], "gamma_hi": power["gamma_hi"]})
    out["gamma_r2"] = power["r2"]

    growth = fit_power_law(steps - steps[0], norms - norms[0]) if len(norms) else fit_power_law([], [])
    out.update({f"growth_{k}": growth[k] for k in ("gamma", "gamma_lo", "gamma_hi")})
    out["growth_gamma_r2"] = growth["r2"]

    vectors = [e["params"] for e in log if e.get("params") is not None]
    cos = direction_cosines(vectors)
    out["cos_first_last"] = cosine(vectors[0], vectors[-1]) if len(vectors) >= 2 else math.nan
    out["cos_consecutive_last"] = cos[-1] if cos else math.nan
    finite = [c for c in cos if np.isfinite(c)]
    out["cos_consecutive_min"] = min(finite) if finite else math.nan

    layered = [e["norm_per_layer"] for e in log if e.get("norm_per_layer")]
    if layered:
        first, last = layered[0], layered[-1]
        for layer, value in last.items():
            out[f"norm_final_{layer}"] = float(value)
            start = first.get(layer, math.nan)
            out[f"norm_ratio_{layer}"] = float(value) / start if start else math.nan
    return out


@register
class NormGrowth(Probe):
    """Norm per layer and the direction cosines (to the previous logged step and to the first) at every logged step;
    afterwards the fits of `norm_growth_metrics`. The parameter vectors stay in memory, never in the rows."""

    name = "norm_growth"
    # `sq_late_*` the report fits itself, to the norms of the training log (report/probe_sections.py, LATE = 0.2).
    report = ProbeReport(
        title="Norm growth",
        text="Per language and variant, mean±std over seeds. The norm is the l2 norm of the parameters, embeddings "
             "excluded. `sq_slope`, `sq_r2`: slope and r² of the line ||theta||² = slope * t + intercept through "
             "every logged step (a linear square means the norm grows like sqrt(t)); `sq_late_slope`, `sq_late_r2`: "
             "the same over the late phase, logged steps t >= 0.2 x the last; `growth_gamma`: exponent of a power law "
             "fitted to the norm's growth since the first logged step (0.5 for sqrt(t) growth); `norm_ratio`: final / "
             "initial norm; `cos_consecutive_last`: cosine between the parameter vectors of the last two logged "
             "steps (1: the direction has stopped moving).",
        columns=["sq_slope", "sq_r2", "sq_late_slope", "sq_late_r2", "growth_gamma", "norm_ratio",
                 "cos_consecutive_last"],
        tables=[Table(["norm_initial", "norm_final", "sq_slope", "sq_intercept", "sq_r2", "sq_late_slope",
                       "sq_late_r2", "growth_gamma", "growth_gamma_r2"], rows="seed", title="The fits per cell",
                      csv="norm_fits.csv",
                      text="Every cell's norm at its first and last logged step, the line ||theta||² = sq_slope * t + "
                           "sq_intercept with its r² over every logged step, the same line over the late phase only "
                           "(`sq_late_*`: logged steps t >= 0.2 x the last; a constant slope there is sqrt(t) growth "
                           "once the first fast changes are over), and the power-law exponent of the growth since "
                           "the first logged step with the r² of that fit in log-log (`growth_gamma`, "
                           "`growth_gamma_r2`). Also in `norm_fits.csv`."),
                Table(["sq_r2", "growth_gamma", "norm_ratio"], rows="field")],
        renderers=["norm_growth"])

    def __init__(self, run):
        super().__init__(run)
        self.first, self.previous = {}, {}

    def during_training(self, step, ensemble):
        entries = member_norm_entries(ensemble, keep_params=True)
        for i, entry in enumerate(entries):
            params = entry.pop("params")
            self.first.setdefault(i, params)
            entry["cos_prev"] = cosine(self.previous[i], params) if i in self.previous else math.nan
            entry["cos_first"] = cosine(self.first[i], params)
            self.previous[i] = params
        return entries

    def measure(self, run):
        out = []
        for log in run.logs:
            member = norm_growth_metrics(log)
            consecutive = [e["cos_prev"] for e in log if np.isfinite(e.get("cos_prev", math.nan))]
            if consecutive:
                member.update(cos_first_last=log[-1]["cos_first"], cos_consecutive_last=consecutive[-1],
                              cos_consecutive_min=min(consecutive))
            out.append(member)
        return out
