"""The report's probe sections: norm growth, saturation over training, attention heads, counter representations."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .report import VARIANTS, markdown


def _probes(row):
    return row["metrics"].get("probes") or {}


def _setting(row):
    return {"weight_decay": row["config"]["train"]["weight_decay"], "d_model": row["config"]["model"]["d_model"]}


def probe_frame(rows):
    records = []
    for row in rows:
        probes = _probes(row)
        if not probes:
            continue
        records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                        "seed": row["config"]["seed"], **_setting(row),
                        **{k: v for k, v in probes.items() if not isinstance(v, dict)}})
    return pd.DataFrame.from_records(records)


def mean_std(values):
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.mean():.3f}±{values.std(ddof=0):.3f}"


def summary_table(frame, columns, by):
    return frame.groupby(by).agg({c: mean_std for c in columns if c in frame})


def norm_series(rows):
    records = []
    for row in rows:
        for entry in row["log"]:
            records.append({"variant": row["config"]["model"]["attention"], "language": row["config"]["language"],
                            **_setting(row), "step": entry["step"], "norm": entry["norm"],
                            "sim_mean": entry.get("sim_mean", math.nan)})
    return pd.DataFrame.from_records(records)


def figure_norm_growth(series, path):
    """Norm over training, log-log, one line per variant (mean over members; band: min to max)."""
    data = series[series["step"] > 0]
    col = "weight_decay" if data["weight_decay"].nunique() > 1 else None
    grid = sns.relplot(data=data, x="step", y="norm", hue="variant", col=col, kind="line", height=3, aspect=1.2,
                       hue_order=[v for v in VARIANTS if v in set(data["variant"])], errorbar=("pi", 100),
                       style="d_model" if data["d_model"].nunique() > 1 else None)
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


def figure_saturation(series, path):
    data = series.dropna(subset=["sim_mean"])
    col = "weight_decay" if data["weight_decay"].nunique() > 1 else None
    grid = sns.relplot(data=data, x="step", y="sim_mean", hue="variant", col=col, kind="line", height=3, aspect=1.2,
                       hue_order=[v for v in VARIANTS if v in set(data["variant"])], errorbar=("pi", 50))
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
    frame = probe_frame(rows)
    if frame.empty:
        return []
    figures = run_dir / "figures"
    by = ["language", "variant"] + [c for c in ("d_model", "weight_decay") if frame[c].nunique() > 1]
    lines = ["## Norm growth and saturation", "",
             "Per language and variant, mean±std over seeds. `growth_gamma`: exponent of a power law fit to the "
             "norm's growth since the first logged step (the paper predicts about 0.5 without weight decay); "
             "`gamma`: the same fit to the raw norm; `norm_ratio`: final / initial norm; `sim_mean`: saturation "
             "similarity at the end of training (cosine between the hidden states at c=1 and c=1000, mean over "
             "layers); `decision_agreement`: share of test strings decided alike at c=1 and at the saturated limit.",
             "",
             markdown(summary_table(frame, ["growth_gamma", "gamma", "norm_ratio", "sqrt_r2", "sim_mean",
                                            "decision_agreement", "cos_consecutive_last"], by)), ""]
    if frame["weight_decay"].nunique() > 1:
        lines += ["### Weight decay", "", "Over all languages and seeds:", "",
                  markdown(summary_table(frame, ["growth_gamma", "norm_ratio", "sim_mean"],
                                         ["weight_decay", "variant"])), ""]
    series = norm_series(rows)
    figure_norm_growth(series, figures / "norm_growth.png")
    figure_saturation(series, figures / "saturation_over_training.png")
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
                  "Best layer's held-out R² (counter values: (#a-#b)/i, Dyck depth/i) or balanced accuracy "
                  "(the prefix-is-balanced flag), fit on half of the strings and scored on the other half; "
                  "`probe_control_*` is the same probe on a randomly initialised model of the same shape.", ""]
        subset = frame.dropna(subset=probe_columns, how="all")
        lines += [markdown(summary_table(subset, probe_columns, by)), ""]
    return lines
