"""The report's probe sections, one per probe that declares one (probes/report_section.py): its title, its paragraph,
tables of its numbers and the renderers it asks for by name (report/probe_renderers.py). The report never imports a
probe: it reads the declarations the bench recorded in the run directory (probe_reports.json). A run recorded before
probes declared their sections gets one table of every number its probes left in the rows.

Besides language and variant, every table and figure splits by the config fields that vary across the run (weight
decay, model size, ...), whichever they are: `varying_fields`.
"""

import fnmatch
import math

import numpy as np
import pandas as pd

from satbench.harness.results import PROBE_REPORTS_FILE, read_probe_reports

from .common import left_out_words, markdown, setting, variant_of, varying_fields
from .probe_renderers import RENDERERS, RunView

LATE = 0.2  # the late phase of training: logged steps t >= LATE * the last step (the norm-growth probe's text says so)
LOG_FITS = ("sq_late_slope", "sq_late_r2")  # what `late_squared_norm_fit` adds to every cell's numbers
MAX_CELLS_LISTED = 100  # above this a table of rows "seed" is in its csv file only


def late_squared_norm_fit(log):
    """Slope and r² of ||theta||² = slope * t + intercept over the late phase only (t >= LATE * the last step): after
    the first fast changes of training, a constant slope there is the sqrt(t) law of Merrill et al."""
    points = [(e["step"], e["norm"] ** 2) for e in log if "norm" in e]
    if not points:
        return {}
    last = points[-1][0]
    t, square = np.array([p for p in points if p[0] >= LATE * last], dtype=float).T
    if len(t) < 3 or np.ptp(square) == 0:
        return {"sq_late_slope": math.nan, "sq_late_r2": math.nan}
    slope, intercept = np.polyfit(t, square, 1)
    residual = square - (slope * t + intercept)
    return {"sq_late_slope": float(slope), "sq_late_r2": float(1 - residual.var() / square.var())}


def numbers_of(row, section):
    """The numbers that probes of `section` left in a row, where the harness puts them: metrics.probes for section
    "probes", the row's own metrics for section "metrics". Nested results (a histogram) are for renderers."""
    source = row["metrics"] if section == "metrics" else row["metrics"].get("probes") or {}
    return {key: value for key, value in source.items() if value is None or isinstance(value, (int, float))}


def cell_frame(rows, fields, section):
    """One line per cell: its numbers of `section`, the late-phase fit of the norm in its training log (which every
    row carries, probes or not), and language, variant, seed and the varying `fields`."""
    return pd.DataFrame.from_records([
        {**numbers_of(row, section), **late_squared_norm_fit(row.get("log") or []),
         "language": row["config"]["language"], "variant": variant_of(row),
         "seed": row["config"]["seed"], **setting(row, fields)} for row in rows])


def mean_std(values):
    values = values.dropna()
    if values.empty:
        return "—"
    return f"{values.mean():.3f}±{values.std(ddof=0):.3f}"


def summary_table(frame, columns, by):
    return frame.groupby(by).agg({c: mean_std for c in columns if c in frame})


def resolve(columns, present):
    """A table's declared columns as {key: header} over the keys `present`: a key with `*` stands for every present
    key of that shape, in sorted order; a declared key that no cell has is left out."""
    headers = columns if isinstance(columns, dict) else {key: key for key in columns}
    headers = {key: str(header).replace("|", "\\|") for key, header in headers.items()}  # a | would end the cell
    out = {}
    for key, header in headers.items():
        if "*" in key:
            out.update({match: match for match in sorted(k for k in present if fnmatch.fnmatchcase(k, key))})
        elif key in present:
            out[key] = header
    return out


