"""The renderers a probe's report section asks for by name (probes/report_section.py, `renderers`): what a table of
numbers cannot show, such as how the norm moved over training. Each takes the RunView of the run and returns Markdown
lines; the figures go into the run's figures/.
"""

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import style
from .common import markdown, ordered_languages, ordered_variants, setting, variant_of


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
DISTANCE_PREFIX = "tv_limit_layer"  # the distance to saturation of layer l, logged as tv_limit_layer{l}
# What the limit-over-training figure draws, a line style each (defined in probes/saturation_similarity.py).
LIMIT_MEASURES = {"kappa_limit": "kappa with the limit", "acc_limit": "accuracy at the limit"}
MEASURE_DASHES = ["", (4, 2), (1, 1.5)]


def norm_series(rows, fields):
    """One line per logged step of every cell: the norm and whatever the probes followed through training, the
    distance to saturation of each layer included."""
    records = []
    for row in rows:
        for entry in row["log"]:
            layers = {key: value for key, value in entry.items() if key.startswith(DISTANCE_PREFIX)}
            records.append({"variant": variant_of(row), "language": row["config"]["language"],
                            "seed": row["config"]["seed"], **setting(row, fields), "step": entry["step"],
                            **{key: entry.get(key, math.nan) for key in SERIES}, **layers})
    return pd.DataFrame.from_records(records)


def growth_facets(fields, variants):
    """The figures that follow training: one panel column per language; colour by the weight decay when it varies,
    else by variant; line style by variant when colour is taken and several variants ran (`dashes`: a variant's line
    style, the same in every panel); one panel row per combination of all the other varying fields (such as the layer
    norm with the bias zipped to it, and the surrogate), so that no panel, and no band, pools different settings."""
    hue = "train.weight_decay" if "train.weight_decay" in fields else "variant"
    dashed = hue != "variant" and len(set(variants)) > 1
    return {"hue": hue, "rows": [f for f in fields if f != hue], "style": "variant" if dashed else None,
            "dashes": dict(zip(ordered_variants(variants), MEASURE_DASHES)) if dashed else None}


def colours(data, hue):
    """{value: colour} in order for the colour field of a figure: the variants' own colours, or light to dark for a
    numeric setting."""
    return style.variant_palette(data["variant"]) if hue == "variant" else style.setting_palette(data[hue])


def panel_parts(data, layout):
    """[((row values, language), rows drawn in the panel)] for every panel with data: a row of panels per combination
    of `layout["rows"]` that ran, in the order of its values (numbers by value, variants in the report's order), a
    column per language in the report's order."""
    fields = layout["rows"]
    variants = ordered_variants(data["variant"])
    languages = ordered_languages(data["language"])

    def order(item):
        values, language = item[0]
        return (tuple(variants.index(v) if f == "variant" else style.by_value(v) for f, v in zip(fields, values)),
                languages.index(language))

    # dropna=False: a field unset in some cells (None) is a setting of its own, not a reason to drop them.
    groups = data.groupby([*fields, "language"], dropna=False, sort=False)
    return sorted((((tuple(key[:-1]), key[-1]), part) for key, part in groups), key=order)


def panel_grid(parts):
    """The figure for `parts`: a column per language (at most three to a row), so that a row of panels is one
    setting; and the width of one panel, for its title."""
    columns = min(len({language for (_, language), _ in parts}), 3)
    fig, axes = style.panels(len(parts), columns=columns)
    return fig, axes, fig.get_figwidth() / columns


def panel_title(key, layout, width):
    """The language, and under it the panel's setting in short field names ("layer norm pre, bias True")."""
    values, language = key
    named = ", ".join(str(v) if f == "variant" else f"{style.field_name(f)} {v}"
                      for f, v in zip(layout["rows"], values))
    return style.heading(language, named, width)


def legend_handles(palette, layout, data, extra=()):
    """The legend of a figure that follows training: a line per colour, a line style per variant when style is taken,
    and any `extra` entries (fits, measures)."""
    if layout["hue"] == "variant":
        handles = style.variant_handles(list(palette), marker=False)
    else:
        handles = [plt.Line2D([], [], color=colour, label=f"{style.field_name(layout['hue'])} {value}")
                   for value, colour in palette.items()]
    if layout["style"]:
        handles += [plt.Line2D([], [], color="0.3", ls=(0, dashes) if dashes else "-", label=variant)
                    for variant, dashes in layout["dashes"].items()]
    return handles + list(extra)


