"""What eval.select and the random restarts changed, from the rows alone: the lines of the report's header that say
which model a row's numbers describe, the label its c=1 columns carry when they were chosen on test data, and the table
of the final model beside the selected one (harness/selection.py records both)."""

import pandas as pd

from .common import ordered_languages, report_order, variant_of
from .stats import seed_cell

ON_TEST = "best on test"  # the label of c=1 columns whose accuracies are each region's best over checkpoints


def chosen_on_test(rows) -> bool:
    """Whether any row chose its c=1 accuracies on test data (eval.select: best_test)."""
    return any(row["config"]["eval"].get("select") == "best_test" for row in rows)


def label_selected(frame, rows):
    """`frame` with each `c=1` column heading marked when the rows chose their c=1 accuracies on test data."""
    if not chosen_on_test(rows):
        return frame
    return frame.rename(columns=lambda c: f"{c} ({ON_TEST})" if str(c).endswith("c=1") else c)


def selection_words(rows) -> list[str]:
    """The header's lines on checkpoint selection and random restarts; none for rows at the defaults."""
    lines = []
    rules = {row["config"]["eval"].get("select", "final") for row in rows}
    checkpoints = sorted({len(row["metrics"]["selection"]["checkpoints"]) for row in rows
                          if "selection" in row["metrics"]})
    several = " or ".join(str(k) for k in checkpoints)
    if "best_test" in rules:
        lines.append(f"- selection: **c=1 columns are selected on test data** (`eval.select: best_test`, B20's "
                     f"report): each region (in distribution, each bin, every length beyond training) reads its best "
                     f"accuracy over {several} checkpoints and the final model, marked `({ON_TEST})` in the tables "
                     "(the heatmap and the figures' c=1 too). That is an upper bound on what a rule blind to the test "
                     "strings would report; c=inf and every other number describe the final model. The table "
                     "*Checkpoint selection* sets the final model beside it.")
    if "validation" in rules:
        lengths = sorted({tuple(row["dataset"]["meta"]["validation_lengths"]) for row in rows
                          if row["config"]["eval"].get("select") == "validation"
                          and "validation_lengths" in row["dataset"]["meta"]})
        lines.append(f"- selection: every number describes the checkpoint with the lowest recognition cross-entropy "
                     f"on the validation split (`eval.select: validation`, FLaRe's rule; {several} checkpoints; "
                     f"validation lengths {', '.join(f'{a}-{b}' for a, b in lengths)}). The table *Checkpoint "
                     "selection* sets the final model beside it.")
    rates = [row["metrics"]["learning_rate"] for row in rows if "learning_rate" in row["metrics"]]
    if rates:
        ranges = sorted({tuple(row["config"]["train"]["lr"]["loguniform"]) for row in rows
                         if isinstance(row["config"]["train"]["lr"], dict)})
        lines.append(f"- restarts: each seed is a restart with its own learning rate, drawn log-uniformly from "
                     f"{' or '.join(f'[{a:g}, {b:g}]' for a, b in ranges)} (drawn: {min(rates):.2g} to "
                     f"{max(rates):.2g}); the mean over seeds is FLaRe's *inductive bias* statistic and the best seed "
                     "its *expressivity* statistic (FLaRe validates the latter on longer strings).")
    return lines


def selection_table(rows, threshold):
    """Per language and variant (and setting columns the caller splits by), each region's accuracy at c=1 of the final
    model and of the selected one, as `seed_cell`s over seeds; None when no row records a selection."""
    records = []
    for row in rows:
        selection = row["metrics"].get("selection")
        if not selection:
            continue
        chosen = {"in": row["metrics"]["acc"]["1"], **{name: values["1"] for name, values in
                                                         row["metrics"]["acc_bins"].items()}}
        for region, selected in chosen.items():
            records.append({"language": row["config"]["language"], "variant": variant_of(row),
                            "region": "in dist." if region == "in" else f"len {region}",
                            "final": selection["final"][region], "selected": selected})
    if not records:
        return None
    frame = pd.DataFrame.from_records(records)
    regions = list(dict.fromkeys(frame["region"]))
    out = {}
    for (language, variant, region), part in frame.groupby(["language", "variant", "region"], sort=False):
        cells = out.setdefault((language, variant), {})
        cells[f"{region} final"] = seed_cell(part["final"], threshold)
        cells[f"{region} selected"] = seed_cell(part["selected"], threshold)
    table = pd.DataFrame.from_dict(out, orient="index")
    table = table[[f"{r} {w}" for r in regions for w in ("final", "selected")]]
    table.index = pd.MultiIndex.from_tuples(table.index, names=["language", "variant"])
    return table.sort_index(key=report_order(ordered_languages(frame["language"])))
