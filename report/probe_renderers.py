"""The renderers a probe's report section asks for by name (probes/report_section.py, `renderers`): what a table of
numbers cannot show, such as how the norm moved over training. Each takes the RunView of the run and returns Markdown
lines; the figures go into the run's figures/.
"""

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .common import markdown, ordered_variants, setting


@dataclass
class RunView:
    """What a renderer sees: the rows of the run, the config fields that vary across them (`varying_fields`) and the
    folder its figures go into."""

    rows: list[dict]
    fields: list[str]
    figures: Path

    @cached_property
    def series(self):
        """The logged steps of every cell (`norm_series`), shared by the renderers that follow training."""
        return norm_series(self.rows, self.fields)


SERIES = ("norm", "norm_with_embeddings", "sim_mean", "kappa_limit", "acc_limit", "tv_limit", "split_share",
          "value_distinct_share")
# What the limit-over-training figure draws, a line style each (defined in probes/saturation_similarity.py).
LIMIT_MEASURES = {"kappa_limit": "kappa with the limit", "acc_limit": "accuracy at the limit",
                  "tv_limit": "TV distance to saturation"}


def norm_series(rows, fields):
    """One line per logged step of every cell: the norm and whatever the probes followed through training."""
    records = []
    for row in rows:
        for entry in row["log"]:
            records.append({"variant": row["config"]["model"]["attention"], "language": row["config"]["language"],
                            "seed": row["config"]["seed"], **setting(row, fields), "step": entry["step"],
                            **{key: entry.get(key, math.nan) for key in SERIES}})
    return pd.DataFrame.from_records(records)


def facets(fields):
    """Figure facets from the varying fields: columns by the last one (in sorted order train.* comes after model.*,
    so a weight-decay axis gets the columns), line style by the one before."""
    return {"col": fields[-1] if fields else None, "style": fields[-2] if len(fields) > 1 else None}


def growth_facets(fields):
    """Norm-growth figures: one panel column per language, colour by weight decay when it varies (else by variant),
    one panel row per other varying field (such as the optimizer), taking at most one."""
    hue = "train.weight_decay" if "train.weight_decay" in fields else "variant"
    others = [f for f in fields if f != hue]
    return {"hue": hue, "row": others[-1] if others else None}


NORM_FLOOR = 1e-3


def fitted_laws(t, norm):
    """The curves drawn over a mean norm series, at its steps t: {"power": a t^gamma + b, "gamma": gamma,
    "sqrt": a sqrt(t) + b}, least squares; {} where the series is too short or flat. The probe fits each seed's
    a t^gamma + b the same way (probes/norm_growth.py, `offset_power_law_parameters`); for a drawing, the best gamma
    on a grid of step 0.01 is enough."""
    if len(t) < 4 or np.ptp(norm) == 0:
        return {}
    gammas = np.linspace(0.0, 3.0, 301)
    u = (t / t.max())[None, :] ** gammas[:, None]  # gamma does not depend on the unit of t
    du, dy = u - u.mean(axis=1, keepdims=True), norm - norm.mean()
    spread = np.sum(du**2, axis=1)
    a = np.divide(du @ dy, spread, out=np.zeros_like(spread), where=spread > 0)
    best = int(np.argmin(np.sum((dy[None, :] - a[:, None] * du) ** 2, axis=1)))
    slope, intercept = np.polyfit(np.sqrt(t), norm, 1)
    return {"power": a[best] * du[best] + norm.mean(), "gamma": gammas[best], "sqrt": slope * np.sqrt(t) + intercept}


