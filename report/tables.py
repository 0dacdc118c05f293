"""The report's tables, each a pivot of one long table of rows (one line per cell and scale), built with pandas.

Config fields that vary across the run other than language, seed and attention variant (model size, weight decay, ...)
split the report into one block per setting (`settings`).
"""

import math
from pathlib import Path

import pandas as pd

from satbench.harness.results import CorruptResults, load_rows_with_config

from .common import flatten, markdown, ordered_variants, scale_value, variant_rank

BIN_PREFIX = "acc_bin:"  # long-table columns of length generalization, one per bin: "acc_bin:21-30"


def long_table(rows):
    """One line per (cell, scale): the config's fields, the scale, and the recognition metrics."""
    records = []
    for row in rows:
        try:
            fields = flatten(row["config"])
            metrics = row["metrics"]
            bins = metrics.get("acc_bins", {})  # rows written before length bins existed have none
            for scale, acc in metrics["acc"].items():
                records.append({**fields, "hash": row["hash"], "acc_over": metrics.get("acc_over", "training lengths"),
                                "variant": fields["model.attention"], "scale": scale,
                                "scale_value": scale_value(scale), "acc": acc, "acc_long": metrics["acc_long"][scale],
                                "ce": metrics["ce"][scale],
                                **{f"{BIN_PREFIX}{name}": by_scale[scale] for name, by_scale in bins.items()}})
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            # A row written by hand or by another program: name it rather than fail somewhere in pandas.
            raise CorruptResults(f"row {row['hash']}: not a finished cell as the bench writes it "
                                 f"({type(error).__name__}: {error})") from None
    if not records:
        raise CorruptResults("no finished cells to report")
    return pd.DataFrame.from_records(records)


def bin_columns(table):
    """The length-generalization columns of the long table, in the order of their bins."""
    return sorted((c for c in table.columns if c.startswith(BIN_PREFIX)),
                  key=lambda c: int(c.removeprefix(BIN_PREFIX).split("-")[0]))


def setting_columns(table):
    """Config fields that vary across the run, besides those every table already splits by."""
    fixed = {"hash", "acc_over", "language", "seed", "model.attention", "variant", "scale", "scale_value", "acc",
             "acc_long", "ce"}
    columns = []
    for column in table.columns:
        if column in fixed or column.startswith(BIN_PREFIX):
            continue
        values = table[column].map(repr).nunique()
        if values > 1:
            columns.append(column)
    return columns


def settings(table):
    """(title, sub-table) per combination of the varying fields."""
    columns = setting_columns(table)
    if not columns:
        return [("", table)]
    # Build titles column by column: a row-wise apply would turn integer fields into floats.
    titles = [", ".join(f"{c}={v}" for c, v in zip(columns, values))
              for values in zip(*(table[c].tolist() for c in columns))]
    keyed = table.assign(_setting=titles)
    return [(title, part.drop(columns="_setting")) for title, part in keyed.groupby("_setting", sort=True)]


def ordered_scales(table):
    return sorted(table["scale"].unique(), key=scale_value)


def best_mean(values, threshold):
    """`mean (best)` over seeds, with a check mark when the best seed reaches the threshold: the compact cell."""
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.mean():.2f} ({values.max():.2f})" + (" ✓" if values.max() >= threshold else "")


def criteria_table(table, threshold, theory, flags):
    """Rows: language and variant. Columns: in distribution, then length generalization per bin, each as trained
    (c=1) and at the saturated limit (c=inf). Cells `mean (best)` over seeds."""
    bins = bin_columns(table)
    wanted = [("in dist.", "acc")] + [(f"len {c.removeprefix(BIN_PREFIX)}", c) for c in bins]
    if not bins:  # rows from before length bins: everything beyond training is one bin
        wanted.append(("beyond training", "acc_long"))
    everywhere = set(table.loc[table["acc_over"] != "training lengths", "language"])
    out = {}
    for (language, variant, scale), part in table[table["scale"].isin(["1", "inf"])].groupby(
            ["language", "variant", "scale"]):
        cells = out.setdefault((f"{language} †" if language in everywhere else language, variant), {})
        entry = theory["languages"].get(language, {})
        cells["theory"] = entry.get(variant, "—")
        cells["vs theory"] = ", ".join(f for f in flags.get(language, {}) if variant in f)
        for title, column in wanted:
            cells[f"{title} c={scale}"] = best_mean(part[column], threshold)
    frame = pd.DataFrame.from_dict(out, orient="index")
    order = ["theory", "vs theory"] + [f"{title} c={s}" for title, _ in wanted for s in ("1", "inf")]
    frame = frame[[c for c in order if c in frame.columns]]
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["language", "variant"])
    return frame.sort_index(key=lambda level: level.map(variant_rank) if level.name == "variant" else level)


