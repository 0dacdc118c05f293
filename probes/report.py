"""From rows to `report.md` and `figures/*.png`: which languages each attention variant recognizes, at which scale.

Rows are flattened into one long table (one line per cell and scale) with pandas; every table of the report is a
pivot of it. Config fields that vary across the run other than language, seed and attention variant (model size,
weight decay, ...) split the report into one block per setting.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from .harness import PHASES, load_rows_with_config  # noqa: E402
from .results import CorruptResults  # noqa: E402
from .theory_check import construction_rows  # noqa: E402

VARIANTS = ["soft", "saturated", "hard"]
THEORY_PATH = Path(__file__).with_name("theory.yaml")


def load_theory():
    theory = yaml.safe_load(THEORY_PATH.read_text())
    # YAML 1.1 reads yes/no as booleans.
    word = lambda v: {True: "yes", False: "no"}.get(v, v)  # noqa: E731
    for entry in theory["languages"].values():
        for variant in VARIANTS:
            entry[variant] = word(entry[variant])
    return theory


def flatten(config, prefix=""):
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def scale_value(name):
    return math.inf if name == "inf" else float(name)


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


def markdown(frame):
    return frame.to_markdown()  # pandas, through tabulate


def theory_cell(language, theory):
    entry = theory["languages"].get(language)
    if not entry:
        return "—"
    return " / ".join(entry[v] for v in VARIANTS)


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


# --- figures ---------------------------------------------------------------------------------------------------

def figure_heatmap(table, path):
    scales = [s for s in ("1", "inf") if s in set(table["scale"])]
    pivot = (table[table["scale"].isin(scales)].groupby(["language", "variant", "scale"])["acc"].mean()
             .unstack(["variant", "scale"]))
    pivot = pivot[[c for v in VARIANTS for s in scales for c in [(v, s)] if c in pivot.columns]]
    pivot.columns = [f"{v}\nc={s}" for v, s in pivot.columns]
    fig, ax = plt.subplots(figsize=(1.3 * len(pivot.columns) + 2, 0.4 * len(pivot) + 1.5))
    sns.heatmap(pivot, annot=True, fmt=".2f", vmin=0.5, vmax=1.0, cmap="viridis", ax=ax, cbar_kws={"label": "accuracy"})
    ax.set_title("Accuracy on the training lengths (mean over seeds)")
    ax.set_xlabel("")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_accuracy_vs_length(rows, path, scale="1"):
    records = []
    for row in rows:
        by_length = row["metrics"]["acc_by_length"].get(scale, {})
        for length, acc in by_length.items():
            records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
                            "length": int(length), "accuracy": acc})
    frame = pd.DataFrame.from_records(records)
    grid = sns.relplot(data=frame, x="length", y="accuracy", hue="variant", col="language", col_wrap=4, kind="line",
                       height=2.2, aspect=1.3, hue_order=[v for v in VARIANTS if v in set(frame["variant"])],
                       errorbar=("pi", 100))
    train_hi = rows[0]["config"]["data"]["train_lengths"][1]
    for ax in grid.axes.flat:
        ax.axvline(train_hi, color="grey", lw=0.8, ls="--")
    grid.figure.suptitle(f"Accuracy by length at c={scale} (dashed: longest training length)", y=1.02)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)


def figure_accuracy_vs_scale(table, path):
    frame = table.copy()
    finite = frame["scale_value"][frame["scale_value"] < math.inf]
    top = finite.max() * 4 if len(finite) else 1.0
    frame["c"] = frame["scale_value"].where(frame["scale_value"] < math.inf, top)
    grid = sns.relplot(data=frame, x="c", y="acc", hue="variant", col="language", col_wrap=4, kind="line",
                       marker="o", height=2.2, aspect=1.3,
                       hue_order=[v for v in VARIANTS if v in set(frame["variant"])], errorbar=("pi", 100))
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.axvline(top, color="grey", lw=0.8, ls=":")
    grid.figure.suptitle(f"Accuracy on training lengths vs parameter scale c (dotted, at {top:g}: saturated limit)",
                         y=1.02)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)


# --- the report ------------------------------------------------------------------------------------------------

def phase_seconds(rows) -> dict[str, float]:
    """Seconds per phase (datasets, train, evaluate, probes) summed over the groups of a run; {} for rows that predate
    the phase timer. Every row of a group carries the group's phases, so each row counts for 1 / group size."""
    timed = [row for row in rows if "group_phase_seconds" in row]
    if len(timed) < len(rows):
        return {}  # a run resumed across versions: phases for part of it would not add up to its total
    return {name: sum(row["group_phase_seconds"].get(name, 0.0) / row["group_members"] for row in rows)
            for name in PHASES}


