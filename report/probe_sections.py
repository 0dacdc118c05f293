"""The report's probe sections: norm growth, saturation over training, attention heads, linear probes.

Besides language and variant, every table and figure splits by the config fields that vary across the run (weight
decay, model size, ...), whichever they are: `varying_fields`.
"""

import math

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


def probe_frame(rows, fields):
    records = []
    for row in rows:
        probes = _probes(row)
        if not probes:
            continue
        records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                        "seed": row["config"]["seed"], **_setting(row, fields),
                        **{k: v for k, v in probes.items() if not isinstance(v, dict)}})
    return pd.DataFrame.from_records(records)


def mean_std(values):
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.mean():.3f}±{values.std(ddof=0):.3f}"


def summary_table(frame, columns, by):
    return frame.groupby(by).agg({c: mean_std for c in columns if c in frame})


def norm_series(rows, fields):
    records = []
    for row in rows:
        for entry in row["log"]:
            records.append({"variant": row["config"]["model"]["attention"], "language": row["config"]["language"],
                            **_setting(row, fields), "step": entry["step"], "norm": entry["norm"],
                            "sim_mean": entry.get("sim_mean", math.nan)})
    return pd.DataFrame.from_records(records)


def facets(fields):
    """Figure facets from the varying fields: columns by the last one (in sorted order train.* comes after model.*,
    so a weight-decay axis gets the columns), line style by the one before."""
    return {"col": fields[-1] if fields else None, "style": fields[-2] if len(fields) > 1 else None}


def figure_norm_growth(series, fields, path):
    """Norm over training, log-log, one line per variant (mean over members; band: min to max)."""
    data = series[series["step"] > 0]
    grid = sns.relplot(data=data, x="step", y="norm", hue="variant", kind="line", height=3, aspect=1.2,
                       hue_order=[v for v in VARIANTS if v in set(data["variant"])], errorbar=("pi", 100),
                       **facets(fields))
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        t = np.geomspace(data["step"].min(), data["step"].max(), 50)
        # A sqrt(t) guide through the first point: the growth the paper predicts for unregularised training.
        start = data[data["step"] == data["step"].min()]["norm"].mean()
        ax.plot(t, start * np.sqrt(t / t[0]), color="grey", ls=":", lw=1, label="∝ sqrt(t)")
    grid.figure.suptitle("Parameter norm over training (embeddings excluded); dotted: sqrt(t)", y=1.02)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)


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
    ax.xaxis.set_major_locator(plt.MaxNLocator(12))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def probe_sections(rows, run_dir):
    fields = varying_fields(rows)
    frame = probe_frame(rows, fields)
    if frame.empty:
        return []
    figures = run_dir / "figures"
    by = ["language", "variant", *fields]
    lines = ["## Norm growth and saturation", "",
             "Per language and variant, mean±std over seeds. `growth_gamma`: exponent of a power law fit to the "
             "norm's growth since the first logged step (the paper predicts about 0.5 without weight decay); "
             "`gamma`: the same fit to the raw norm; `norm_ratio`: final / initial norm; `sim_mean`: saturation "
             "similarity at the end of training (cosine between the hidden states at c=1 and c=1000, mean over "
             "layers); `decision_agreement`: share of test strings decided alike at c=1 and at the saturated limit.",
             "",
             markdown(summary_table(frame, ["growth_gamma", "gamma", "norm_ratio", "sqrt_r2", "sim_mean",
                                            "decision_agreement", "cos_consecutive_last"], by)), ""]
    for field in fields:
        lines += [f"### By {field}", "", "Over all languages and seeds:", "",
                  markdown(summary_table(frame, ["growth_gamma", "norm_ratio", "sim_mean"], [field, "variant"])), ""]
    series = norm_series(rows, fields)
    figure_norm_growth(series, fields, figures / "norm_growth.png")
    figure_saturation(series, fields, figures / "saturation_over_training.png")
    lines += ["![norm growth](figures/norm_growth.png)", "",
              "![saturation over training](figures/saturation_over_training.png)", ""]

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