def _by_hue(data, hue):
    """The colour field as text: a numeric hue of seaborn would give weight decays 0 and 0.01 nearly one colour."""
    return data.assign(**{hue: data[hue].map(str)}) if hue != "variant" else data


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


def _lines(ax, part, y, layout, palette, style_field=None, dashes=None):
    """Mean over seeds against t in the figure's colours, with the report's 95% bootstrap band. The line styles are
    the figure's (`dashes`, else the layout's per variant), not the panel's: a variant missing from one panel leaves
    the others their dashes, as the legend shows them."""
    style_field = style_field or layout["style"]
    dashes = dashes or layout["dashes"]
    sns.lineplot(data=part, x="step", y=y, hue=layout["hue"], hue_order=list(palette), palette=palette,
                 style=style_field, style_order=list(dashes) if style_field else None,
                 dashes=dashes if style_field else True, errorbar=style.band, legend=False, ax=ax)


def figure_norm_growth(series, fields, path):
    """Norm against t, log-log, one panel per language; line: mean over seeds, band: its 95% bootstrap interval;
    dashed black: the fit ||theta|| = a t^gamma + b to the mean series of the first colour (no weight decay when the
    decay varies), its gamma written in the panel; dotted grey: the fit a sqrt(t) + b to the same series."""
    data = series[series["step"] > 0]
    if data.empty:
        return False
    layout = growth_facets(fields, data["variant"])
    # Norms that weight decay drove to zero are drawn at the floor of the log axis.
    data = _by_hue(data, layout["hue"]).assign(norm=data["norm"].clip(lower=NORM_FLOOR))
    palette = colours(data, layout["hue"])
    hues = list(palette)
    parts = panel_parts(data, layout)
    with style.paper():
        fig, axes, width = panel_grid(parts)
        for (key, part), ax in zip(parts, axes):
            _lines(ax, part, "norm", layout, palette)
            mean = part[part[layout["hue"]] == hues[0]].groupby("step")["norm"].mean()
            t = mean.index.to_numpy(dtype=float)
            laws = fitted_laws(t, mean.to_numpy())
            if laws:
                ax.plot(t, np.maximum(laws["power"], NORM_FLOOR), color="black", ls="--", lw=0.9)
                ax.plot(t, np.maximum(laws["sqrt"], NORM_FLOOR), color="0.45", ls=":", lw=0.9)
                ax.text(0.04, 0.94, f"γ = {laws['gamma']:.2f}", transform=ax.transAxes, va="top")
            ax.set_title(panel_title(key, layout, width))
            ax.set_xlabel("")
            ax.set_ylabel("")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
        for ax in axes:  # after every panel is drawn: the shared y limits are final
            style.log_axis(ax, "x")
            style.log_axis(ax, "y")
        fig.supxlabel("step t (updates)")
        fig.supylabel("‖θ‖ (l2, embeddings excluded)")
        fits = [plt.Line2D([], [], color="black", ls="--", lw=0.9, label="a t^γ + b"),
                plt.Line2D([], [], color="0.45", ls=":", lw=0.9, label="a √t + b")]
        style.legend_above(fig, legend_handles(palette, layout, data, fits),
                           f"Parameter norm against t; fits to the mean of {style.field_name(layout['hue'])} {hues[0]}")
        style.save(fig, path)
    return True


