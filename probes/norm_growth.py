"""Norm growth: how the parameter norm and direction move over training.

Merrill et al. (2021) observe that the l2 norm of a transformer's parameters grows roughly like sqrt(t) during
training, which drives attention towards saturation. This file holds what is recorded during training
(`norm_log_entry`, `member_norm_entries`), what is computed from that log afterwards (`norm_growth_metrics`), and the
`norm_growth` probe that does both for every member of an ensemble.

The training log is a list of dicts, one per logged step of ONE member, each with the keys
    "step"            int, optimizer steps taken so far (0 = initialisation)
    "norm"            float, parameter norm (see `norm_per_layer` for which parameters count)
    "norm_per_layer"  dict[str, float], the same norm split by layer
    "norm_with_embeddings"  optional, float, the norm with the embeddings counted (models/train.py logs it)
    "params"          optional, flat float32 numpy vector of the same parameters, for the direction cosines
`norm_log_entry(model, step)` returns exactly such a dict.
"""

import math

import numpy as np
import torch
from scipy import optimize, stats
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


GAMMA_BOUNDS = (0.0, 3.0)  # of the offset power law: 0 is no growth in t at all, 3 is far beyond any law in question
GAMMA_GRID = np.linspace(*GAMMA_BOUNDS, 31)  # where the search for gamma starts: a bracket of width 0.2 around the best


def _lines_through(x, y, gammas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, residual sum of squares) of the least-squares line y = a * x^gamma + b for each gamma in `gammas` at
    once. At gamma = 0, x^gamma is constant: a = 0 and b the mean, no division by zero."""
    u = x[None, :] ** np.atleast_1d(gammas)[:, None]
    du, dy = u - u.mean(axis=1, keepdims=True), y - y.mean()
    spread = np.sum(du**2, axis=1)
    a = np.divide(du @ dy, spread, out=np.zeros_like(spread), where=spread > 0)
    b = y.mean() - a * u.mean(axis=1)
    return a, b, np.sum((dy[None, :] - a[:, None] * du) ** 2, axis=1)


def offset_power_law_parameters(t: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(a, gamma, b) of the least-squares fit y = a * t^gamma + b, NaN with fewer than 4 points or a constant y.

    Not scipy.optimize.curve_fit over all three parameters: as gamma -> 0 the curve becomes a log law with a -> inf,
    where that fit crawls (seconds per fit, and the bootstrap repeats it hundreds of times) or fails. At a fixed gamma,
    a and b are linear least squares, so the fit is a search over gamma alone (variable projection): a grid over
    GAMMA_BOUNDS, then scipy.optimize.minimize_scalar within the bracket around the grid's best. Steps are divided
    by the last one first: gamma does not change, and a is then the growth over the run (the curve is
    a * (t / t.max())^gamma + b).
    """
    if len(t) < 4 or np.ptp(t) == 0 or np.ptp(y) == 0:  # three parameters: a fourth point leaves something to test
        return math.nan, math.nan, math.nan
    x = t / t.max()
    best = int(np.argmin(_lines_through(x, y, GAMMA_GRID)[2]))
    bracket = (GAMMA_GRID[max(best - 1, 0)], GAMMA_GRID[min(best + 1, len(GAMMA_GRID) - 1)])
    gamma = optimize.minimize_scalar(lambda g: _lines_through(x, y, g)[2][0], bounds=bracket, method="bounded",
                                     options={"xatol": 1e-5}).x
    a, b, _ = _lines_through(x, y, gamma)
    return float(a[0]), float(gamma), float(b[0])


