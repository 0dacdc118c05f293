"""`satbench compare`: two runs, or two attention variants of one run, side by side. One table per language (and
setting, where a config field varies within the run); its rows are the criteria (in distribution, each length bin) as
trained (c=1) and at the saturated limit (c=inf), its columns each side's `seed_cell` over seeds and the difference
b - a of their means with its 95% bootstrap interval (report/stats.py, the one place both are computed).
"""

import math
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from satbench.harness.results import LEFT_OUT_AT_DEFAULT, CorruptResults, load_rows_with_config

from .common import flat_config, markdown, ordered_variants, scale_heading, scale_value, variant_of, variant_rank
from .selection import chosen_on_test
from .stats import difference_interval, excludes_zero, seed_cell
from .tables import BIN_PREFIX, bin_columns, long_table, setting_columns

COMPARED_SCALES = ("1", "inf")  # as trained, and the saturated limit
# The c=inf cell of a side whose accuracies there equal those at c=1 seed for seed, as they do for saturated and hard
# attention, which no scale changes: the number once, not twice.
SAME_AS_TRAINED = "same as c=1"
DIFFERS = "yes"


class Line(NamedTuple):
    """What one accuracy of a side is an accuracy of."""

    language: str
    variant: str  # "" when comparing two variants of one run: the variant is then the side
    setting: str  # the values of the config fields that vary within the run, "" when none does
    criterion: str  # "in dist.", "len 21-30", or "beyond training" for rows from before length bins
    scale: str


class Sample(NamedTuple):
    """The accuracies of one line over seeds, indexed by cell hash, and the threshold the cells were judged by."""

    accuracies: pd.Series
    threshold: float


# --- the two forms -------------------------------------------------------------------------------------------------

def compare_runs(run_a, run_b):
    """Two runs side by side, after the config fields in which they differ: per language and setting, one row per
    variant, criterion and scale. Seeds are resampled within each run (`difference_interval`, unpaired): seed i of
    one run is no twin of seed i of the other. Runs with no language and variant in common are an error."""
    rows = [load_rows_with_config(run) for run in (run_a, run_b)]
    tables = [long_table(r) for r in rows]
    held = [set(zip(t["language"], t["variant"])) for t in tables]
    if not held[0] & held[1]:
        raise CorruptResults(f"{run_a} and {run_b} have no language and attention variant in common: nothing to "
                             "compare")
    # A field that varies in one run splits both, also where the other's rows leave it out: there it reads as its
    # default, or as "—" where it has none, so that its cells are never pooled with the first run's settings.
    split = sorted(set(setting_columns(tables[0])) | set(setting_columns(tables[1])))
    tables = [with_left_out_fields(t, split) for t in tables]
    samples = [criterion_samples(t, split) for t in tables]

    differences = config_differences(*rows)
    if differences:
        header = ["The runs differ in these config fields (a -> b), so a difference below need not come from one "
                  "change alone:", "", *differences]
    else:
        header = ["The runs have the same config."]
    header += selected_on_test(rows[0], "a") + selected_on_test(rows[1], "b")
    title = f"# {Path(run_a).name} -> {Path(run_b).name}: a = {run_a}, b = {run_b}"
    return _document(title, header, samples, ("a", "b"), per_variant=True)


