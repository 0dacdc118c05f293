"""The report's tie section: how often queries split their attention at the saturated limit, whether the tied keys
carry different values (what lets saturated attention count), the score gaps as trained, and the accuracy at the
limit as the relative tie tolerance grows. Reads the `ties` and `tie_tolerance_acc` metrics of each row
(probes/ties.py, probes/evaluate.py); rows written before them have none and get no section."""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .common import flatten, ordered_variants, variant_rank
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
        records.append({"language": row["config"]["language"], "variant": row["config"]["model"]["attention"],
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
    return frame.sort_values(["language", "variant"], key=lambda c: c.map(variant_rank) if c.name == "variant" else c)


def tie_table(frame, threshold):
    """Rows: language and variant. Columns: mean over seeds of the tie shares and gaps, then the accuracy at the limit
    per tolerance over seeds (`seed_cell`)."""
    tolerances = tolerance_columns(frame)
    grouped = _ordered(frame).groupby(["language", "variant"], sort=False)
    out = grouped[SHARES].mean().map(lambda v: "—" if pd.isna(v) else f"{v:.3g}")
    for column in tolerances:
        out[column] = grouped[column].apply(lambda v: seed_cell(v, threshold))
    return out


def figure_tolerance(frame, path, title):
    """Accuracy at the saturated limit, in distribution, against the relative tie tolerance: one panel per language,
    one line per variant (mean over seeds; band: min to max over seeds)."""
    tolerances = tolerance_columns(frame)
    long = frame.melt(id_vars=["language", "variant", "seed"], value_vars=tolerances, var_name="tol",
                      value_name="accuracy")
    long["tol"] = long["tol"].str.removeprefix("tol=").astype(float)
    grid = sns.relplot(data=long, x="tol", y="accuracy", hue="variant", col="language", kind="line", marker="o",
                       height=2.4, aspect=1.2, errorbar=("pi", 100), col_wrap=min(5, long["language"].nunique()),
                       hue_order=ordered_variants(long["variant"]))
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    grid.set_axis_labels("relative tie tolerance", "accuracy at c=inf")
    grid.figure.suptitle(f"{title}: accuracy at the saturated limit (training lengths) as the tie tolerance grows; "
                         "line: mean over seeds, band: min to max, dotted: chance", y=1.03, fontsize=9)
    grid.savefig(path, dpi=100)
    plt.close(grid.figure)
