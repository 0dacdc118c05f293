"""The report's tables, each a pivot of one long table of rows (one line per cell and scale), built with pandas.

Config fields that vary across the run other than language, seed and attention variant (model size, weight decay, ...)
split the report into one block per setting (`settings`).
"""

from pathlib import Path

import pandas as pd

from harness.results import CorruptResults, load_rows_with_config

from .common import VARIANTS, flatten, markdown, scale_value, theory_cell


def long_table(rows):
    """One line per (cell, scale): the config's fields, the scale, and the recognition metrics."""
    records = []
    for row in rows:
        try:
            fields = flatten(row["config"])
            metrics = row["metrics"]
            for scale, acc in metrics["acc"].items():
                records.append({**fields, "hash": row["hash"], "acc_over": metrics.get("acc_over", "training lengths"),
                                "variant": fields["model.attention"], "scale": scale,
                                "scale_value": scale_value(scale), "acc": acc, "acc_long": metrics["acc_long"][scale],
                                "ce": metrics["ce"][scale]})
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            # A row written by hand or by another program: name it rather than fail somewhere in pandas.
            raise CorruptResults(f"row {row['hash']}: not a finished cell as the bench writes it "
                                 f"({type(error).__name__}: {error})") from None
    if not records:
        raise CorruptResults("no finished cells to report")
    return pd.DataFrame.from_records(records)


def setting_columns(table):
    """Config fields that vary across the run, besides those every table already splits by."""
    fixed = {"hash", "acc_over", "language", "seed", "model.attention", "variant", "scale", "scale_value", "acc",
             "acc_long", "ce"}
    columns = []
    for column in table.columns:
        if column in fixed:
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


def summary(values, threshold):
    """mean +- std (max) over seeds, with a check mark when the best seed reaches the threshold."""
    values = values.dropna()
    if values.empty:
        return "—"
    mean, std, best = values.mean(), values.std(ddof=0), values.max()
    mark = " ✓" if best >= threshold else ""
    return f"{mean:.3f}±{std:.3f} ({best:.3f}){mark}"


def ordered_scales(table):
    return sorted(table["scale"].unique(), key=scale_value)


def recognition_table(table, threshold, theory, column="acc"):
    """Rows: languages. Columns: variant x scale. Cells: mean +- std (max) over seeds."""
    variants = [v for v in VARIANTS if v in set(table["variant"])]
    scales = ordered_scales(table)
    grouped = table.groupby(["language", "variant", "scale"])[column]
    out = {}
    for (language, variant, scale), values in grouped:
        out.setdefault(language, {})[f"{variant} c={scale}"] = summary(values, threshold)
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[f"{v} c={s}" for v in variants for s in scales if f"{v} c={s}" in frame.columns]]
    frame.insert(0, "theory (soft/sat/hard)", [theory_cell(lang, theory) for lang in frame.index])
    # † : no held-out string at the training lengths; accuracy over all test lengths (see evaluate.py)
    everywhere = set(table.loc[table["acc_over"] != "training lengths", "language"])
    frame.index = [f"{lang} †" if lang in everywhere else lang for lang in frame.index]
    flags = contradictions(table, threshold, theory)
    frame.insert(1, "vs theory", [flags.get(lang.removesuffix(" †"), "") for lang in frame.index])
    frame.index.name = "language"
    return frame.sort_index()


def contradictions(table, threshold, theory):
    """Learned cells that contradict the theory table: a variant that theory says cannot recognize the language, yet
    a seed of it reaches the threshold on lengths beyond training (any finite set of lengths can be memorised, so
    only length generalization contradicts an impossibility result). Evaluated as trained, at c=1."""
    flags = {}
    as_trained = table[table["scale"] == "1"]
    for (language, variant), part in as_trained.groupby(["language", "variant"]):
        predicted = theory["languages"].get(language, {}).get(variant)
        best = part["acc_long"].max()
        if predicted == "no" and best >= threshold:
            flags.setdefault(language, []).append(f"⚠ {variant} generalizes ({best:.3f}) where theory says no")
    return {language: "; ".join(found) for language, found in flags.items()}


def soft_vs_saturated_table(table, threshold):
    """Per language: soft at c=1, the same soft models at the saturated limit, and the models trained saturated."""
    mean = table.groupby(["language", "variant", "scale"])["acc"]
    columns = {"soft, c=1": ("soft", "1"), "soft, saturated limit": ("soft", "inf"),
               "trained saturated, c=1": ("saturated", "1"), "trained hard, c=1": ("hard", "1")}
    out = {}
    for (language, variant, scale), values in mean:
        for name, key in columns.items():
            if key == (variant, scale):
                out.setdefault(language, {})[name] = summary(values, threshold)
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in columns if c in frame.columns]]
    frame.index.name = "language"
    return frame.sort_index()


def with_constructions(frame, hand_built, threshold):
    """The recognition table plus one row per hand-built construction (models/constructions.py), under the
    saturated columns: exact weights evaluated on every test length, where finite c scales the attention logits."""
    frame = frame.copy()
    for column in sorted({f"saturated c={scale}" for row in hand_built for scale in row["acc"]}):
        if column not in frame.columns:
            frame[column] = "—"
    for row in hand_built:
        cells = {column: "—" for column in frame.columns}
        cells["theory (soft/sat/hard)"] = "hand-built (c scales attention logits)"
        cells["vs theory"] = ""
        for scale, acc in row["acc"].items():
            column = f"saturated c={scale}"
            if column in cells:
                cells[column] = f"{acc:.3f}" + (" ✓" if acc >= threshold else "")
        frame.loc[f"{row['language']} (hand-built)"] = cells
    return frame


def compare_runs(run_a, run_b):
    """Mean accuracy of two runs per language and variant x scale, side by side: `a -> b (b - a)`."""
    tables = [long_table(load_rows_with_config(run)) for run in (run_a, run_b)]
    means = [t.groupby(["language", "variant", "scale"])["acc"].mean() for t in tables]
    joined = pd.concat(means, axis=1, keys=["a", "b"])
    cells = joined.apply(lambda r: _compare_cell(r["a"], r["b"]), axis=1).unstack(["variant", "scale"])
    order = [(v, s) for v in VARIANTS for s in sorted({s for _, s in cells.columns}, key=scale_value)
             if (v, s) in cells.columns]
    cells = cells[order].fillna("—")
    cells.columns = [f"{v} c={s}" for v, s in cells.columns]
    title = f"# {Path(run_a).name} -> {Path(run_b).name}: mean accuracy on training lengths, a -> b (b - a)"
    return f"{title}\n\n{markdown(cells)}\n"


def _compare_cell(a, b):
    if pd.isna(a) or pd.isna(b):
        return f"{'—' if pd.isna(a) else f'{a:.3f}'} -> {'—' if pd.isna(b) else f'{b:.3f}'}"
    return f"{a:.3f} -> {b:.3f} ({b - a:+.3f})"
