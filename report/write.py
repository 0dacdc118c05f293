"""From the files of a run to `report.md` and `figures/*.png`: which languages each attention variant recognizes, at
which scale, and what the probes saw. Reads rows only (harness/results.py): no torch, no model is run here."""

from collections import Counter
from pathlib import Path

from satbench.harness.results import PHASES, load_rows_with_config, read_constructions, write_atomically

from .common import left_out_words, load_theory, markdown
from .data_warnings import weak_data_lines
from .figures import figure_accuracy_vs_length, figure_accuracy_vs_scale, figure_heatmap
from .probe_sections import probe_sections
from .selection import chosen_on_test, label_selected, selection_table, selection_words
from .tables import (
    LIMIT_GAP,
    construction_table,
    criteria_table,
    fewest_per_class,
    flag_lines,
    kind_table,
    limit_not_reached,
    long_table,
    settings,
    soft_vs_saturated_table,
    sweep_table,
    theory_flags,
)
from .ties import (
    figure_tie_shares,
    figure_tolerance,
    tie_frame,
    tie_table,
    tolerance_columns,
    value_distinct_by_cell,
)


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

    hand_built = read_constructions(run_dir)  # recorded by the bench (harness/run.py)
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
    bins = sorted({name for row in rows for name in row["metrics"].get("acc_bins", {})},
                  key=lambda name: int(name.split("-")[0]))
    train = rows[0]["config"]["data"]["train_lengths"]
    lines += [f"- cells: {len(rows)}; seeds: {seeds}; device: {', '.join(devices)}; time in the groups: "
              f"{seconds_words}",
              f"- config: `{run_dir / 'config.yaml'}`",
              *_provenance_words(rows),
              f"- scale c multiplies {_scaling_words(rows)}; `c=inf` is the exact saturated limit (relative tie "
              f"tolerance {_tolerance_words(rows)}).",
              f"- two criteria, each on held-out strings: **in distribution** (lengths {train[0]}-{train[1]}, the "
              f"training lengths) and **length generalization** (lengths "
              f"{', '.join(bins) if bins else 'beyond training'}). A cell reads `mean [low, high] best b, k/n` "
              f"over the seeds: mean accuracy with its 95% bootstrap interval (percentile, seeds resampled; equal "
              f"values give a point, one seed none and no best), the best seed, and k of n seeds >= {threshold}; "
              f"✓ marks a criterion met: best seed >= {threshold}. With few seeds the interval is too narrow (3 seeds "
              "give about [min, max]): read it with k/n.",
              *_count_words(rows),
              *weak_data_lines(rows),
              *_task_words(rows),
              *selection_words(rows),
              *_probe_error_words(rows),
              "- † : every member of the training lengths is in the training split, so the in-distribution column "
              "is measured over all test lengths (a length-generalization question).",
              "- theory column: what theory predicts for the row's variant (hard is UHAT) under the row's own "
              "positional encoding, from `report/theory.yaml` (`open with none` where the prediction depends on the "
              "encoding); sources at the end. `vs theory` flags a cell that disagrees in either direction: ▲ above "
              "theory (a language theory rules out is recognized beyond training), ▼ below theory (one theory allows "
              "is not); each flag is explained with its likely cause under the table.", ""]
    for title, part in settings(table):
        suffix = f" ({title})" if title else ""
        tag = "" if not title else "-" + "".join(ch if ch.isalnum() else "_" for ch in title)[:80]
        in_part = set(part["hash"])
        part_rows = [r for r in rows if r["hash"] in in_part]
        part_ties = tie_frame(part_rows, [])
        flags = theory_flags(part, threshold, theory, value_distinct_by_cell(part_ties))
        lines += [f"## Recognition{suffix}", "",
                  markdown(label_selected(criteria_table(part, threshold, theory, flags), part_rows)), ""]
        lines += flag_lines(flags) + ([""] if flags else [])
        lines += [f"### Accuracy in distribution at every scale c{suffix}", "",
                  "Read along a row: the finite columns should converge to c=inf. `uniform`, where present: every "
                  "layer attending uniformly over the keys it may see, the c -> 0 end of the sweep (what the model "
                  "decides without looking at which keys score highest).", "",
                  markdown(label_selected(sweep_table(part, threshold), part_rows)), ""]
        # With best_test, c=1 is each region's best checkpoint and c=inf the final model: their gap is no sweep's.
        on_test = chosen_on_test(part_rows)
        unreached = limit_not_reached(part) if not on_test else part.iloc[:0]
        if not unreached.empty:
            lines += [f"**Limit not reached** in {len(unreached)} of {part['hash'].nunique()} cells: the accuracy in "
                      f"distribution at the largest finite c and at c=inf differ by more than {LIMIT_GAP} (per seed):",
                      "", markdown(unreached.round(3).set_index(["language", "variant", "seed"])), ""]
        versus = soft_vs_saturated_table(part, threshold)
        if not versus.empty:  # models without attention alone (lstm, rnn) have no variants to compare
            lines += [f"### Soft vs saturated{suffix}", "", markdown(label_selected(versus, part_rows)), ""]
        selected = selection_table(part_rows, threshold)
        if selected is not None:
            lines += [f"### Checkpoint selection{suffix}", "",
                      "Accuracy at c=1 of the model after the last step (`final`) and of the one the rule chose "
                      "(`selected`), per region, over seeds.", "", markdown(selected), ""]
        by_kind = kind_table(part_rows)
        if not by_kind.empty:
            lines += [f"### Accuracy by negative kind{suffix}", "",
                      "Accuracy in distribution on each kind of held-out string, mean over seeds, as trained (c=1) and "
                      "at the saturated limit (c=inf); `(n)`: strings of the kind per seed. `member`: the members; "
                      "the others: the non-members by the sampler that drew them (near misses of the language, "
                      "length-keeping edits and window shuffles of a member, random strings, `fallback`: enumerated "
                      "or random when those kept failing). A shortcut shows as one kind near 0 or 1 beside others "
                      "near chance.", "", markdown(by_kind), ""]
        # Guessing gets half of a balanced membership test right, and next to nothing of a task judged per prefix.
        chance = None if any(r["config"]["data"]["label_kind"] != "membership" for r in part_rows) else 0.5
        if not part_ties.empty:
            lines += [f"### Ties at the saturated limit{suffix}", "",
                      "`split_share`: share of queries whose tied set holds more than one key at c=inf; "
                      "`value_distinct_share`: of those, the share whose tied keys carry different values (only "
                      "these average anything, so only these can count); `score_gap`: median best minus second-best "
                      "score as trained, `score_gap_over_norm` the same over the parameter norm (means over seeds, "
                      "all layers and heads). `tol=t`: accuracy at c=inf in distribution over seeds, read as the "
                      "recognition table's cells, with relative tie tolerance t (see models/attention.py, "
                      "tie_floor).", "", *left_out_words(part_rows),
                      markdown(tie_table(part_ties, threshold)), ""]
            figure_tie_shares(part_ties, figures / f"tie_shares{tag}.png", title)
            lines += [f"![tie shares at the saturated limit](figures/tie_shares{tag}.png)", "",
                      "Split queries (log axis; shares below 1e-5 drawn at 1e-5) and, among them, value-distinct ties "
                      "at c=inf; bar: mean over seeds, whisker: its 95% bootstrap interval.", ""]
            if tolerance_columns(part_ties):  # eval.tie_tolerances may be empty
                figure_tolerance(part_ties, figures / f"tie_tolerance{tag}.png", chance, title)
                lines += [f"![accuracy at the limit against the tie tolerance](figures/tie_tolerance{tag}.png)", "",
                          "Accuracy at c=inf in distribution against the relative tie tolerance; line: mean over "
                          "seeds, band: its 95% bootstrap interval; left of the dotted line, where the run has it, "
                          "exact ties (tol = 0) with their interval" + ("; grey dashes: chance." if chance else "."),
                          ""]
        figure_heatmap(part, figures / f"recognition_heatmap{tag}.png", title)
        figure_accuracy_vs_length(part_rows, figures / f"accuracy_vs_length{tag}.png", chance=chance, title=title)
        figure_accuracy_vs_scale(part, figures / f"accuracy_vs_scale{tag}.png", _unit(rows), chance, title)
        lines += [f"![recognition heatmap](figures/recognition_heatmap{tag}.png)", "",
                  "Mean accuracy in distribution over seeds as trained (c=1) and at the exact limit (c=∞); the colour "
                  "scale runs from 0 to 1 in every run.", "",
                  f"![accuracy vs length](figures/accuracy_vs_length{tag}.png)", "",
                  "Accuracy by test length as trained (solid) and at the exact limit (dashed); line: mean over seeds, "
                  "band: its 95% bootstrap interval; shaded: the training lengths"
                  + ("; grey dashes: chance." if chance else "."), "",
                  f"![accuracy vs scale](figures/accuracy_vs_scale{tag}.png)", "",
                  f"Accuracy in distribution against the {_unit(rows)}: line over the finite c, mean over seeds with "
                  "its 95% bootstrap band; right of the dotted line, the exact limit c=∞ with its interval; thin "
                  "coloured dashes: uniform attention (the c -> 0 end)" + ("; grey dashes: chance." if chance else "."),
                  ""]
    languages = set(table["language"])
    built = [row for row in hand_built if row["language"] in languages]
    if built:
        lines += ["## Hand-built constructions", "",
                  "Exact weights set by hand (models/constructions.py), evaluated on every test length; finite c "
                  "scales their attention logits.", "", markdown(construction_table(built, threshold)), ""]
    lines += probe_sections(rows, run_dir)
    lines += ["## Sources", ""] + [f"- `{key}`: {text}" for key, text in theory["sources"].items()]
    path = run_dir / "report.md"
    write_atomically(path, "\n".join(lines) + "\n")
    return path


