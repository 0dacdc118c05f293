"""The report's probe sections: norm growth, saturation over training, attention heads, linear probes.

Besides language and variant, every table and figure splits by the config fields that vary across the run (weight
decay, model size, ...), whichever they are: `varying_fields`.
"""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .common import VARIANTS, flatten, markdown

SPLIT_ALWAYS = {"language", "seed", "model.attention"}  # every table splits by these already (seed: over seeds)


def _probes(row):
    return row["metrics"].get("probes") or {}


def varying_fields(rows) -> list[str]:
    """Flat config fields (such as train.weight_decay) that take more than one value across the rows."""
    values: dict[str, set] = {}
    for row in rows:
        for key, value in flatten(row["config"]).items():
            values.setdefault(key, set()).add(repr(value))
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in SPLIT_ALWAYS)


def _setting(row, fields):
    flat = flatten(row["config"])
    return {field: flat[field] for field in fields}


LATE = 0.2  # the late phase of training: logged steps t >= LATE * the last step


def late_squared_norm_fit(log):
    """Slope and r² of ||theta||² = slope * t + intercept over the late phase only (t >= LATE * the last step): after
    the first fast changes of training, a constant slope there is the sqrt(t) law of Merrill et al."""
    points = [(e["step"], e["norm"] ** 2) for e in log if "norm" in e]
    if not points:
        return {}
    last = points[-1][0]
    t, square = np.array([p for p in points if p[0] >= LATE * last], dtype=float).T
    if len(t) < 3 or np.ptp(square) == 0:
        return {"sq_late_slope": math.nan, "sq_late_r2": math.nan}
    slope, intercept = np.polyfit(t, square, 1)
    residual = square - (slope * t + intercept)
    return {"sq_late_slope": float(slope), "sq_late_r2": float(1 - residual.var() / square.var())}


def probe_frame(rows, fields):
    records = []
    for row in rows:
        probes = _probes(row)
        if not probes:
            continue
        records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                        "seed": row["config"]["seed"], **_setting(row, fields),
                        **{k: v for k, v in probes.items() if not isinstance(v, dict)},
                        **late_squared_norm_fit(row.get("log") or [])})
    return pd.DataFrame.from_records(records)


def mean_std(values):
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.mean():.3f}±{values.std(ddof=0):.3f}"


def summary_table(frame, columns, by):
    return frame.groupby(by).agg({c: mean_std for c in columns if c in frame})


SERIES = ("norm", "norm_with_embeddings", "sim_mean", "agree_limit", "acc_limit", "split_share", "value_distinct_share")