def figure_norm_growth(series, fields, path):
    """Norm against t, log-log, per language; line: mean over seeds, band: min to max; dashed: the fit
    ||theta|| = a t^gamma + b to the mean series of the first colour (no weight decay when decay varies), its gamma
    written in the panel; dotted: the fit ||theta|| = a sqrt(t) + b to the same series."""
    data = series[series["step"] > 0]
    if data.empty:
        return False
    layout = growth_facets(fields)
    # Categories, not numbers: a numeric hue would give weight decays 0 and 0.01 nearly the same colour. Norms that
    # weight decay drove to zero are drawn at the floor of the log axis.
    data = data.assign(**{layout["hue"]: data[layout["hue"]].map(str), "norm": data["norm"].clip(lower=NORM_FLOOR)})
    hues = sorted(data[layout["hue"]].unique(), key=float if layout["hue"] == "train.weight_decay" else str)
    grid = sns.relplot(data=data, x="step", y="norm", col="language", kind="line", height=2.6, aspect=1.4,
                       errorbar=("pi", 100), hue_order=hues, palette="viridis" if len(hues) > 3 else None,
                       facet_kws={"sharey": "row"}, **layout)
    for (row_value, language), ax in _panels(grid, layout):
        part = data[(data["language"] == language) & (data[layout["hue"]] == hues[0])]
        if layout["row"]:
            part = part[part[layout["row"]] == row_value]
        mean = part.groupby("step")["norm"].mean()
        t = mean.index.to_numpy(dtype=float)
        laws = fitted_laws(t, mean.to_numpy())
        if laws:
            ax.plot(t, np.maximum(laws["power"], NORM_FLOOR), color="black", ls="--", lw=1)
            ax.plot(t, np.maximum(laws["sqrt"], NORM_FLOOR), color="grey", ls=":", lw=1)
            ax.text(0.03, 0.95, f"gamma = {laws['gamma']:.2f}", transform=ax.transAxes, va="top", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    grid.set_titles("{row_name} | {col_name}" if layout["row"] else "{col_name}")
    grid.set_axis_labels("step t", "||theta|| (embeddings excluded)")
    grid.figure.suptitle(f"Parameter norm against t, coloured by {layout['hue']}; line: mean over seeds, band: min to "
                         f"max; fitted to the mean of {layout['hue']} = {hues[0]}: dashed a t^gamma + b, dotted "
                         f"a sqrt(t) + b; norms below {NORM_FLOOR:g} drawn at {NORM_FLOOR:g}", y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)
    return True


def law_counts(rows, fields):
    """Per language, variant and varying field: how many seeds each growth law predicts best on held-out steps
    (the norm-growth probe's `best_law`), as "k/n" with n the seeds that have one. None without any."""
    records = [{"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                **setting(row, fields), "best_law": (row["metrics"].get("probes") or {}).get("best_law")}
               for row in rows]
    frame = pd.DataFrame.from_records(records).dropna(subset=["best_law"]) if records else pd.DataFrame()
    if frame.empty:
        return None
    by = ["language", "variant", *fields]
    counts = pd.crosstab([frame[key] for key in by], frame["best_law"])
    counts = counts[sorted(counts.columns, key=["sqrt", "linear", "log"].index)]  # the order of the probe's LAWS
    seeds = counts.sum(axis=1)
    return counts.apply(lambda column: column.astype(str) + "/" + seeds.astype(str))


def figure_limit_over_training(series, fields, path):
    """Against t, per language: Cohen's kappa between the decisions at c=1 and at the saturated limit, the limit's
    accuracy and the mean total-variation distance of the attention from its saturated weights (LIMIT_MEASURES)."""
    data = series[series["step"] > 0].dropna(subset=list(LIMIT_MEASURES), how="all")
    if data.empty:
        return False
    layout = growth_facets(fields)
    long = data.melt(id_vars=["language", "step", "seed", layout["hue"]] + ([layout["row"]] if layout["row"] else []),
                     value_vars=list(LIMIT_MEASURES), var_name="measure", value_name="value")
    # Kappa is undefined while both classifiers decide constantly and alike (at initialisation, typically).
    long = long.dropna(subset=["value"])
    long["measure"] = long["measure"].map(LIMIT_MEASURES)
    long[layout["hue"]] = long[layout["hue"]].map(str)
    hues = sorted(long[layout["hue"]].unique(), key=float if layout["hue"] == "train.weight_decay" else str)
    grid = sns.relplot(data=long, x="step", y="value", col="language", style="measure", kind="line", height=2.6,
                       aspect=1.4, errorbar=("pi", 100), hue_order=hues,
                       style_order=[m for m in LIMIT_MEASURES.values() if m in set(long["measure"])],
                       palette="viridis" if len(hues) > 3 else None, **layout)
    for _, ax in _panels(grid, layout):
        ax.set_xscale("log")
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    grid.set_titles("{row_name} | {col_name}" if layout["row"] else "{col_name}")
    grid.set_axis_labels("step t", "kappa, accuracy, TV distance")
    grid.figure.suptitle("Against t, on the probe strings: Cohen's kappa between the decisions at c=1 and at the "
                         "saturated limit (0: chance), the limit's accuracy (0.5: chance) and the attention's mean "
                         "total-variation distance from its saturated weights (0: saturated); line: mean over seeds, "
                         "band: min to max", y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)
    return True


def _panels(grid, layout):
    """((row value or None, language), axis) for every panel of a relplot faceted by `layout`."""
    for key, ax in grid.axes_dict.items():
        yield (key if layout["row"] else (None, key)), ax


def figure_saturation(series, fields, path):
    data = series.dropna(subset=["sim_mean"])
    grid = sns.relplot(data=data, x="step", y="sim_mean", hue="variant", kind="line", height=3, aspect=1.2,
                       hue_order=ordered_variants(data["variant"]), errorbar=("pi", 50),
                       col=facets(fields)["col"])
    grid.set_axis_labels("step", "saturation similarity (c=1000)")
    grid.figure.suptitle("Saturation over training: cosine of f(x; theta) and f(x; 1000 theta), mean over layers",
                         y=1.02)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)


def figure_heads(rows, path):
    """Histogram of positions attended per query at the saturated limit, over all heads of each variant."""
    records = []
    for row in rows:
        for count, n in ((row["metrics"].get("probes") or {}).get("attended_histogram") or {}).items():
            records.append({"variant": row["config"]["model"]["attention"], "positions": int(count), "queries": n})
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return False
    frame = frame.groupby(["variant", "positions"], as_index=False)["queries"].sum()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=frame[frame["positions"] <= 40], x="positions", y="queries", hue="variant",
                hue_order=ordered_variants(frame["variant"]), ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("positions attended (weight > 1e-5) under saturation")
    ax.set_title("Positions each query attends to at the saturated limit, all heads, layers and cells; 1: argmax-like",
                 fontsize=9)
    ax.xaxis.set_major_locator(plt.MaxNLocator(12))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def render_norm_growth(view):
    if not figure_norm_growth(view.series, view.fields, view.figures / "norm_growth.png"):
        return []
    return ["![norm growth](figures/norm_growth.png)", ""]


def render_norm_laws(view):
    counts = law_counts(view.rows, view.fields)
    if counts is None:
        return []
    return ["### Which law predicts the latest steps", "",
            "Seeds whose norm over the last third of the logged steps is predicted best by sqrt(t), t or log t "
            "growth, each fitted to the earliest two thirds (`heldout_rmse_*`), out of the seeds with a decision.", "",
            markdown(counts), ""]


def render_limit_over_training(view):
    if not figure_limit_over_training(view.series, view.fields, view.figures / "limit_over_training.png"):
        return []
    return ["![kappa with the saturated limit, accuracy at the limit and distance to saturation over training]"
            "(figures/limit_over_training.png)", ""]


def render_saturation_over_training(view):
    if view.series.empty or view.series["sim_mean"].isna().all():
        return []
    figure_saturation(view.series, view.fields, view.figures / "saturation_over_training.png")
    return ["![saturation over training](figures/saturation_over_training.png)", ""]


def render_head_histogram(view):
    if not figure_heads(view.rows, view.figures / "head_histogram.png"):
        return []
    return ["![positions attended](figures/head_histogram.png)", ""]


RENDERERS = {
    "norm_growth": render_norm_growth,
    "norm_laws": render_norm_laws,
    "limit_over_training": render_limit_over_training,
    "saturation_over_training": render_saturation_over_training,
    "head_histogram": render_head_histogram,
}
