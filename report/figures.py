"""The report's recognition figures: the heatmap of what each variant recognizes, accuracy against length with the
training range shaded, and accuracy against the scale c with the exact limit as its own point. Drawn in the one style
of report/style.py; what each shows in words is the caption report/write.py prints under it."""

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import style
from .common import UNIFORM, ordered_languages, ordered_variants, variant_of

SCALE_DASHES = {"1": "", "inf": (4, 2)}  # as trained: solid; the saturated limit: dashed


def figure_heatmap(table, path, title=None):
    """Mean accuracy in distribution over seeds, languages down, variant and scale (c=1, c=inf) across. The colour
    scale runs from 0 to 1 whatever the run measured, so that equal colours mean equal accuracy in every figure."""
    scales = [s for s in ("1", "inf") if s in set(table["scale"])]
    part = table[table["scale"].isin(scales)]
    pivot = part.groupby(["language", "variant", "scale"])["acc"].mean().unstack(["variant", "scale"])
    pivot = pivot.reindex(ordered_languages(part["language"]))
    pivot = pivot[[(v, s) for v in ordered_variants(v for v, _ in pivot.columns) for s in scales
                   if (v, s) in pivot.columns]]
    variants = list(dict.fromkeys(v for v, _ in pivot.columns))
    pivot.columns = ["c=∞" if s == "inf" else f"c={s}" for _, s in pivot.columns]
    width = style.SINGLE_COLUMN if len(pivot.columns) <= 6 else style.FULL_WIDTH
    with style.paper():
        fig, ax = plt.subplots(figsize=(width, 0.22 * len(pivot) + 1.4), layout="constrained")
        sns.heatmap(pivot, annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="viridis", ax=ax, annot_kws={"size": 6},
                    linewidths=0.5, linecolor="white", cbar_kws={"label": "accuracy"})
        # The variants name pairs of columns, on an axis of their own above the heatmap.
        top = ax.secondary_xaxis("top")
        top.set_xticks([len(scales) * (i + 0.5) for i in range(len(variants))], variants)
        top.tick_params(length=0)
        for i in range(1, len(variants)):
            ax.axvline(len(scales) * i, color="white", lw=2)
        ax.set_xlabel("scale c")
        ax.set_ylabel("language")
        ax.tick_params(axis="x", rotation=0)
        ax.tick_params(axis="y", rotation=0)
        ax.grid(False)
        style.title(fig, "Accuracy in distribution, mean over seeds", title)
        style.save(fig, path)


def figure_accuracy_vs_length(rows, path, scale="1", chance=0.5, title=None):
    """Accuracy by test length, one panel per language, one colour per variant: as trained (c=`scale`, solid) and at
    the exact limit (c=inf, dashed); line: mean over seeds, band: its 95% bootstrap interval; shaded: the training
    lengths; grey dashes: chance (None where it is near 0, as in the next-symbol task)."""
    records = []
    for row in rows:
        for c in dict.fromkeys([scale, "inf"]):
            for length, acc in row["metrics"]["acc_by_length"].get(c, {}).items():
                records.append({"language": row["config"]["language"], "variant": variant_of(row),
                                "length": int(length), "accuracy": acc, "c": c})
    frame = pd.DataFrame.from_records(records)
    languages = ordered_languages(frame["language"])
    variants = ordered_variants(frame["variant"])
    train_lo, train_hi = rows[0]["config"]["data"]["train_lengths"]
    with style.paper():
        fig, axes = style.panels(len(languages))
        for language, ax in zip(languages, axes):
            ax.axvspan(train_lo - 0.5, train_hi + 0.5, color="0.88", lw=0, zorder=0)
            sns.lineplot(data=frame[frame["language"] == language], x="length", y="accuracy", hue="variant",
                         hue_order=variants, palette=style.variant_palette(variants), style="c",
                         style_order=[c for c in SCALE_DASHES if c in set(frame["c"])], dashes=SCALE_DASHES,
                         errorbar=style.band, legend=False, ax=ax)
            if chance:
                ax.axhline(chance, color="0.5", lw=0.7, ls=(0, (2, 2)))
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(language)
            ax.set_xlabel("")
            ax.set_ylabel("")
        fig.supxlabel("string length (symbols)")
        fig.supylabel("accuracy")
        handles = style.variant_handles(variants, marker=False) + [
            plt.Line2D([], [], color="0.3", ls="-", label=f"c={scale}"),
            plt.Line2D([], [], color="0.3", ls=(0, SCALE_DASHES["inf"]), label="c=∞ (limit)"),
            plt.Rectangle((0, 0), 1, 1, color="0.88", label="training lengths")]
        style.legend_above(fig, handles, "Accuracy by length", title)
        style.save(fig, path)


def figure_accuracy_vs_scale(table, path, unit="scale c", chance=0.5, title=None):
    """Accuracy in distribution against c, one panel per language, one line per variant over the finite scales (mean
    over seeds; band: its 95% bootstrap interval); the exact limit c=inf stands apart on the right as its own point
    with its interval, and the uniform-attention control (the c -> 0 end, which a log axis cannot place) is a thin
    dashed line in the variant's colour."""
    finite = table[(table["scale_value"] > 0) & (table["scale_value"] < math.inf)]
    limit = table[table["scale_value"] == math.inf]
    uniform = table[table["scale"] == UNIFORM]
    variants = ordered_variants(table["variant"])
    palette = style.variant_palette(variants)
    lo = finite["scale_value"].min() if len(finite) else 1.0
    hi = finite["scale_value"].max() if len(finite) else 1.0
    top = hi * 100  # where the limit stands: two decades right of the largest finite c
    languages = ordered_languages(table["language"])
    with style.paper():
        fig, axes = style.panels(len(languages))
        for language, ax in zip(languages, axes):
            sns.lineplot(data=finite[finite["language"] == language], x="scale_value", y="acc", hue="variant",
                         hue_order=variants, palette=palette, style="variant", markers=style.variant_markers(variants),
                         dashes=False, errorbar=style.band, legend=False, ax=ax)
            for variant, values in limit[limit["language"] == language].groupby("variant")["acc"]:
                style.point_with_interval(ax, top, values, variant, variants)
            for variant, values in uniform[uniform["language"] == language].groupby("variant")["acc"]:
                ax.axhline(values.mean(), color=palette[variant], lw=0.7, ls=(0, (5, 3)))
            if chance:
                ax.axhline(chance, color="0.5", lw=0.7, ls=(0, (2, 2)))
            ax.axvline(math.sqrt(hi * top), color="0.5", lw=0.7, ls=":")
            style.log_axis(ax, "x", lo, hi, extra={top: "∞"})
            ax.set_xlim(lo / 2, top * 2)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(language)
            ax.set_xlabel("")
            ax.set_ylabel("")
        fig.supxlabel(unit)
        fig.supylabel("accuracy in distribution")
        handles = style.variant_handles(variants)
        if len(uniform):
            handles.append(plt.Line2D([], [], color="0.3", lw=0.7, ls=(0, (5, 3)), label="uniform attention"))
        style.legend_above(fig, handles, f"Accuracy against the {unit}; right of the dotted line: the exact limit",
                           title)
        style.save(fig, path)