def law_counts(rows, fields):
    """Per language, variant and varying field: how many seeds each growth law predicts best on held-out steps
    (the norm-growth probe's `best_law`), as "k/n" with n the seeds that have one. None without any."""
    records = [{"language": row["config"]["language"], "variant": variant_of(row),
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


def measures_over_training(data, fields, names):
    """For the figures that draw several measures against t, each in a line style of its own: the layout (colour as
    `growth_facets` chooses it; the variant moves to the panel rows where the line style would have shown it), the
    measures {column: name} in long form (`measure`, `value`) and the dashes of each measure shown."""
    layout = growth_facets(fields, data["variant"])
    if layout["style"]:  # line style is the measure's: one panel row per variant (and setting) instead
        layout = {**layout, "rows": ["variant", *layout["rows"]], "style": None, "dashes": None}
    ids = ["language", "step", "seed", "variant", layout["hue"], *layout["rows"]]
    long = data.melt(id_vars=list(dict.fromkeys(ids)), value_vars=list(names), var_name="measure", value_name="value")
    # A measure may be undefined at a step: kappa, while both classifiers decide constantly and alike (at init).
    long = _by_hue(long.dropna(subset=["value"]), layout["hue"])
    long["measure"] = long["measure"].map(names)
    shown = [name for name in names.values() if name in set(long["measure"])]
    return layout, long, dict(zip(shown, itertools.cycle(MEASURE_DASHES)))


def dash_handles(dashes):
    """Legend entries for the line styles {name: dashes} of the measures, in grey: they key a style, not a colour."""
    return [plt.Line2D([], [], color="0.3", ls=(0, d) if d else "-", label=name) for name, d in dashes.items()]


def figure_limit_over_training(series, fields, path):
    """Against t, one panel per language: Cohen's kappa between the decisions at c=1 and at the saturated limit
    (solid) and the limit's accuracy (dashed), mean over seeds with its 95% bootstrap band."""
    data = series[series["step"] > 0].dropna(subset=list(LIMIT_MEASURES), how="all")
    if data.empty:
        return False
    layout, long, dashes = measures_over_training(data, fields, LIMIT_MEASURES)
    palette = colours(long, layout["hue"])
    parts = panel_parts(long, layout)
    with style.paper():
        fig, axes, width = panel_grid(parts)
        for (key, part), ax in zip(parts, axes):
            _lines(ax, part, "value", layout, palette, style_field="measure", dashes=dashes)
            ax.axhline(0.5, color="0.5", lw=0.6, ls=":")
            ax.axhline(0.0, color="0.5", lw=0.6, ls=":")
            ax.set_title(panel_title(key, layout, width))
            ax.set_xlabel("")
            ax.set_ylabel("")
            style.log_axis(ax, "x", long["step"].min(), long["step"].max())
        fig.supxlabel("step t (updates)")
        fig.supylabel("kappa; accuracy")
        style.legend_above(fig, legend_handles(palette, layout, long, dash_handles(dashes)),
                           "Agreement with the saturated limit over training (dotted: 0 and 0.5)")
        style.save(fig, path)
    return True


def figure_saturation_distance(series, fields, path):
    """Against t, one panel per language: each layer's distance to saturation (mean total-variation distance between
    the attention as trained and the saturated attention of the same scores; 0: saturated), one line style per
    layer, mean over seeds with its 95% bootstrap band."""
    layers = sorted((c for c in series.columns if c.startswith(DISTANCE_PREFIX)),
                    key=lambda c: int(c.removeprefix(DISTANCE_PREFIX)))
    data = series[series["step"] > 0].dropna(subset=layers, how="all") if layers else series.iloc[:0]
    if data.empty:
        return False
    names = {column: f"layer {column.removeprefix(DISTANCE_PREFIX)}" for column in layers}
    layout, long, dashes = measures_over_training(data, fields, names)
    palette = colours(long, layout["hue"])
    parts = panel_parts(long, layout)
    with style.paper():
        fig, axes, width = panel_grid(parts)
        for (key, part), ax in zip(parts, axes):
            _lines(ax, part, "value", layout, palette, style_field="measure", dashes=dashes)
            ax.set_title(panel_title(key, layout, width))
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_ylim(-0.02, 1.02)  # a total-variation distance lies in [0, 1]
            style.log_axis(ax, "x", long["step"].min(), long["step"].max())
        fig.supxlabel("step t (updates)")
        fig.supylabel("TV distance to saturation")
        style.legend_above(fig, legend_handles(palette, layout, long, dash_handles(dashes)),
                           "Distance to saturation per layer over training (0: saturated)")
        style.save(fig, path)
    return True


def figure_saturation(series, fields, path):
    """The paper's saturation similarity against t: cosine of f(x; theta) and f(x; 1000 theta), mean over layers; one
    panel per language and combination of the varying fields, one line per variant (mean over seeds, band: its 95%
    bootstrap interval)."""
    data = series.dropna(subset=["sim_mean"])
    data = data[data["step"] > 0]
    if data.empty:
        return False
    layout = {"hue": "variant", "rows": list(fields), "style": None, "dashes": None}
    palette = colours(data, "variant")
    parts = panel_parts(data, layout)
    with style.paper():
        fig, axes, width = panel_grid(parts)
        for (key, part), ax in zip(parts, axes):
            _lines(ax, part, "sim_mean", layout, palette)
            ax.set_title(panel_title(key, layout, width))
            ax.set_xlabel("")
            ax.set_ylabel("")
            style.log_axis(ax, "x", data["step"].min(), data["step"].max())
        fig.supxlabel("step t (updates)")
        fig.supylabel("cosine similarity")
        style.legend_above(fig, style.variant_handles(list(palette), marker=False),
                           "Saturation similarity (c = 1000) over training")
        style.save(fig, path)
    return True


def figure_heads(rows, path, widest=20):
    """How many positions each query attends to at the saturated limit (weight > 1e-5), over all heads, layers and
    cells of each variant: one bar per variant at every count, side by side on integer bins; counts above `widest`
    are pooled into one last bin."""
    records = []
    for row in rows:
        for count, n in ((row["metrics"].get("probes") or {}).get("attended_histogram") or {}).items():
            records.append({"variant": variant_of(row), "positions": int(count), "queries": n})
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return False
    frame["positions"] = frame["positions"].clip(upper=widest + 1)
    counts = frame.groupby(["variant", "positions"])["queries"].sum().unstack("positions", fill_value=0)
    variants = ordered_variants(counts.index)
    bins = list(range(1, int(counts.columns.max()) + 1))
    counts = counts.reindex(index=variants, columns=bins, fill_value=0)
    share = counts.div(counts.sum(axis=1), axis=0)
    width = 0.8 / len(variants)
    with style.paper():
        fig, ax = plt.subplots(figsize=(style.SINGLE_COLUMN, 2.3), layout="constrained")
        for i, variant in enumerate(variants):
            ax.bar([b - 0.4 + width * (i + 0.5) for b in bins], share.loc[variant], width=width,
                   color=style.variant_color(variant, variants), label=variant)
        ax.set_yscale("log")
        style.log_axis(ax, "y")  # a few queries' shares span less than a decade: labels at 1, 2 and 5 then
        labels = {b: str(b) for b in bins}
        if counts.columns.max() > widest:
            labels[widest + 1] = f">{widest}"
        every = math.ceil(len(bins) / 8)  # about eight labels; the last bin always, and no label crowding it
        shown = [b for b in bins if (b == 1 or b % every == 0) and bins[-1] - b >= max(every, 2) / 2] + [bins[-1]]
        ax.set_xticks(shown, [labels[b] for b in shown])
        ax.set_xlim(0.4, bins[-1] + 0.6)
        ax.set_xlabel("positions attended (weight > 1e-5)")
        ax.set_ylabel("share of queries")
        ax.grid(axis="x", visible=False)
        style.legend_above(fig, style.variant_handles(variants, marker=False),
                           "Positions per query at the saturated limit (1: argmax-like)")
        style.save(fig, path)
    return True


def render_norm_growth(view):
    if not figure_norm_growth(view.series, view.fields, view.figures / "norm_growth.png"):
        return []
    return ["![norm growth](figures/norm_growth.png)", "",
            "Parameter norm against t, log-log; line: mean over seeds, band: its 95% bootstrap interval; dashed: the "
            "fit a t^γ + b and dotted: a √t + b, both to the mean series of the first colour; norms below "
            f"{NORM_FLOOR:g} are drawn at {NORM_FLOOR:g}.", ""]


def render_norm_laws(view):
    counts = law_counts(view.rows, view.fields)
    if counts is None:
        return []
    return ["### Which law predicts the latest steps", "",
            "Seeds whose norm over the last third of the logged steps is predicted best by sqrt(t), t or log t "
            "growth, each fitted to the earliest two thirds (`heldout_rmse_*`), out of the seeds with a decision.", "",
            markdown(counts), ""]


def render_limit_over_training(view):
    lines = []
    if figure_limit_over_training(view.series, view.fields, view.figures / "limit_over_training.png"):
        lines += ["![kappa with the saturated limit and accuracy at the limit over training]"
                  "(figures/limit_over_training.png)", "",
                  "Against t, on the probe strings: Cohen's kappa between the decisions at c=1 and at the saturated "
                  "limit (0: chance agreement) and the limit's accuracy (0.5: chance); line: mean over seeds, band: "
                  "its 95% bootstrap interval.", ""]
    if figure_saturation_distance(view.series, view.fields, view.figures / "saturation_distance.png"):
        lines += ["![distance to saturation per layer over training](figures/saturation_distance.png)", "",
                  "Distance to saturation per layer: the mean total-variation distance between each layer's attention "
                  "as trained and the saturated attention of the same scores (0: saturated), against t.", ""]
    return lines


def render_saturation_over_training(view):
    if view.series.empty or view.series["sim_mean"].isna().all():
        return []
    if not figure_saturation(view.series, view.fields, view.figures / "saturation_over_training.png"):
        return []
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