def norm_series(rows, fields):
    """One line per logged step of every cell: the norm and whatever the probes followed through training."""
    records = []
    for row in rows:
        for entry in row["log"]:
            records.append({"variant": row["config"]["model"]["attention"], "language": row["config"]["language"],
                            "seed": row["config"]["seed"], **_setting(row, fields), "step": entry["step"],
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


def figure_norm_growth(series, fields, path):
    """Norm against t, log-log, per language; line: mean over seeds, band: min to max; dashed: the fit
    ||theta||^2 = a t + b to the mean series of the first colour (no weight decay when decay varies)."""
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
        if len(mean) >= 3:
            t = mean.index.to_numpy(dtype=float)
            a, b = np.polyfit(t, mean.to_numpy() ** 2, 1)
            if a > 0:
                ax.plot(t, np.sqrt(np.maximum(a * t + b, 0)), color="black", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    grid.set_titles("{row_name} | {col_name}" if layout["row"] else "{col_name}")
    grid.set_axis_labels("step t", "||theta|| (embeddings excluded)")
    grid.figure.suptitle(f"Parameter norm against t, coloured by {layout['hue']}; line: mean over seeds, band: min to "
                         f"max; dashed: sqrt(a t + b) fitted to the mean of {layout['hue']} = {hues[0]}; norms below "
                         f"{NORM_FLOOR:g} drawn at {NORM_FLOOR:g}", y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)
    return True


def figure_limit_over_training(series, fields, path):
    """Agreement with the saturated limit and accuracy at the limit against t, per language."""
    data = series[series["step"] > 0].dropna(subset=["agree_limit"])
    if data.empty:
        return False
    layout = growth_facets(fields)
    long = data.melt(id_vars=["language", "step", "seed", layout["hue"]] + ([layout["row"]] if layout["row"] else []),
                     value_vars=["agree_limit", "acc_limit"], var_name="measure", value_name="share")
    long["measure"] = long["measure"].map({"agree_limit": "agreement with the limit",
                                           "acc_limit": "accuracy at the limit"})
    long[layout["hue"]] = long[layout["hue"]].map(str)
    hues = sorted(long[layout["hue"]].unique(), key=float if layout["hue"] == "train.weight_decay" else str)
    grid = sns.relplot(data=long, x="step", y="share", col="language", style="measure", kind="line", height=2.6,
                       aspect=1.4, errorbar=("pi", 100), hue_order=hues,
                       palette="viridis" if len(hues) > 3 else None, **layout)
    for _, ax in _panels(grid, layout):
        ax.set_xscale("log")
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    grid.set_titles("{row_name} | {col_name}" if layout["row"] else "{col_name}")
    grid.set_axis_labels("step t", "share of probe strings")
    grid.figure.suptitle("Decisions at c=1 that the saturated limit shares (solid) and the limit's accuracy (dashed) "
                         "against t; line: mean over seeds, band: min to max; dotted: chance", y=1.03, fontsize=9)
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
                       hue_order=[v for v in VARIANTS if v in set(data["variant"])], errorbar=("pi", 50),
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
        for count, n in (_probes(row).get("attended_histogram") or {}).items():
            records.append({"variant": row["config"]["model"]["attention"], "positions": int(count), "queries": n})
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return False
    frame = frame.groupby(["variant", "positions"], as_index=False)["queries"].sum()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=frame[frame["positions"] <= 40], x="positions", y="queries", hue="variant",
                hue_order=[v for v in VARIANTS if v in set(frame["variant"])], ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("positions attended (weight > 1e-5) under saturation")
    ax.set_title("Positions each query attends to at the saturated limit, all heads, layers and cells; 1: argmax-like",
                 fontsize=9)
    ax.xaxis.set_major_locator(plt.MaxNLocator(12))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


FIT_COLUMNS = ["norm_initial", "norm_final", "sq_slope", "sq_intercept", "sq_r2", "sq_late_slope", "sq_late_r2",
               "growth_gamma", "growth_gamma_r2"]
MAX_CELLS_LISTED = 100  # above this the per-cell fits are in norm_fits.csv only


def fit_table(frame, by):
    """One row per cell: the norm at the first and last logged step and the fits of `norm_growth_metrics`."""
    columns = [c for c in FIT_COLUMNS if c in frame]
    return frame.sort_values([*by, "seed"]).set_index([*by, "seed"])[columns]


def probe_sections(rows, run_dir):
    fields = varying_fields(rows)
    frame = probe_frame(rows, fields)
    if frame.empty:
        return []
    figures = run_dir / "figures"
    by = ["language", "variant", *fields]
    lines = ["## Norm growth and saturation", "",
             "Per language and variant, mean±std over seeds. The norm is the l2 norm of the parameters, embeddings "
             "excluded. `sq_slope`, `sq_r2`: slope and r² of the line ||theta||² = slope * t + intercept through every "
             "logged step (a linear square means the norm grows like sqrt(t)); `sq_late_slope`, `sq_late_r2`: the "
             f"same over the late phase, logged steps t >= {LATE:g} x the last; `growth_gamma`: exponent of a power "
             "law fitted to the norm's growth since the first logged step (0.5 for sqrt(t) growth); `norm_ratio`: "
             "final / initial norm; `sim_mean`: cosine between the hidden states at c=1 and with every parameter "
             "multiplied by 1000, mean over layers; `decision_agreement`: share of probe strings decided alike at c=1 "
             "and at the saturated limit; `cos_consecutive_last`: cosine between the parameter vectors of the last "
             "two logged steps (1: the direction has stopped moving).", "",
             markdown(summary_table(frame, ["sq_slope", "sq_r2", "sq_late_slope", "sq_late_r2", "growth_gamma",
                                            "norm_ratio", "sim_mean", "decision_agreement", "cos_consecutive_last"],
                                    by)), ""]
    fits = fit_table(frame, by)
    fits.to_csv(run_dir / "norm_fits.csv", float_format="%.6g")
    lines += ["### The fits per cell", "",
              "Every cell's norm at its first and last logged step, the line ||theta||² = sq_slope * t + sq_intercept "
              "with its r² over every logged step, the same line over the late phase only (`sq_late_*`: logged steps "
              f"t >= {LATE:g} x the last; a constant slope there is sqrt(t) growth once the first fast changes are "
              "over), and the power-law exponent of the growth since the first logged step with the r² of that "
              "fit in log-log (`growth_gamma`, `growth_gamma_r2`). Also in `norm_fits.csv`.", ""]
    if len(fits) <= MAX_CELLS_LISTED:
        lines += [markdown(fits.round(4)), ""]
    else:
        lines += [f"{len(fits)} cells: see `norm_fits.csv`.", ""]
    for field in fields:
        lines += [f"### By {field}", "", "Over all languages and seeds:", "",
                  markdown(summary_table(frame, ["sq_r2", "growth_gamma", "norm_ratio", "sim_mean"],
                                         [field, "variant"])), ""]
    series = norm_series(rows, fields)
    if figure_norm_growth(series, fields, figures / "norm_growth.png"):
        lines += ["![norm growth](figures/norm_growth.png)", ""]
    if figure_limit_over_training(series, fields, figures / "limit_over_training.png"):
        lines += ["![agreement with the saturated limit over training](figures/limit_over_training.png)", ""]
    figure_saturation(series, fields, figures / "saturation_over_training.png")
    lines += ["![saturation over training](figures/saturation_over_training.png)", ""]

    lines += ["## Attention heads under saturation", "",
              "Positions attended per query at the saturated limit (weight > 1e-5). A head is argmax-like when fewer "
              "than half of its queries split their attention over more than one position, mean-like otherwise.", "",
              markdown(summary_table(frame, ["attended_mean", "split_share", "argmax_like_share"],
                                     ["variant"] + by[2:])), ""]
    if figure_heads(rows, figures / "head_histogram.png"):
        lines += ["![positions attended](figures/head_histogram.png)", ""]

    probe_columns = sorted(c for c in frame.columns if c.startswith("probe_") and c.endswith("_best"))
    if probe_columns:
        lines += ["## Counter representations (linear probes)", "",
                  "Best layer's held-out R² for a counter a language declares (its count over the prefix length, "
                  "such as (#a-#b)/i or the Dyck depth/i) or balanced accuracy for its prefix flag (is the prefix in "
                  "the language, or balanced), fit on half of the strings and scored on the other half; "
                  "`probe_control_*` is the same probe on a randomly initialised model of the same shape.", ""]
        subset = frame.dropna(subset=probe_columns, how="all")
        lines += [markdown(summary_table(subset, probe_columns, by)), ""]
    return lines
