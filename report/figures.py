"""The report's recognition figures (seaborn): heatmap, accuracy against length, accuracy against scale."""

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .common import UNIFORM, ordered_variants


def figure_heatmap(table, path, chance=0.5):
    scales = [s for s in ("1", "inf") if s in set(table["scale"])]
    pivot = (table[table["scale"].isin(scales)].groupby(["language", "variant", "scale"])["acc"].mean()
             .unstack(["variant", "scale"]))
    pivot = pivot[[c for v in ordered_variants(v for v, _ in pivot.columns) for s in scales for c in [(v, s)]
                   if c in pivot.columns]]
    pivot.columns = [f"{v}\nc={s}" for v, s in pivot.columns]
    fig, ax = plt.subplots(figsize=(1.3 * len(pivot.columns) + 2, 0.4 * len(pivot) + 1.5))
    sns.heatmap(pivot, annot=True, fmt=".2f", vmin=chance or 0.0, vmax=1.0, cmap="viridis", ax=ax,
                cbar_kws={"label": "accuracy"})
    ax.set_title("Accuracy on the training lengths (mean over seeds)")
    ax.set_xlabel("")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_accuracy_vs_length(rows, path, scale="1", chance=0.5):
    """Accuracy by test length at c=`scale` (solid) and at the exact limit c=inf (dashed), one panel per language,
    one colour per variant; line: mean over seeds, band: min to max. `chance`: the accuracy of guessing (None where
    it is near 0, as in the next-symbol task), drawn as grey dashes."""
    records = []
    for row in rows:
        for c in dict.fromkeys([scale, "inf"]):
            for length, acc in row["metrics"]["acc_by_length"].get(c, {}).items():
                records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                                "length": int(length), "accuracy": acc, "c": c})
    frame = pd.DataFrame.from_records(records)
    languages = frame["language"].nunique()
    grid = sns.relplot(data=frame, x="length", y="accuracy", hue="variant", style="c", col="language",
                       col_wrap=languages if languages <= 5 else 4, kind="line", height=2.2, aspect=1.3,
                       hue_order=ordered_variants(frame["variant"]), style_order=[scale, "inf"],
                       errorbar=("pi", 100))
    train_hi = rows[0]["config"]["data"]["train_lengths"][1]
    for ax in grid.axes.flat:
        ax.axvline(train_hi, color="grey", lw=0.8, ls=":")
        if chance:
            ax.axhline(chance, color="grey", lw=0.6, ls="--")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("string length", "accuracy")
    grid.figure.suptitle(f"Accuracy by length at c={scale} (solid) and at the saturated limit c=inf (dashed); line: "
                         "mean over seeds, band: min to max; dotted: longest training length"
                         + ("; grey dashes: chance" if chance else ""),
                         y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)


def figure_accuracy_vs_scale(table, path, unit="scale c", chance=0.5):
    """Accuracy in distribution against c, one panel per language, one line per variant over the finite scales
    (mean over seeds; band: min to max); the exact limit c=inf stands apart on the right, as unconnected points, and
    the uniform-attention control (c -> 0, which a log axis cannot place) is a dashed line in the variant's colour."""
    finite = table[(table["scale_value"] > 0) & (table["scale_value"] < math.inf)]
    limit = table[table["scale_value"] == math.inf]
    uniform = table[table["scale"] == UNIFORM]
    top = finite["scale_value"].max() * 30 if len(finite) else 1.0
    hue_order = ordered_variants(table["variant"])
    grid = sns.relplot(data=finite, x="scale_value", y="acc", hue="variant", col="language",
                       col_wrap=min(5, table["language"].nunique()), kind="line", marker="o", height=2.2,
                       aspect=1.3, hue_order=hue_order, errorbar=("pi", 100))
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order))))
    for language, ax in grid.axes_dict.items():
        means = limit[limit["language"] == language].groupby("variant")["acc"].mean()
        for variant, acc in means.items():
            ax.plot([top], [acc], marker="D", ls="none", color=palette[variant])
        for variant, acc in uniform[uniform["language"] == language].groupby("variant")["acc"].mean().items():
            ax.axhline(acc, color=palette[variant], lw=0.9, ls=(0, (5, 3)))
        ax.set_xscale("log")
        ax.axvline(top / 5, color="grey", lw=0.8, ls=":")
        if chance:
            ax.axhline(chance, color="grey", lw=0.6, ls="--")
        ticks = [t for t in ax.get_xticks() if finite["scale_value"].min() <= t < top / 5]
        ax.set_xticks(ticks + [top], [f"{t:g}" for t in ticks] + ["inf"])
    grid.set_axis_labels(unit, "accuracy")
    grid.figure.suptitle(f"Accuracy on the training lengths against the {unit}; diamonds right of the dotted line: "
                         "the exact limit c=inf; " + ("coloured dashes: uniform attention (c -> 0); "
                                                      if len(uniform) else "")
                         + ("grey dashes: chance; " if chance else "")
                         + "band: min to max over seeds", y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)
