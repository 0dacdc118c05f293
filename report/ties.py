"""The report's tie section: how often queries split their attention at the saturated limit, whether the tied keys
carry different values (what lets saturated attention count), the score gaps as trained, and the accuracy at the
limit as the relative tie tolerance grows. Reads the `ties` and `tie_tolerance_acc` metrics of each row
(probes/ties.py, probes/evaluate.py); rows written before them have none and get no section."""

import math

import pandas as pd
import seaborn as sns

from . import style
from .common import flatten, ordered_languages, ordered_variants, report_order, variant_of
from .stats import seed_cell  # the compact cell of every accuracy table

SHARES = ["split_share", "value_distinct_share", "score_gap", "score_gap_over_norm"]


def tie_frame(rows, fields):
    """One line per cell: language, variant, seed, the setting `fields`, the tie shares and gaps, and the accuracy at
    the limit in distribution per tolerance (columns `tol=<t>`)."""
    records = []
    for row in rows:
        metrics = row["metrics"]
        if "ties" not in metrics:
            continue
        flat = flatten(row["config"])
        records.append({"language": row["config"]["language"], "variant": variant_of(row),
                        "seed": row["config"]["seed"], **{f: flat[f] for f in fields},
                        **{k: metrics["ties"][k] for k in SHARES},
                        **{f"tol={t}": by_region["in"] for t, by_region in metrics["tie_tolerance_acc"].items()}})
    return pd.DataFrame.from_records(records)


def tolerance_columns(frame):
    return sorted((c for c in frame.columns if c.startswith("tol=")), key=lambda c: float(c.removeprefix("tol=")))


def value_distinct_by_cell(frame):
    """{(language, variant): mean value-distinct share}: what `tables.theory_flags` cites as a missing mechanism."""
    if frame.empty:
        return {}
    return frame.groupby(["language", "variant"])["value_distinct_share"].mean().to_dict()


def _ordered(frame):
    return frame.sort_values(["language", "variant"], key=report_order(ordered_languages(frame["language"])))


def tie_table(frame, threshold):
    """Rows: language and variant. Columns: mean over seeds of the tie shares and gaps, then the accuracy at the limit
    per tolerance over seeds (`seed_cell`)."""
    tolerances = tolerance_columns(frame)
    grouped = _ordered(frame).groupby(["language", "variant"], sort=False)
    out = grouped[SHARES].mean().map(lambda v: "—" if pd.isna(v) else f"{v:.3g}")
    for column in tolerances:
        out[column] = grouped[column].apply(lambda v: seed_cell(v, threshold))
    return out


def figure_tolerance(frame, path, chance=0.5, title=None):
    """Accuracy at the saturated limit, in distribution, against the relative tie tolerance: one panel per language,
    one line per variant over the tolerances above 0 (mean over seeds; band: its 95% bootstrap interval); exact
    equality, tol = 0, which a log axis cannot place, stands apart on the left as its own point with its interval;
    grey dashes: chance (None where it is near 0, as in the next-symbol task)."""
    tolerances = tolerance_columns(frame)
    long = frame.melt(id_vars=["language", "variant", "seed"], value_vars=tolerances, var_name="tol",
                      value_name="accuracy")
    long["tol"] = long["tol"].str.removeprefix("tol=").astype(float)
    exact, positive = long[long["tol"] == 0], long[long["tol"] > 0]
    variants = ordered_variants(long["variant"])
    palette = style.variant_palette(variants)
    languages = ordered_languages(long["language"])
    lo = positive["tol"].min() if len(positive) else 1.0
    hi = positive["tol"].max() if len(positive) else 1.0
    bottom = lo / 100  # where tol = 0 stands: two decades left of the smallest tolerance, as c=inf stands right
    with style.paper():
        fig, axes = style.panels(len(languages))
        for language, ax in zip(languages, axes):
            sns.lineplot(data=positive[positive["language"] == language], x="tol", y="accuracy", hue="variant",
                         hue_order=variants, palette=palette, style="variant", markers=style.variant_markers(variants),
                         dashes=False, errorbar=style.band, legend=False, ax=ax)
            for variant, values in exact[exact["language"] == language].groupby("variant")["accuracy"]:
                style.point_with_interval(ax, bottom, values, variant, variants)
            if chance:
                ax.axhline(chance, color="0.5", lw=0.7, ls=(0, (2, 2)))
            extra = {}
            if len(exact):
                ax.axvline(math.sqrt(bottom * lo), color="0.5", lw=0.7, ls=":")
                extra = {bottom: "0"}
            style.log_axis(ax, "x", lo, hi, extra=extra)
            ax.set_xlim((bottom if extra else lo) / 2, hi * 2)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(language)
            ax.set_xlabel("")
            ax.set_ylabel("")
        fig.supxlabel("relative tie tolerance")
        fig.supylabel("accuracy at c=∞")
        heading = "Accuracy at the saturated limit as the tie tolerance grows"
        notes = ["left of the dotted line: exact ties (tol = 0)"] * bool(len(exact)) + ["dashes: chance"] * bool(chance)
        style.legend_above(fig, style.variant_handles(variants),
                           heading + (f" ({'; '.join(notes)})" if notes else ""), title)
        style.save(fig, path)