def compare_variants(run, variant_a, variant_b, run_b=None):
    """Two variants (attention variants or model kinds) side by side: per language and setting, one row per criterion
    and scale, variant a's cells against variant b's, each as trained (c=1) and at the saturated limit (c=inf). Both
    of `run`, or with `run_b` variant a of `run` against variant b of `run_b` (a transformer against a baseline run
    on the same grid)."""
    if variant_a == variant_b and run_b is None:
        raise ValueError(f"--variants: {variant_a} twice; name two different variants")
    runs = (run, run_b or run)
    sides, by_variant = [], []
    for where, variant in zip(runs, (variant_a, variant_b), strict=True):
        rows = load_rows_with_config(where)
        table = long_table(rows)
        held = ordered_variants(table["variant"])
        if variant not in held:
            raise ValueError(f"{where} holds no cells of {variant}; its variants are {', '.join(held)}")
        sides.append(table[table["variant"] == variant])
        by_variant.append([r for r in rows if variant_of(r) == variant])
    # Split by the fields that vary within a variant (weight decay, positions, ...): a cell is compared with the cells
    # of the other variant that share its setting. A field that is constant within each variant but differs between
    # them (a grid that zips a surrogate with the variant) is part of what is compared; the header names it.
    split = sorted(set(setting_columns(sides[0])) | set(setting_columns(sides[1])))
    sides = [with_left_out_fields(side, split) for side in sides]
    # Unpaired, as between runs, although seed i of both variants shares its dataset, batch order and initial weights.
    # A paired interval would be narrower by as much as that makes the two variants' accuracies correlate over seeds;
    # in the published runs the correlation within a language is weak to moderate and of either sign, so pairing would
    # buy little, and it would drop every seed that only one variant holds. Where the correlation is positive, the
    # unpaired interval is the wider one: it errs on the side of `differs` left unmarked.
    samples = [{line._replace(variant=""): sample for line, sample in criterion_samples(side, split).items()}
               for side in sides]
    if not samples[0].keys() & samples[1].keys():
        where = run if run_b is None else f"{run} and {run_b}"
        raise ValueError(f"{where}: no language has cells of both {variant_a} and {variant_b}: nothing to compare")

    # A variant is an attention variant or a model kind (variant_of): those two fields are what is compared.
    differences = [line for line in config_differences(*by_variant)
                   if not line.startswith(("- model.attention:", "- model.kind:"))]
    if differences:
        header = [f"Besides the variant, the cells of {variant_a} and {variant_b} differ in these config fields "
                  f"({variant_a} -> {variant_b}), so a difference below need not come from the variant alone:", "",
                  *differences]
    else:
        header = [f"The cells of {variant_a} and {variant_b} differ in their variant alone."]
    header += selected_on_test(by_variant[0], f"{variant_a} in {run}") + \
        selected_on_test(by_variant[1], f"{variant_b} in {run_b or run}")
    title = f"# {Path(run).name}: {variant_a} (a) -> {variant_b} (b), {run}" if run_b is None else \
        f"# {variant_a} of {run} (a) -> {variant_b} of {run_b} (b)"
    return _document(title, header, samples, (variant_a, variant_b), per_variant=False)


def selected_on_test(rows, name):
    """The line that says a side's c=1 accuracies were chosen on test data (eval.select: best_test)."""
    if not chosen_on_test(rows):
        return []
    return ["", f"**Selected on test data:** the c=1 accuracies of {name} are each region's best over its checkpoints "
                "(`eval.select: best_test`), an upper bound on what a rule blind to the test strings reports."]


def config_differences(rows_a, rows_b):
    """Lines naming every flat config field whose set of values differs between two sets of rows (languages, seeds,
    train.steps, ...): the first thing to know before reading their accuracies side by side."""
    def values(rows):
        seen: dict[str, set] = {}
        for row in rows:
            for key, value in flat_config(row).items():
                seen.setdefault(key, set()).add(repr(value))
        return seen

    a, b = values(rows_a), values(rows_b)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            shown = [", ".join(sorted(v.strip("'") for v in side.get(key, {"—"}))) for side in (a, b)]
            lines.append(f"- {key}: {shown[0]} -> {shown[1]}")
    return lines


def with_left_out_fields(table, fields):
    """The long table with each of the flat config `fields` its rows leave out filled in: with the field's default
    where the bench leaves it out at its default (`LEFT_OUT_AT_DEFAULT`), else with "—"."""
    table = table.copy()
    for field in fields:
        section, _, key = field.partition(".")
        default = LEFT_OUT_AT_DEFAULT.get(section, {}).get(key, "—")
        if field not in table.columns:
            table[field] = pd.Series([default] * len(table), index=table.index, dtype=object)
        elif key in LEFT_OUT_AT_DEFAULT.get(section, {}) and table[field].map(_missing).any():
            # As objects: a column of floats would read a default of None back as nan.
            table[field] = pd.Series([default if _missing(v) else v for v in table[field]], index=table.index,
                                     dtype=object)
    return table


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- the tables ----------------------------------------------------------------------------------------------------