def fit_offset_power_law(steps, norms, confidence: float = 0.95, n_resamples: int = 300,
                         seed: int = 0) -> dict[str, float]:
    """Fit norm(t) = a * t^gamma + b to the points with t > 0, with a bootstrap interval for gamma.

    Unlike `fit_power_law` (a line in log-log, which an initial norm b pulls towards gamma = 0), the offset b is a
    parameter, so sqrt(t) growth from any initial norm gives gamma = 1/2 and linear growth gamma = 1. The interval is
    scipy.stats.bootstrap's percentile interval over paired resamples of the (t, norm) points, with a fixed seed so
    that a rerun gives the same numbers; a degenerate resample (a constant norm) makes it NaN rather than narrower.
    Returns {"gamma", "gamma_lo", "gamma_hi", "a", "b"} (a and b for t in units of the last step, see
    `offset_power_law_parameters`); all NaN with fewer than 4 usable points or a constant norm.
    """
    t, y = _clean(steps, norms, positive=False)
    t, y = t[t > 0], y[t > 0]
    a, gamma, b = offset_power_law_parameters(t, y)
    out = {"gamma": gamma, "gamma_lo": math.nan, "gamma_hi": math.nan, "a": a, "b": b}
    if math.isnan(gamma):
        return out
    interval = stats.bootstrap((t, y), lambda tt, yy: offset_power_law_parameters(tt, yy)[1], paired=True,
                               vectorized=False, n_resamples=n_resamples, confidence_level=confidence,
                               method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    out.update(gamma_lo=float(interval.low), gamma_hi=float(interval.high))
    return out


# The growth laws the held-out comparison tells apart, each norm = a * law(t) + b with t > 0.
LAWS = {"sqrt": np.sqrt, "linear": lambda t: t, "log": np.log}
HELD_OUT = 1 / 3  # the share of the logged points, the latest, that each law is fitted without and then predicts


def heldout_errors(steps, norms) -> dict[str, float]:
    """Fit each of LAWS by least squares to the earliest two thirds of the points with t > 0 and predict the last
    third: {law: root-mean-square error over the held-out points / their mean norm}.

    Extrapolating to later steps is where the laws differ most (with log-spaced steps the held-out third spans the
    last third of the decades), so the law with the smallest error is the one the data prefer. All NaN with fewer
    than 6 usable points (2 held out) or a constant norm, where every law predicts equally well.
    """
    t, y = _clean(steps, norms, positive=False)
    order = np.argsort(t[t > 0], kind="stable")
    t, y = t[t > 0][order], y[t > 0][order]
    n_fit = len(t) - round(len(t) * HELD_OUT)
    if len(t) < 6 or np.ptp(y) == 0 or np.ptp(t[:n_fit]) == 0:
        return {law: math.nan for law in LAWS}
    errors = {}
    for law, transform in LAWS.items():
        fit = stats.linregress(transform(t[:n_fit]), y[:n_fit])
        predicted = fit.slope * transform(t[n_fit:]) + fit.intercept
        errors[law] = float(np.sqrt(np.mean((predicted - y[n_fit:]) ** 2)) / np.mean(y[n_fit:]))
    return errors


def best_law(errors: dict[str, float]) -> str | None:
    """The law of smallest held-out error, None when any error is NaN."""
    if not errors or any(not np.isfinite(e) for e in errors.values()):
        return None
    return min(errors, key=errors.get)


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


def norm_growth_metrics(log: list[dict]) -> dict[str, float | str | None]:
    """Flat summary of one member's training log (format in the module docstring).

    Keys:
      norm_initial, norm_final, norm_ratio (final / initial)
      norm_ratio_with_embeddings           the same ratio of "norm_with_embeddings" (NaN where the log has none)
      law_gamma, law_gamma_lo, law_gamma_hi
                                           exponent of norm = a t^gamma + b over the steps t > 0 with its 95%
                                           bootstrap interval (`fit_offset_power_law`): 0.5 under sqrt(t) growth,
                                           1 under linear growth, near 0 under log growth
      heldout_rmse_sqrt, heldout_rmse_linear, heldout_rmse_log
                                           relative error of each law fitted to the earliest two thirds of the steps
                                           t > 0 in predicting the last third (`heldout_errors`)
      best_law                             "sqrt", "linear" or "log": the smallest of those errors (None if NaN);
                                           a string, which the report counts rather than averages
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
    out: dict[str, float | str | None] = {}

    out["norm_initial"] = float(norms[0]) if len(norms) else math.nan
    out["norm_final"] = float(norms[-1]) if len(norms) else math.nan
    out["norm_ratio"] = out["norm_final"] / out["norm_initial"] if len(norms) and norms[0] != 0 else math.nan
    with_embeddings = [e.get("norm_with_embeddings", math.nan) for e in log]
    out["norm_ratio_with_embeddings"] = (with_embeddings[-1] / with_embeddings[0]
                                         if with_embeddings and with_embeddings[0] else math.nan)

    law = fit_offset_power_law(steps, norms)
    out.update(law_gamma=law["gamma"], law_gamma_lo=law["gamma_lo"], law_gamma_hi=law["gamma_hi"])
    errors = heldout_errors(steps, norms)
    out.update({f"heldout_rmse_{name}": error for name, error in errors.items()})
    out["best_law"] = best_law(errors)

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
    # Which law the norm follows is told apart by fits with an offset (`law_gamma`) and by prediction of the latest
    # steps (`heldout_rmse_*`): a line through ||theta||^2 fits sqrt(t) and linear growth alike when the norm moves
    # little. Growth and rotation stand side by side (`norm_ratio`, `cos_first_last`): a larger norm is a larger
    # logit scale only where the direction holds.
    report = ProbeReport(
        title="Norm growth",
        text="Per language and variant, mean±std over seeds. The norm ||theta|| is the l2 norm of the parameters, "
             "embeddings excluded (the paper's protocol). `norm_ratio`: final / initial norm. "
             "`norm_ratio_with_embeddings`: the same with the embeddings counted. `cos_first_last`: cosine between "
             "the first and the last parameter vector (1: the norm grew along a fixed direction, so growth is a "
             "sharper logit scale; below 1 the direction turned as well). `law_gamma`: the exponent gamma of "
             "||theta|| = a t^gamma + b fitted to every logged step t > 0 (0.5 for sqrt(t) growth, 1 for linear, near "
             "0 for log t), `law_gamma_lo`, `law_gamma_hi` its 95% bootstrap interval over the logged points. "
             "`heldout_rmse_sqrt`, `heldout_rmse_linear`, `heldout_rmse_log`: each law a f(t) + b fitted to the "
             "earliest two thirds of the logged steps t > 0 and asked to predict the last third; the root-mean-square "
             "error relative to the mean norm there (smallest: the law the data prefer).",
        columns=["norm_ratio", "norm_ratio_with_embeddings", "cos_first_last", "law_gamma", "heldout_rmse_sqrt",
                 "heldout_rmse_linear", "heldout_rmse_log"],
        tables=[Table(["norm_initial", "norm_final", "norm_ratio", "norm_ratio_with_embeddings", "cos_first_last",
                       "law_gamma", "law_gamma_lo", "law_gamma_hi", "heldout_rmse_sqrt", "heldout_rmse_linear",
                       "heldout_rmse_log"], rows="seed", title="The fits per cell", csv="norm_fits.csv",
                      text="Every cell's norm at its first and last logged step, its growth with and without the "
                           "embeddings, the cosine between its first and last parameters, the exponent of "
                           "||theta|| = a t^gamma + b with its 95% bootstrap interval, and the held-out errors of "
                           "the sqrt, linear and log laws. Also in `norm_fits.csv`."),
                Table(["law_gamma", "norm_ratio", "cos_first_last"], rows="field")],
        renderers=["norm_growth", "norm_laws"])

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