SHARE_FLOOR = 1e-5  # split shares below it are drawn at it


def figure_tie_shares(frame, path, title=None):
    """The ties at the saturated limit per language and variant: the share of queries whose tied set holds more than
    one key (split), and of those the share whose tied keys carry different values (value-distinct, the only ties
    that can count); bars: mean over seeds, whiskers: its 95% bootstrap interval."""
    variants = ordered_variants(frame["variant"])
    languages = ordered_languages(frame["language"])
    shares = {"split_share": "split queries", "value_distinct_share": "value-distinct among split"}
    width = 0.8 / len(variants)
    with style.paper():
        fig, axes = style.panels(len(shares), columns=2, width=style.FULL_WIDTH, height=2.0, sharey=False)
        for (column, name), ax in zip(shares.items(), axes):
            for i, variant in enumerate(variants):
                part = frame[frame["variant"] == variant].groupby("language")[column]
                means = part.mean().reindex(languages)
                if column == "split_share":
                    means = means.clip(lower=SHARE_FLOOR)
                bands = [style.band(part.get_group(l)) if l in part.groups else (float("nan"),) * 2
                         for l in languages]
                # Whiskers reach from the bar as drawn (a mean below the floor stands at the floor) to the interval's
                # ends, themselves at least the floor: a log axis has no room below it.
                bands = [[max(end, SHARE_FLOOR) for end in b] if column == "split_share" else b for b in bands]
                low = [max(m - b[0], 0) for m, b in zip(means, bands)]
                high = [max(b[1] - m, 0) for m, b in zip(means, bands)]
                x = [j - 0.4 + width * (i + 0.5) for j in range(len(languages))]
                ax.bar(x, means.fillna(0), width=width, color=style.variant_color(variant, variants),
                       yerr=[low, high], ecolor="0.2", error_kw={"lw": 0.7, "capsize": 1.5})
            ax.set_xticks(range(len(languages)), languages, rotation=30 if len(languages) > 4 else 0,
                          ha="right" if len(languages) > 4 else "center")
            if column == "split_share":  # from SHARE_FLOOR of queries to all of them: a log axis, zero at its floor
                ax.set_yscale("log")
                ax.set_ylim(SHARE_FLOOR, 1.5)
                style.log_axis(ax, "y", SHARE_FLOOR, 1.0)
            else:
                ax.set_ylim(0, 1.05)
            ax.set_title(name)
            ax.set_ylabel("share of queries" if column == "split_share" else "share of split queries")
            ax.set_xlabel("language")
            ax.grid(axis="x", visible=False)
        style.legend_above(fig, style.variant_handles(variants, marker=False), "Ties at the saturated limit", title)
        style.save(fig, path)