def theory_flags(table, threshold, theory, ties=None):
    """Cells that disagree with the theory table, in both directions, each with its likely cause. Returns
    {language: {short flag: explanation}}.

    above theory   theory says a variant cannot recognize the language, yet a seed reaches the threshold on lengths
                   beyond training as trained (c=1). Any finite set of lengths can be memorised, so only length
                   generalization counts against an impossibility result; the likely causes are test lengths too short
                   to expose an asymptotic limit, or a model with more than the theory assumes (positions, precision).
    below theory   theory says a variant can, yet no seed reaches the threshold. In distribution that is learnability
                   (a construction exists; training did not find it); in distribution but not beyond training, a
                   length-bounded solution was learned. For a saturated model or a soft model at its limit, a tie
                   probe showing no value-distinct ties names the missing mechanism: nothing is averaged, so nothing
                   is counted. Checked for each variant as trained (c=1) and for soft at the limit (c=inf), which is a
                   saturated transformer.
    `ties`: {(language, variant): mean value-distinct share at the limit}, from the tie probe, when present.
    """
    flags = {}
    beyond = bin_columns(table) or ["acc_long"]
    for (language, variant, scale), part in table[table["scale"].isin(["1", "inf"])].groupby(
            ["language", "variant", "scale"]):
        entry = theory["languages"].get(language, {})
        as_variant = variant if scale == "1" else "saturated" if variant == "soft" else None
        predicted = entry.get(as_variant)
        who = f"{variant}" if scale == "1" else f"{variant} at c=inf"
        best_in = part["acc"].max()
        best_beyond = min(part[c].max() for c in beyond)  # the hardest bin: every bin must be passed
        if predicted == "no" and scale == "1" and best_beyond >= threshold:
            flags.setdefault(language, {})[f"▲ {who}"] = (
                f"above theory: {who} generalizes beyond training (best seed {best_beyond:.3f} on the hardest bin) "
                "where theory says no: test lengths too short to expose an asymptotic limit, or the model has more "
                "than the theory assumes (positions, finite precision)")
        elif predicted == "yes" and best_beyond < threshold:
            if best_in < threshold:
                cause = f"fails in distribution (best seed {best_in:.3f}): learnability, training did not find a " \
                        "construction that exists"
            else:
                cause = f"fits the training lengths but not beyond (best seed {best_beyond:.3f} on the hardest bin): " \
                        "a length-bounded solution was learned"
            if variant != "hard" and (scale == "inf" or variant == "saturated") and (language, variant) in (ties or {}):
                cause += _tie_evidence(ties[(language, variant)])
            flags.setdefault(language, {})[f"▼ {who}"] = f"below theory: {who} {cause}"
    return flags


def _tie_evidence(share):
    """What the tie probe says about a saturated model that fails a counting language: `share` is its mean
    value-distinct share at the limit (NaN when no query splits its attention)."""
    if math.isnan(share):
        return "; at the limit no probed query splits its attention, so nothing is averaged and nothing counted"
    if share <= 0.01:
        return (f"; at the limit {share:.0%} of the queries that split their attention tie keys with different "
                "values, so nothing is averaged and nothing counted")
    return ""


def flag_lines(flags):
    """The flags of `theory_flags` as Markdown list items, one per flag."""
    return [f"- **{language}**, {text}" for language, found in sorted(flags.items()) for text in found.values()]


def sweep_table(table, threshold):
    """Rows: language and variant. Columns: every scale c. Cells: `mean (best)` accuracy in distribution; read along
    a row, the finite columns should converge to c=inf."""
    frame = (table.groupby(["language", "variant", "scale"])["acc"].apply(lambda v: best_mean(v, threshold))
             .unstack("scale"))
    frame = frame[ordered_scales(table)]
    frame.columns = [f"c={c}" for c in frame.columns]
    return frame.sort_index(key=lambda level: level.map(variant_rank) if level.name == "variant" else level)


def soft_vs_saturated_table(table, threshold):
    """Per language: soft at c=1, the same soft models at the saturated limit, and the models trained saturated."""
    mean = table.groupby(["language", "variant", "scale"])["acc"]
    columns = {"soft, c=1": ("soft", "1"), "soft, saturated limit": ("soft", "inf"),
               "trained saturated, c=1": ("saturated", "1"), "trained hard, c=1": ("hard", "1")}
    out = {}
    for (language, variant, scale), values in mean:
        for name, key in columns.items():
            if key == (variant, scale):
                out.setdefault(language, {})[name] = best_mean(values, threshold)
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in columns if c in frame.columns]]
    frame.index.name = "language"
    return frame.sort_index()