def _unit(rows):
    scaling = {row["config"]["eval"].get("scaling", "parameters") for row in rows}
    return "attention-logit scale c" if scaling == {"attention"} else "parameter scale c" \
        if scaling == {"parameters"} else "scale c"


def _tolerance_words(rows):
    tols = sorted({row["config"]["model"].get("tol", 1e-5) for row in rows})
    words = ", ".join(f"{t:g}" for t in tols)
    tolerant = any(row["config"]["model"].get("surrogate") == "tolerant" for row in rows)
    return words + ("; models trained `tolerant` use their own, see `model.tolerant_tol`" if tolerant else "")


def _count_words(rows):
    """How many strings each accuracy rests on: an accuracy over k strings moves in steps of 1/k."""
    fewest = fewest_per_class(rows)
    if fewest is None:
        return []
    count, where = fewest
    return [f"- held-out strings per class: at least {count} per cell in every criterion's bin (in distribution and "
            f"each length bin), the fewest being the {where}."]


def _provenance_words(rows):
    """The commit and the command line that made the rows (harness/provenance.py), each with its count of cells where
    the rows name several: a resumed run may have been continued by other code."""

    def commit(row):
        if "commit" not in row:  # rows from before the commit was recorded
            return "not recorded"
        if row["commit"] is None:
            return "unknown (not run from a git checkout)"
        dirty = {True: "-dirty", False: ""}.get(row.get("dirty"), " (uncommitted changes unknown)")
        return f"`{row['commit'][:12]}{dirty}`"

    def command(row):
        return f"`{row['command']}`" if row.get("command") else "not recorded"

    lines = []
    for name, words in (("commit", commit), ("command", command)):
        counts = Counter(words(row) for row in rows)  # in the order the rows first name them
        said = next(iter(counts)) if len(counts) == 1 else "; ".join(f"{w} ({n} cells)" for w, n in counts.items())
        lines.append(f"- {name}: {said}")
    return lines