def write_report(run_dir, header=None):
    """Write report.md and figures/ into `run_dir`; returns the report's path."""
    run_dir = Path(run_dir)
    rows = load_rows_with_config(run_dir)
    table = long_table(rows)
    theory = load_theory()
    threshold = rows[0]["config"]["eval"]["threshold"]
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)

    test_lengths = rows[0]["config"]["data"]["test_lengths"]
    hand_built = construction_rows(lengths=(max(1, test_lengths[0]), test_lengths[1]))
    seeds = sorted(table["seed"].unique().tolist())
    devices = sorted({r.get("device", "?") for r in rows})
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    phases = phase_seconds(rows)
    if phases:
        seconds_words = f"{seconds:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ")"
    else:
        seconds_words = f"{seconds:.0f} s"
    lines = [f"# satbench report: {run_dir.name}", ""]
    if header:
        lines += [header, ""]
    lines += [f"- cells: {len(rows)}; seeds: {seeds}; device: {', '.join(devices)}; time in the groups: "
              f"{seconds_words}",
              f"- config: `{run_dir / 'config.yaml'}`",
              f"- a cell reads `mean±std (max)` of accuracy over seeds on held-out strings of the training lengths; "
              f"✓ marks a language recognized (best seed >= {threshold}). `c=inf` is the exact saturated limit.",
              f"- scale c multiplies {_scaling_words(rows)}.",
              "- theory column: soft / saturated / hard (UHAT), from `probes/theory.yaml`; sources at the end.", ""]
    for title, part in settings(table):
        suffix = f" ({title})" if title else ""
        tag = "" if not title else "-" + "".join(ch if ch.isalnum() else "_" for ch in title)[:80]
        recognition = with_constructions(recognition_table(part, threshold, theory), hand_built, threshold)
        lines += [f"## Recognition{suffix}", "", markdown(recognition), ""]
        lines += [f"### Soft vs saturated{suffix}", "", markdown(soft_vs_saturated_table(part, threshold)), ""]
        lines += [f"### Length generalization: accuracy on lengths beyond training{suffix}", "",
                  markdown(recognition_table(part[part["scale"].isin(["1", "inf"])], threshold, theory,
                                             column="acc_long")), ""]
        figure_heatmap(part, figures / f"recognition_heatmap{tag}.png")
        in_part = set(part["hash"])
        part_rows = [r for r in rows if r["hash"] in in_part]
        figure_accuracy_vs_length(part_rows, figures / f"accuracy_vs_length{tag}.png")
        figure_accuracy_vs_scale(part, figures / f"accuracy_vs_scale{tag}.png")
        lines += [f"![recognition heatmap](figures/recognition_heatmap{tag}.png)",
                  f"![accuracy vs length](figures/accuracy_vs_length{tag}.png)",
                  f"![accuracy vs scale](figures/accuracy_vs_scale{tag}.png)", ""]
    from .report_probes import probe_sections  # imports this module's helpers

    lines += probe_sections(rows, run_dir)
    lines += ["## Sources", ""] + [f"- `{key}`: {text}" for key, text in theory["sources"].items()]
    path = run_dir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


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


def _scaling_words(rows):
    scaling = {row["config"]["eval"].get("scaling", "parameters") for row in rows}
    words = {"parameters": "every parameter (f(x; c*theta), the paper's operation; with biases, layer norm and "
                           "residual connections this changes more than the attention, so finite c need not approach "
                           "the c=inf column)",
             "attention": "the attention logits alone (these columns approach the c=inf column as c grows)"}
    return " / ".join(words[s] for s in sorted(scaling))


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
