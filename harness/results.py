"""The files of a run: one JSON line per finished cell, appended atomically, read back with torn lines repaired.

A run directory holds `config.yaml` (the grid as run), `grid_cells.json` (the hashes of its cells), one or more rows
files `cells*.jsonl` (one per shard when a bench is split), `constructions.json` (the hand-built constructions on
the run's test lengths) and `probe_reports.json` (what each probe that ran contributes to the report,
probes/report_section.py). A kill in mid-write can leave a last line without its newline; reading repairs the file by
cutting that line off, so its cell counts as unfinished and is rerun; only the bench repairs (`repair`), the report
reads and skips a torn line without writing.

This module is the boundary between the bench and its report: it imports neither torch nor anything of the bench, so
the report reads a run through it alone.
"""

import gzip
import hashlib
import json
import math
import os
from pathlib import Path

import yaml

ROWS_GLOBS = ("cells*.jsonl", "cells*.jsonl.gz")  # gzip: published runs, read-only
SCORED_GLOB = "scored-*.jsonl"  # rows of predictions made elsewhere (`satbench score`, harness/export.py)
CONFIG_FILE = "config.yaml"
GRID_CELLS_FILE = "grid_cells.json"
CONSTRUCTIONS_FILE = "constructions.json"
PROBE_REPORTS_FILE = "probe_reports.json"
PHASES = ("datasets", "train", "evaluate", "probes")  # the order a group runs them in; each row carries their seconds


class CorruptResults(ValueError):
    pass


# Fields added after runs were published, left out of a cell's record at their default so that cells (and the hashes
# that resume a run) read as before the field existed. Here rather than in harness/config.py, so that the report can
# read a left-out field's value without importing torch.
LEFT_OUT_AT_DEFAULT = {"model": {"init_scale": 1.0, "qk_norm": False, "attention_scale": None, "bos_key": True,
                                 "kind": "transformer"},
                       "data": {"negatives": "language", "validation_size": 0, "validation_lengths": None},
                       "train": {"compile": False, "tf32": False, "tolerance_schedule": "constant", "soft_steps": 0,
                                 "aux_losses": [], "aux_weight": 1.0, "loss": "bce"},
                       "eval": {"uniform_control": True, "select": "final", "checkpoints": 10}}


# --- identity: a cell's hash, a grid's hash ----------------------------------------------------------------------

def encode_inf(obj):
    """inf written as the string "inf", so that rows stay strict JSON."""
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: encode_inf(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_inf(v) for v in obj]
    return obj


def _json_default(value):
    raise TypeError(f"not JSON-able: {value!r}")


def canonical_json(obj):
    return json.dumps(encode_inf(obj), sort_keys=True, separators=(",", ":"), default=_json_default)


def cell_hash(cell):
    return hashlib.sha256(canonical_json(cell).encode()).hexdigest()[:16]


def grid_hash(raw):
    """Hash of the config as config.yaml records it; each row carries it, so rows of another config stand out."""
    return cell_hash(yaml.safe_load(yaml.safe_dump(raw)))