def criterion_samples(table, split):
    """{Line: Sample} for every language, variant, setting (the values of the fields `split`), criterion and compared
    scale the long table holds a number for."""
    if "eval.threshold" not in table.columns:
        raise CorruptResults("rows without eval.threshold: not finished cells as the bench writes them")
    lines = table[table["scale"].isin(COMPARED_SCALES)]
    titles = [", ".join(f"{c}={v}" for c, v in zip(split, values)) for values in zip(*(lines[c].tolist()
                                                                                           for c in split))]
    lines = lines.assign(_setting=titles if split else "")
    bins = bin_columns(lines)
    criteria = [("in dist.", "acc")] + [(f"len {c.removeprefix(BIN_PREFIX)}", c) for c in bins]
    if not bins:  # rows from before length bins: everything beyond training is one bin, as in criteria_table
        criteria.append(("beyond training", "acc_long"))
    out = {}
    for (language, variant, setting, scale), part in lines.groupby(["language", "variant", "_setting", "scale"]):
        # eval.threshold is constant within a group: were it an axis of the grid, it would be one of the split fields.
        threshold = float(part["eval.threshold"].iloc[0])
        for criterion, column in criteria:
            # In the order of the rows, as the report's cells read them: the bootstrap's draws follow that order.
            accuracies = part.set_index("hash")[column].dropna().astype(float)
            if len(accuracies):
                out[Line(language, variant, setting, criterion, scale)] = Sample(accuracies, threshold)
    return out


def comparison_tables(samples_a, samples_b, names):
    """[(heading, frame)], one per language and setting, for the lines both sides hold. A frame's rows: variant (where
    it holds several), criterion and scale; its columns: a's cell, b's cell, the difference b - a of the means with its
    95% interval, and `differs` where that interval excludes 0. A side whose accuracies at c=inf equal those at c=1
    reads `same as c=1` there; where both sides do so for every criterion of a variant, its c=inf rows are left out."""
    name_a, name_b = names
    difference = f"{name_b} - {name_a} [95%]"
    shared = samples_a.keys() & samples_b.keys()

    def same_as_trained(samples, line):
        trained = line._replace(scale="1")
        if line.scale == "1" or trained not in shared:
            return False
        return samples[trained].accuracies.sort_index().equals(samples[line].accuracies.sort_index())

    same = {line: (same_as_trained(samples_a, line), same_as_trained(samples_b, line)) for line in shared}
    # (language, setting, variant) whose every c=inf line is the same as at c=1 on both sides: nothing new at c=inf.
    blocks: dict[tuple, bool] = {}
    for line in shared:
        if line.scale != "1":
            block = (line.language, line.setting, line.variant)
            blocks[block] = blocks.get(block, True) and all(same[line])
    records, repeats = [], set()
    for line in sorted(shared, key=_order):
        if line.scale != "1" and blocks[(line.language, line.setting, line.variant)]:
            repeats.add((line.language, line.setting))
            continue
        a, b = samples_a[line], samples_b[line]
        interval = difference_interval(a.accuracies, b.accuracies)
        shift = b.accuracies.mean() - a.accuracies.mean()
        record = {"language": line.language, "setting": line.setting, "variant": line.variant,
                  "criterion": line.criterion, "scale": scale_heading(line.scale),
                  name_a: seed_cell(a.accuracies, a.threshold), name_b: seed_cell(b.accuracies, b.threshold),
                  difference: difference_words(shift, interval), "differs": DIFFERS if excludes_zero(interval) else ""}
        for name, repeated in zip((name_a, name_b), same[line]):
            if repeated:
                record[name] = SAME_AS_TRAINED
        if all(same[line]):
            record[difference] = SAME_AS_TRAINED
        records.append(record)
    if not records:
        return []
    frame = pd.DataFrame.from_records(records)
    tables = []
    for (language, setting), part in frame.groupby(["language", "setting"], sort=False):
        heading = [language] + ([setting] if setting else [])
        levels = ["variant", "criterion", "scale"]
        # A level that takes one value in the table goes into its heading rather than repeat in every row; the
        # criterion stays, as the name of the row.
        for level in ("variant", "scale"):
            values = part[level].unique()
            if len(values) > 1:
                continue
            levels.remove(level)
            if level == "scale" and (language, setting) in repeats:
                heading.append(f"{values[0]} and c=inf alike")
            elif values[0]:  # the variant is "" where the two sides are variants
                heading.append(values[0])
        part = part.drop(columns=["language", "setting"]).set_index(levels)
        tables.append((", ".join(heading), part.drop(columns=[c for c in ("variant", "scale") if c in part.columns])))
    return tables