def table_lines(table, frame, fields, run_dir):
    """Markdown of one declared table. A cell none of whose own numbers are in it (the probe failed there, or had
    nothing to say about its language) is left out of it; a table no cell has numbers for is left out."""
    headers = resolve(table["columns"], [c for c in frame.columns if c not in ("language", "variant", "seed")])
    own = [key for key in headers if key not in LOG_FITS] or list(headers)
    if not own:
        return []
    part = frame.dropna(subset=own, how="all")
    if part.empty or (table["rows"] == "field" and not fields):
        return []
    columns, cell = list(headers), ["language", "variant", *fields]
    lines = ([f"### {table['title']}", ""] if table["title"] else []) + ([table["text"], ""] if table["text"] else [])
    if table["rows"] == "cell":
        lines += [markdown(summary_table(part, columns, cell).rename(columns=headers)), ""]
    elif table["rows"] == "variant":
        lines += [markdown(summary_table(part, columns, ["variant", *fields]).rename(columns=headers)), ""]
    elif table["rows"] == "field":
        for field in fields:
            lines += [f"### By {field}", "", "Over all languages and seeds:", "",
                      markdown(summary_table(part, columns, [field, "variant"]).rename(columns=headers)), ""]
    else:  # "seed"
        every = part.sort_values([*cell, "seed"]).set_index([*cell, "seed"])[columns].rename(columns=headers)
        if table["csv"]:
            every.to_csv(run_dir / table["csv"], float_format="%.6g")
        if len(every) <= MAX_CELLS_LISTED:
            lines += [markdown(every.round(4)), ""]
        else:
            where = f"see `{table['csv']}`" if table["csv"] else "too many to list here"
            lines += [f"{len(every)} cells: {where}.", ""]
    return lines


def declared_section(declared, frame, view, run_dir):
    """A probe's section: ## title, paragraph, tables, renderers. A probe whose tables find no numbers in any row
    (it failed everywhere, or ran on no cell) gets none. A probe of attention says why the cells of other model kinds
    are not in it (a run recorded before probes declared `needs_attention` does not)."""
    report = declared["report"]  # every field of ProbeReport and Table, as asdict wrote them
    shorthand = {"columns": report["columns"], "rows": "cell", "title": "", "text": "", "csv": ""}
    tables = ([shorthand] if report["columns"] else []) + report["tables"]
    body = [line for table in tables for line in table_lines(table, frame, view.fields, run_dir)]
    if tables and not body:
        return []
    lines = [f"## {report['title']}", ""] + ([report["text"], ""] if report["text"] else [])
    lines += (left_out_words(view.rows) if declared.get("needs_attention") else []) + body
    for name in report["renderers"]:
        if name in RENDERERS:
            lines += RENDERERS[name](view)
        else:
            lines += [f"Probe `{declared['name']}` asks for the renderer `{name}`, which this version of report/ "
                      "does not have.", ""]
    return lines


def undeclared_section(rows, fields):
    """For a run recorded before probes declared their sections: every number under metrics.probes, by cell."""
    frame = cell_frame(rows, fields, "probes")
    keys = sorted({key for row in rows for key in numbers_of(row, "probes")})
    if not keys:
        return []
    return ["## Probe numbers", "",
            f"This run directory has no `{PROBE_REPORTS_FILE}`, the probes' declarations of their report sections "
            "(it was written before satbench recorded them), so the probes' own tables and figures are missing. "
            "Instead: every number the probes left in the rows (`metrics.probes`), per language, variant and varying "
            "config field, mean±std over seeds.", "",
            markdown(summary_table(frame.dropna(subset=keys, how="all"), keys, ["language", "variant", *fields])), ""]


def probe_sections(rows, run_dir):
    fields = varying_fields(rows)
    declarations = read_probe_reports(run_dir)
    if declarations is None:
        return undeclared_section(rows, fields)
    view = RunView(rows, fields, run_dir / "figures")
    frames = {}  # section -> cell_frame, built once for all the probes of a section
    lines, silent = [], []
    for declared in declarations:
        if declared["report"] is None:
            # Recognition and ties (section "metrics") are the report's own tables; any other probe says nothing.
            silent += [declared["name"]] if declared["section"] == "probes" else []
            continue
        if declared["section"] not in frames:
            frames[declared["section"]] = cell_frame(rows, fields, declared["section"])
        lines += declared_section(declared, frames[declared["section"]], view, run_dir)
    if silent:
        names = ", ".join(f"`{name}`" for name in silent)
        lines += ["## Probes without a report section", "",
                  f"{names}: their numbers are in the rows only (`metrics.probes` of cells.jsonl).", ""]
    return lines