def construction_table(hand_built, threshold):
    """One row per hand-built construction (models/constructions.py): accuracy on every test length at each scale of
    its attention logits."""
    out = {f"{row['language']} (hand-built)": {f"c={scale}": f"{acc:.3f}" + (" ✓" if acc >= threshold else "")
                                               for scale, acc in row["acc"].items()} for row in hand_built}
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "construction"
    return frame


def config_differences(rows_a, rows_b):
    """Lines naming every flat config field whose set of values differs between two runs' rows (languages, seeds,
    train.steps, ...): the first thing to know before reading their accuracies side by side."""
    def values(rows):
        seen: dict[str, set] = {}
        for row in rows:
            for key, value in flatten(row["config"]).items():
                seen.setdefault(key, set()).add(repr(value))
        return seen

    a, b = values(rows_a), values(rows_b)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            shown = [", ".join(sorted(v.strip("'") for v in side.get(key, {"—"}))) for side in (a, b)]
            lines.append(f"- {key}: {shown[0]} -> {shown[1]}")
    return lines


def compare_runs(run_a, run_b):
    """Mean accuracy of two runs per language and variant x scale, side by side: `a -> b (b - a)`, after the config
    fields in which the runs differ. Runs with no language and variant in common are an error."""
    rows = [load_rows_with_config(run) for run in (run_a, run_b)]
    differences = config_differences(*rows)
    tables = [long_table(r) for r in rows]
    shared = set(zip(tables[0]["language"], tables[0]["variant"])) & set(zip(tables[1]["language"],
                                                                             tables[1]["variant"]))
    if not shared:
        raise CorruptResults(f"{run_a} and {run_b} have no language and attention variant in common: nothing to "
                             "compare")
    means = [t.groupby(["language", "variant", "scale"])["acc"].mean() for t in tables]
    joined = pd.concat(means, axis=1, keys=["a", "b"])
    cells = joined.apply(lambda r: _compare_cell(r["a"], r["b"]), axis=1).unstack(["variant", "scale"])
    order = [(v, s) for v in ordered_variants(v for v, _ in cells.columns)
             for s in sorted({s for _, s in cells.columns}, key=scale_value)
             if (v, s) in cells.columns]
    cells = cells[order].fillna("—")
    cells.columns = [f"{v} c={s}" for v, s in cells.columns]
    title = f"# {Path(run_a).name} -> {Path(run_b).name}: mean accuracy on training lengths, a -> b (b - a)"
    if differences:
        warning = ("The runs differ in these config fields (a -> b), so a difference below need not come from one "
                   "change alone:")
        header = "\n".join([warning, "", *differences])
    else:
        header = "The runs have the same config."
    return f"{title}\n\n{header}\n\n{markdown(cells)}\n"


def _compare_cell(a, b):
    if pd.isna(a) or pd.isna(b):
        return f"{'—' if pd.isna(a) else f'{a:.3f}'} -> {'—' if pd.isna(b) else f'{b:.3f}'}"
    return f"{a:.3f} -> {b:.3f} ({b - a:+.3f})"


LIMIT_GAP = 0.02  # the largest finite c and c = inf further apart than this: the sweep has not reached its limit


def limit_not_reached(table, gap=LIMIT_GAP):
    """The cells (one line per seed) whose in-distribution accuracy at the largest finite scale c and at c = inf differ
    by more than `gap`: there the finite sweep has not reached the saturated limit, or the limit is not the one softmax
    tends to. Columns: language, variant, seed, the scale, both accuracies and their difference."""
    finite = table[table["scale_value"] < math.inf]
    if finite.empty or not (table["scale"] == "inf").any():
        return pd.DataFrame()
    largest = finite.loc[finite.groupby("hash")["scale_value"].idxmax(), ["hash", "language", "variant", "seed",
                                                                          "scale", "acc"]]
    limit = table.loc[table["scale"] == "inf", ["hash", "acc"]].rename(columns={"acc": "acc at c=inf"})
    both = largest.merge(limit, on="hash").rename(columns={"scale": "largest finite c", "acc": "acc at that c"})
    both["difference"] = both["acc at c=inf"] - both["acc at that c"]
    flagged = both[both["difference"].abs() > gap].drop(columns="hash")
    return flagged.sort_values(["language", "variant", "seed"], key=lambda column: column.map(variant_rank)
                               if column.name == "variant" else column).reset_index(drop=True)