def left_out(samples_a, samples_b, names):
    """One sentence naming what only one side holds (languages, variants, settings, criteria, scales), or None when
    both hold the same lines. Field by field: a bin is named as one side's only among the languages both hold."""
    keys = [set(samples_a), set(samples_b)]
    if keys[0] == keys[1]:
        return None
    parts = []
    for field in Line._fields:
        held = [{getattr(line, field) for line in side} for side in keys]
        for side in (0, 1):
            only = held[side] - held[1 - side]
            if not only:
                continue
            rank = {"scale": scale_value, "criterion": _criterion_rank, "variant": variant_rank}.get(field)
            shown = sorted(only, key=lambda value: (rank(value) if rank else 0, value))
            words = ", ".join(scale_heading(v) if field == "scale" else v for v in shown)
            label = {"language": "language", "variant": "variant", "setting": "setting"}.get(field)
            label = f"{label}{'s' if len(only) > 1 else ''} " if label else ""
            parts.append(f"{label}{words} ({names[side]} only)")
        # What the next fields are read among: the lines whose value of this field both sides hold.
        keys = [{line for line in side if getattr(line, field) in held[0] & held[1]} for side in keys]
    rest = len(keys[0] ^ keys[1])
    if rest:
        parts.append(f"{rest} other row{'s' if rest > 1 else ''} (a criterion at one scale of one language)")
    return "Left out, held by one side only: " + "; ".join(parts) + "."


def difference_words(shift, interval):
    """`+0.443 [+0.401, +0.480]`: the difference b - a of the means and its interval."""
    signed = lambda x: f"{round(x, 3) + 0.0:+.3f}"  # noqa: E731  (+ 0.0: a rounding error of 0 prints +0.000, not -0.000)
    # No interval when a side has one seed: its spread over seeds is unknown (report/stats.py, difference_interval).
    if interval is None:
        return f"{signed(shift)} (no interval)"
    return f"{signed(shift)} [{signed(interval[0])}, {signed(interval[1])}]"


def _order(line):
    return (line.language, line.setting, variant_rank(line.variant), line.variant, _criterion_rank(line.criterion),
            scale_value(line.scale))


def _criterion_rank(criterion):
    """In distribution first, then the length bins by their first length."""
    return {"in dist.": -1, "beyond training": math.inf}.get(criterion) \
        or int(criterion.removeprefix("len ").split("-")[0])


def _document(title, header, samples, names, per_variant):
    a, b = names
    block = "every criterion of a variant" if per_variant else "every criterion"
    legend = ("Rows: each criterion as trained (c=1) and at the saturated limit (c=inf). Cells: `mean [low, high] "
              "best b, k/n` over seeds (the 95% bootstrap interval of the mean, the best seed, k of n seeds at or "
              f"above eval.threshold; ✓ where the best seed reaches it). `{b} - {a}`: the difference of the means with "
              "its 95% bootstrap interval, each side's seeds resampled on their own (unpaired); `differs`: "
              f"{DIFFERS} where that interval excludes 0. `{SAME_AS_TRAINED}`: the accuracies at c=inf are those at "
              "c=1, seed for seed (no scale changes saturated or hard attention); where that holds on both sides for "
              f"{block}, the c=inf rows are left out.")
    lines = [title, "", *header, "", legend]
    alone = left_out(*samples, names)
    if alone:
        lines += ["", alone]
    for heading, frame in comparison_tables(*samples, names):
        lines += ["", f"## {heading}", "", markdown(frame)]
    return "\n".join(lines) + "\n"
