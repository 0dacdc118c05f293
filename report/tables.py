"""The report's tables, each a pivot of one long table of rows (one line per cell and scale), built with pandas.

Config fields that vary across the run other than language, seed and attention variant (model size, weight decay, ...)
split the report into one block per setting (`settings`).
"""

import math

import pandas as pd

from satbench.harness.results import CorruptResults

from .common import (
    DEFAULT_POSITIONAL,
    TRANSFORMER,
    flat_config,
    model_kind,
    ordered_languages,
    predicted,
    report_order,
    scale_heading,
    scale_value,
    variant_of,
)
from .stats import seed_cell

BIN_PREFIX = "acc_bin:"  # long-table columns of length generalization, one per bin: "acc_bin:21-30"


def long_table(rows):
    """One line per (cell, scale): the config's fields, the scale, and the recognition metrics."""
    records = []
    for row in rows:
        try:
            fields = flat_config(row)  # a field left out at its default reads as that default
            metrics = row["metrics"]
            bins = metrics.get("acc_bins", {})  # rows written before length bins existed have none
            for scale, acc in metrics["acc"].items():
                records.append({**fields, "hash": row["hash"], "acc_over": metrics.get("acc_over", "training lengths"),
                                "variant": variant_of(row), "scale": scale,
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
    fixed = {"hash", "acc_over", "language", "seed", "model.attention", "model.kind", "variant", "scale", "scale_value",
             "acc", "acc_long", "ce"}
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


def without_attention(table):
    """The variants of the long table whose model.kind has no attention (lstm, rnn, a plugin's): evaluated at c=1
    alone. A table without the field (built by hand) holds transformers only."""
    if "model.kind" not in table.columns:
        return set()
    return set(table.loc[table["model.kind"] != TRANSFORMER, "variant"])


def positionals(table):
    """Each line's model.positional, which theory's predictions can depend on (report/theory.yaml); a row whose
    config does not name one has ModelConfig's default."""
    if "model.positional" not in table.columns:
        return pd.Series(DEFAULT_POSITIONAL, index=table.index)
    return table["model.positional"].fillna(DEFAULT_POSITIONAL)


def _criteria_groups(table):
    """The lines as trained (c=1) and at the limit (c=inf), grouped by language, variant, positional encoding and
    scale, and whether the table holds more than one encoding (then rows and flags name theirs)."""
    lines = table[table["scale"].isin(["1", "inf"])]
    lines = lines.assign(_positional=positionals(lines))
    return lines.groupby(["language", "variant", "_positional", "scale"]), lines["_positional"].nunique() > 1


def _who(variant, scale, positional, several):
    """A flag's subject: `soft`, `soft at c=inf`, with `positional=...` when the table holds several encodings."""
    who = variant if scale == "1" else f"{variant} at c=inf"
    return f"{who} with positional={positional}" if several else who


def criteria_table(table, threshold, theory, flags):
    """Rows: language and variant (and positional encoding, where the table holds several). Columns: theory's
    prediction under the row's own encoding, its flags, then in distribution and length generalization per bin, each
    as trained (c=1) and at the saturated limit (c=inf). Cells: report/stats.py's `seed_cell` over seeds."""
    bins = bin_columns(table)
    wanted = [("in dist.", "acc")] + [(f"len {c.removeprefix(BIN_PREFIX)}", c) for c in bins]
    if not bins:  # rows from before length bins: everything beyond training is one bin
        wanted.append(("beyond training", "acc_long"))
    everywhere = set(table.loc[table["acc_over"] != "training lengths", "language"])
    groups, several = _criteria_groups(table)
    out = {}
    for (language, variant, positional, scale), part in groups:
        name = f"{language} †" if language in everywhere else language
        cells = out.setdefault((name, variant, positional) if several else (name, variant), {})
        entry = theory["languages"].get(language, {})
        word = predicted(entry, variant, positional) or "—"
        # A prediction that depends on the encoding says under which one it was read.
        cells["theory"] = f"{word} with {positional}" if isinstance(entry.get(variant), dict) else word
        subjects = {_who(variant, s, positional, several) for s in ("1", "inf")}
        cells["vs theory"] = ", ".join(f for f in flags.get(language, {}) if f.split(" ", 1)[1] in subjects)
        for title, column in wanted:
            cells[f"{title} c={scale}"] = seed_cell(part[column], threshold)
    # A model without attention (lstm, rnn) has no c=inf: n/a, not a missing number.
    frame = pd.DataFrame.from_dict(out, orient="index").fillna("n/a")
    order = ["theory", "vs theory"] + [f"{title} c={s}" for title, _ in wanted for s in ("1", "inf")]
    frame = frame[[c for c in order if c in frame.columns]]
    levels = ["language", "variant", "model.positional"] if several else ["language", "variant"]
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=levels)
    return frame.sort_index(key=report_order(ordered_languages(table["language"])))


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
    Each cell is held to the prediction for its own positional encoding (model.positional): parity is predicted with
    i/n positions and open without them, so only a cell with i/n positions can fall below theory there. Only a "yes"
    can be below theory and only a "no" above it; "open" is never flagged. A flag names the entry's sources (`cite`).
    `ties`: {(language, variant): mean value-distinct share at the limit}, from the tie probe, when present.
    """
    flags = {}
    beyond = bin_columns(table) or ["acc_long"]
    groups, several = _criteria_groups(table)
    for (language, variant, positional, scale), part in groups:
        entry = theory["languages"].get(language, {})
        as_variant = variant if scale == "1" else "saturated" if variant == "soft" else None
        prediction = predicted(entry, as_variant, positional) if as_variant else None
        setting = f" with positional {positional}" if isinstance(entry.get(as_variant), dict) else ""
        sources = f" (see {', '.join(entry['cite'])})" if entry.get("cite") else ""
        who = _who(variant, scale, positional, several)
        best_in = part["acc"].max()
        best_beyond = min(part[c].max() for c in beyond)  # the hardest bin: every bin must be passed
        if prediction == "no" and scale == "1" and best_beyond >= threshold:
            flags.setdefault(language, {})[f"▲ {who}"] = (
                f"above theory: {who} generalizes beyond training (best seed {best_beyond:.3f} on the hardest bin) "
                f"where theory says no{setting}{sources}: test lengths too short to expose an asymptotic limit, or the "
                "model has more than the theory assumes (positions, finite precision)")
        elif prediction == "yes" and best_beyond < threshold:
            if best_in < threshold:
                cause = f"fails in distribution (best seed {best_in:.3f}): learnability, training did not find a " \
                        f"construction that exists{setting}{sources}"
            else:
                cause = f"fits the training lengths but not beyond (best seed {best_beyond:.3f} on the hardest bin): " \
                        f"a length-bounded solution was learned where one for every length exists{setting}{sources}"
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
    """Rows: language and variant. Columns: every scale c, after the uniform-attention control (the c -> 0 end) where
    it was evaluated. Cells: accuracy in distribution over seeds (`seed_cell`), n/a beyond c=1 for a model without
    attention; read along a row, the finite columns should converge to c=inf."""
    frame = (table.groupby(["language", "variant", "scale"])["acc"].apply(lambda v: seed_cell(v, threshold))
             .unstack("scale"))
    frame = frame[ordered_scales(table)]
    # A model without attention has no other scale, no limit and no uniform control: n/a, not a missing number.
    alone = frame.index.get_level_values("variant").isin(without_attention(table))
    frame.loc[alone] = frame.loc[alone].fillna("n/a")
    frame = frame.fillna("—")  # a scale some cells lack (rows of an older run)
    frame.columns = [scale_heading(c) for c in frame.columns]
    return frame.sort_index(key=report_order(ordered_languages(table["language"])))


def soft_vs_saturated_table(table, threshold):
    """Per language: soft at c=1, the same soft models at the saturated limit, and the models trained saturated.
    Empty (no columns) where the table holds no attention variant."""
    mean = table.groupby(["language", "variant", "scale"])["acc"]
    columns = {"soft, c=1": ("soft", "1"), "soft, saturated limit": ("soft", "inf"),
               "trained saturated, c=1": ("saturated", "1"), "trained hard, c=1": ("hard", "1")}
    out = {}
    for (language, variant, scale), values in mean:
        for name, key in columns.items():
            if key == (variant, scale):
                out.setdefault(language, {})[name] = seed_cell(values, threshold)
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in columns if c in frame.columns]]
    frame.index.name = "language"
    return frame.sort_index(key=report_order(ordered_languages(table["language"])))


def kind_table(rows):
    """Rows: language and variant. Columns: each kind of test string ("member", then the kinds of negative that
    produced the others: edit, fallback, near_miss, random, shuffle), as trained (c=1) and at the saturated limit
    (c=inf). Cells: `accuracy (n)`, the accuracy in distribution on strings of that kind, mean over seeds, and n the
    strings of that kind per seed (mean over seeds); n/a at c=inf for a model without attention. A shortcut shows as a
    kind near 0 or 1 beside others near chance. Empty for rows written before the kinds were recorded."""
    records, alone = [], {variant_of(row) for row in rows if model_kind(row) != TRANSFORMER}
    for row in rows:
        metrics = row["metrics"]
        for scale in ("1", "inf"):
            for kind, acc in metrics.get("acc_by_kind", {}).get(scale, {}).items():
                records.append({"language": row["config"]["language"], "variant": variant_of(row),
                                "column": f"{kind} c={scale}", "acc": acc, "n": metrics["kind_counts"][kind]})
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(records)
    means = frame.groupby(["language", "variant", "column"], sort=False)[["acc", "n"]].mean()
    cells = means.apply(lambda r: "—" if pd.isna(r["acc"]) else f"{r['acc']:.2f} ({r['n']:.0f})", axis=1)
    # Members first, then the kinds of negative by name: rows store their keys sorted, and the report does not import
    # the languages, whose STRING_KINDS holds the sampler's order.
    kinds = sorted(set(frame["column"].str.split(" ").str[0]), key=lambda kind: (kind != "member", kind))
    columns = [f"{kind} c={scale}" for scale in ("1", "inf") for kind in kinds]
    table = cells.unstack("column").reindex(columns=[c for c in columns if c in set(frame["column"])]).fillna("—")
    # A model without attention has no saturated limit: n/a, not a kind of string missing from its test.
    limit = [c for c in table.columns if c.endswith(" c=inf")]
    table.loc[table.index.get_level_values("variant").isin(alone), limit] = "n/a"
    return table.sort_index(key=report_order(ordered_languages(frame["language"])))


def fewest_per_class(rows):
    """(count, where): the fewest held-out strings of one class (members or non-members) behind any criterion's
    accuracy (in distribution or a length bin) of any cell, and where that is; None for rows without counts. A task
    of members only (next symbols) has no non-members to count."""
    fewest = None
    for row in rows:
        members_only = row["config"]["data"].get("label_kind") == "next_symbols"
        for region, classes in row["metrics"].get("counts", {}).items():
            for label, count in classes.items():
                if members_only and label != "member":
                    continue
                if fewest is None or count < fewest[0]:
                    where = "in distribution" if region == "in" else f"lengths {region}"
                    fewest = count, f"{label}s of {row['config']['language']}, {where}"
    return fewest


def construction_table(hand_built, threshold):
    """One row per hand-built construction (models/constructions.py): accuracy on every test length at each scale of
    its attention logits."""
    out = {f"{row['language']} (hand-built)": {f"c={scale}": f"{acc:.3f}" + (" ✓" if acc >= threshold else "")
                                               for scale, acc in row["acc"].items()} for row in hand_built}
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "construction"
    return frame


LIMIT_GAP = 0.02  # the largest finite c and c = inf further apart than this: the sweep has not reached its limit


def limit_not_reached(table, gap=LIMIT_GAP):
    """The cells (one line per seed) whose in-distribution accuracy at the largest finite scale c and at c = inf differ
    by more than `gap`: there the finite sweep has not reached the saturated limit, or the limit is not the one softmax
    tends to. Columns: language, variant, seed, the scale, both accuracies and their difference."""
    finite = table[(table["scale_value"] > 0) & (table["scale_value"] < math.inf)]  # not the uniform control
    if finite.empty or not (table["scale"] == "inf").any():
        return pd.DataFrame()
    largest = finite.loc[finite.groupby("hash")["scale_value"].idxmax(), ["hash", "language", "variant", "seed",
                                                                          "scale", "acc"]]
    limit = table.loc[table["scale"] == "inf", ["hash", "acc"]].rename(columns={"acc": "acc at c=inf"})
    both = largest.merge(limit, on="hash").rename(columns={"scale": "largest finite c", "acc": "acc at that c"})
    both["difference"] = both["acc at c=inf"] - both["acc at that c"]
    flagged = both[both["difference"].abs() > gap].drop(columns="hash")
    return flagged.sort_values(["language", "variant", "seed"], key=report_order(ordered_languages(table["language"]))
                               ).reset_index(drop=True)