def read_yaml(path, error=ValueError):
    """A YAML file, safely loaded; invalid YAML, text that is not UTF-8 or an unreadable file raises `error` with one
    line naming the file."""
    try:
        return yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start} is 0x{problem.object[problem.start]:02x})") from None
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror})") from None
    except yaml.YAMLError as problem:
        where = getattr(problem, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise error(f"{path}:{line} is not valid YAML") from None


def write_atomically(path, text):
    """Write a whole file or nothing: a reader (another shard, a report) never sees it half-written."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


# --- rows files --------------------------------------------------------------------------------------------------


def _rounded(obj, digits=6):
    """Floats to `digits` significant digits: measured accuracies carry no more, and rows stay small."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    return obj


def row_line(row) -> str:
    """A row as its rows file holds it: one JSON line, floats to 6 significant digits."""
    return json.dumps(_rounded(row), sort_keys=True, allow_nan=True) + "\n"


def append_row(path, row):
    """One write of one complete line on an O_APPEND descriptor, then fsync: a reader sees all of it or none."""
    line = row_line(row).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def repair(path):
    """Cut a torn last line off `path`; returns True when something was cut."""
    data = Path(path).read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    return True


def read_rows(path, fix=False):
    """Rows of one file. A torn last line is skipped (or repaired in place, with fix=True); a bad line elsewhere is an
    error."""
    path = Path(path)
    if not path.exists():
        return []
    compressed = path.suffix == ".gz"
    if fix and not compressed:
        repair(path)
    data = path.read_bytes()
    try:
        lines = (gzip.decompress(data) if compressed else data).split(b"\n")
    except (OSError, EOFError):
        raise CorruptResults(f"{path}: not a gzip file") from None
    lines.pop()  # what follows the last newline: nothing, or a torn line that was not repaired
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptResults(f"{path}:{number}: not a JSON row (the file is corrupt; delete the line to rerun "
                                 "that cell)") from None
        if not isinstance(row, dict) or "hash" not in row or "config" not in row:
            raise CorruptResults(f"{path}:{number}: a row needs 'hash' and 'config'")
        rows.append(row)
    return rows


def rows_files(run_dir):
    return sorted(path for pattern in ROWS_GLOBS for path in Path(run_dir).glob(pattern))


def check_one_config(run_dir, expected, cells=frozenset()):
    """Refuse a run whose rows were written under another config than the one it records (`grid_hash` of each row).

    Shards started by hand with different overrides, or shard files copied in from another run, would otherwise mix
    into one report. Rows without `grid_hash` (written by hand, or by an older satbench) are let through, and so are
    rows of a cell of this grid (`cells`: the hashes grid_cells.json lists) written by a run of a part of it (such as
    a subset of its languages): the cell's hash covers its whole config, so its row is the one this grid would write.
    """
    for path in rows_files(run_dir):
        if any(row.get("grid_hash", expected) != expected and row["hash"] not in cells
               for row in read_rows(path, fix=False)):
            raise CorruptResults(f"{path}: rows of another config than {Path(run_dir) / 'config.yaml'} (shards run "
                                 "with different configs?); move that file away, or rerun with --force")


def read_run(run_dir, fix=False):
    """All rows of a run directory, merged over its rows files; the latest row of a cell wins."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CorruptResults(f"no run directory at {run_dir}")
    by_hash = {}
    for path in rows_files(run_dir):
        for row in read_rows(path, fix=fix):
            by_hash[row["hash"]] = row
    return list(by_hash.values())


def load_rows_with_config(run_dir):
    """Rows of a run restricted to the cells of the config it records, in the order of its cells: rows of other cells
    (written by an older version of the code, whose cells hashed differently) are ignored. Refuses rows written under
    another config."""
    run_dir = Path(run_dir)
    rows = read_run(run_dir)
    listed = run_dir / GRID_CELLS_FILE
    listing = None
    if listed.exists():
        try:
            listing = list(json.loads(listed.read_text())["cells"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CorruptResults(f"{listed}: not a list of cell hashes (delete it; the next bench writes it again)") \
                from None
    recorded = run_dir / CONFIG_FILE
    if recorded.exists():
        check_one_config(run_dir, grid_hash(read_yaml(recorded, CorruptResults)), frozenset(listing or ()))
    if listing is not None:
        order = {cell: i for i, cell in enumerate(listing)}
        # In the order of the grid's cells, whose outermost axis is the config's language list: the report shows the
        # languages in the order the config names them (report/style.py, `ordered_languages`).
        rows = sorted((r for r in rows if r["hash"] in order), key=lambda r: order[r["hash"]])
    # Scored models, beside the trained cells: their rows are no cells of the grid, and no bench rewrites them.
    for path in sorted(run_dir.glob(SCORED_GLOB)):
        rows += read_rows(path)
    return rows


def read_constructions(run_dir):
    """The hand-built constructions' rows the bench recorded for this run; [] when it recorded none."""
    path = Path(run_dir) / CONSTRUCTIONS_FILE
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise CorruptResults(f"{path}: not JSON (delete it; the next bench writes it again)") from None


def write_probe_reports(run_dir, declarations):
    """Record the probes' report declarations (`probes.recorded_reports`): a list of {name, section,
    needs_attention, report}."""
    write_atomically(Path(run_dir) / PROBE_REPORTS_FILE, json.dumps({"probes": declarations}, indent=1) + "\n")


def read_probe_reports(run_dir):
    """The probes' report declarations the bench recorded for this run, in the order the probes ran; None for a run
    written before probes declared their sections."""
    path = Path(run_dir) / PROBE_REPORTS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["probes"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CorruptResults(f"{path}: not the probes' report declarations (delete it; the next bench writes it "
                             "again)") from None
