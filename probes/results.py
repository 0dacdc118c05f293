"""The rows of a run: one JSON line per finished cell, appended atomically, read back with torn lines repaired.

A run directory holds `config.yaml` (the grid as run) and one or more rows files `cells*.jsonl` (one per shard when a
bench is split). A kill in mid-write can leave a last line without its newline; reading repairs the file by cutting
that line off, so its cell counts as unfinished and is rerun.
"""

import gzip
import json
import os
from pathlib import Path

ROWS_GLOBS = ("cells*.jsonl", "cells*.jsonl.gz")  # gzip: published runs, read-only


class CorruptResults(ValueError):
    pass


def _rounded(obj, digits=6):
    """Floats to `digits` significant digits: measured accuracies carry no more, and rows stay small."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    return obj


def append_row(path, row):
    """One write of one complete line on an O_APPEND descriptor, then fsync: a reader sees all of it or none."""
    line = (json.dumps(_rounded(row), sort_keys=True, allow_nan=True) + "\n").encode()
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


def read_rows(path, fix=True):
    """Rows of one file. A torn last line is repaired (or skipped, with fix=False); a bad line elsewhere is an error."""
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


def check_one_config(run_dir, expected):
    """Refuse a run whose rows were written under another config than the one it records (`grid_hash` of each row).

    Shards started by hand with different overrides, or shard files copied in from another run, would otherwise mix
    into one report. Rows without `grid_hash` (written by hand, or by an older satbench) are let through.
    """
    for path in rows_files(run_dir):
        if any(row.get("grid_hash", expected) != expected for row in read_rows(path, fix=False)):
            raise CorruptResults(f"{path}: rows of another config than {Path(run_dir) / 'config.yaml'} (shards run "
                                 "with different configs?); move that file away, or rerun with --force")


def read_run(run_dir, fix=True):
    """All rows of a run directory, merged over its rows files; the latest row of a cell wins."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CorruptResults(f"no run directory at {run_dir}")
    by_hash = {}
    for path in rows_files(run_dir):
        for row in read_rows(path, fix=fix):
            by_hash[row["hash"]] = row
    return list(by_hash.values())