def _probe_error_words(rows):
    """A probe that failed left its numbers out of its group's rows (harness/run.py); the report says which and why."""
    failed = {}
    for row in rows:
        for name, message in row["metrics"].get("probe_errors", {}).items():
            failed.setdefault(name, [0, message])[0] += 1
    return [f"- **probe `{name}` failed** in {count} of {len(rows)} cells, whose rows lack its numbers: {message}"
            for name, (count, message) in sorted(failed.items())]


def _task_words(rows):
    """The next-symbol task changes what accuracy means; membership is the default and needs no line."""
    kinds = sorted({r["config"]["data"]["label_kind"] for r in rows})
    if "next_symbols" not in kinds:
        return []
    return ["- task: **next symbols** (Bhattamishra et al. 2020): members only; at every prefix the model predicts "
            "which symbols can follow and whether the prefix is a member, and a string counts as right only if every "
            "prefix's prediction is." + (" Some cells are membership cells." if len(kinds) > 1 else "")]


def _scaling_words(rows):
    scaling = {row["config"]["eval"].get("scaling", "parameters") for row in rows}
    words = {"parameters": "every parameter (f(x; c*theta), the paper's operation; a temperature sweep only for the "
                           "homogeneous block, where it equals attention logits * c^4; with biases, pre- or post-LN it "
                           "changes more than the attention, so finite c need not approach the c=inf column)",
             "attention": "the attention logits (softmax(c*s) in every layer: the finite columns approach the c=inf "
                          "column as c grows)"}
    return " / ".join(words[s] for s in sorted(scaling))
