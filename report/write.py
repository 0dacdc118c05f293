"""From the files of a run to `report.md` and `figures/*.png`: which languages each attention variant recognizes, at
which scale, and what the probes saw. Reads rows only (harness/results.py): no torch, no model is run here."""

from pathlib import Path

from harness.results import PHASES, load_rows_with_config, read_constructions, write_atomically

from .common import load_theory, markdown
from .figures import figure_accuracy_vs_length, figure_accuracy_vs_scale, figure_heatmap
from .probe_sections import probe_sections
from .tables import long_table, recognition_table, settings, soft_vs_saturated_table, with_constructions


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
    lines += [f"- cells: {len(rows)}; seeds: {seeds}; device: {', '.join(devices)}; time in the groups: "
              f"{seconds_words}",
              f"- config: `{run_dir / 'config.yaml'}`",
              f"- a cell reads `mean±std (max)` of accuracy over seeds on held-out strings of the training lengths; "
              f"✓ marks a language recognized (best seed >= {threshold}). `c=inf` is the exact saturated limit.",
              f"- scale c multiplies {_scaling_words(rows)}.",
              "- theory column: soft / saturated / hard (UHAT), from `report/theory.yaml`; sources at the end.", ""]
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
    lines += probe_sections(rows, run_dir)
    lines += ["## Sources", ""] + [f"- `{key}`: {text}" for key, text in theory["sources"].items()]
    path = run_dir / "report.md"
    write_atomically(path, "\n".join(lines) + "\n")
    return path


def _scaling_words(rows):
    scaling = {row["config"]["eval"].get("scaling", "parameters") for row in rows}
    words = {"parameters": "every parameter (f(x; c*theta), the paper's operation; with biases, layer norm and "
                           "residual connections this changes more than the attention, so finite c need not approach "
                           "the c=inf column)",
             "attention": "the attention logits alone (these columns approach the c=inf column as c grows)"}
    return " / ".join(words[s] for s in sorted(scaling))
