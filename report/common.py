"""What every part of the report shares: the variants in their order, the theory table, flat config fields and those
that vary across a run, scale names, Markdown."""

import math
from pathlib import Path

import yaml

THEORY_PATH = Path(__file__).with_name("theory.yaml")
# The attention variants in the order of every table and figure: theory.yaml's, which has an entry for each variant
# models/attention.py registers (tests/test_layering.py checks). The report reads rows, not models, so it takes the
# names from there; a variant the rows hold and theory.yaml lacks sorts after them.
VARIANT_ORDER = list(yaml.safe_load(THEORY_PATH.read_text())["variants"])


def variant_rank(variant):
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def ordered_variants(seen):
    """The variants in `seen`, in the report's order."""
    return sorted(set(seen), key=lambda v: (variant_rank(v), v))


def load_theory():
    theory = yaml.safe_load(THEORY_PATH.read_text())
    # YAML 1.1 reads yes/no as booleans.
    word = lambda v: {True: "yes", False: "no"}.get(v, v)  # noqa: E731
    for entry in theory["languages"].values():
        for variant in VARIANT_ORDER:
            if variant in entry:
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


SPLIT_ALWAYS = {"language", "seed", "model.attention"}  # every table splits by these already (seed: over seeds)


def varying_fields(rows) -> list[str]:
    """Flat config fields (such as train.weight_decay) that take more than one value across the rows."""
    values: dict[str, set] = {}
    for row in rows:
        for key, value in flatten(row["config"]).items():
            values.setdefault(key, set()).add(repr(value))
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in SPLIT_ALWAYS)


def setting(row, fields):
    """The values of the flat config `fields` in one row."""
    flat = flatten(row["config"])
    return {field: flat[field] for field in fields}


def scale_value(name):
    return math.inf if name == "inf" else float(name)


# Rendered on a laptop, a Markdown table of more columns than this wraps into illegibility.
MAX_COLUMNS = 12


def markdown(frame):
    """A pandas table as Markdown (through tabulate); a multi-level row index becomes one column per level rather
    than a column of tuples. A table wider than MAX_COLUMNS is printed as several, each repeating the row labels."""
    room = max(1, MAX_COLUMNS - frame.index.nlevels)
    parts = [frame.iloc[:, start:start + room] for start in range(0, max(1, frame.shape[1]), room)]
    if frame.index.nlevels > 1:
        return "\n\n".join(part.reset_index().to_markdown(index=False) for part in parts)
    return "\n\n".join(part.to_markdown() for part in parts)


def theory_cell(language, theory):
    entry = theory["languages"].get(language)
    if not entry:
        return "—"
    return " / ".join(entry.get(v, "—") for v in VARIANT_ORDER)
