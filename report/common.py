"""What every part of the report shares: the variants in their order, the theory table, flat config fields and those
that vary across a run, scale names, Markdown."""

import math
from pathlib import Path

import yaml

from satbench.harness.results import LEFT_OUT_AT_DEFAULT

THEORY_PATH = Path(__file__).with_name("theory.yaml")
# The attention variants in the order of every table and figure: theory.yaml's, which has an entry for each variant
# models/attention.py registers (tests/test_layering.py checks), then its recurrent model kinds. The report reads rows,
# not models, so it takes the names from there; a variant the rows hold and theory.yaml lacks sorts after them.
_THEORY = yaml.safe_load(THEORY_PATH.read_text())
ATTENTION_VARIANTS = list(_THEORY["variants"])
VARIANT_ORDER = ATTENTION_VARIANTS + list(_THEORY.get("kinds", []))  # then the recurrent model kinds


def variant_rank(variant):
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def ordered_variants(seen):
    """The variants in `seen`, in the report's order."""
    return sorted(set(seen), key=lambda v: (variant_rank(v), v))


def ordered_languages(seen):
    """The languages in the order they first appear in `seen`. The report reads rows in the order of the grid's cells
    (harness/results.py, `load_rows_with_config`), whose outermost axis is the config's language list: so every table
    and figure shows the languages in the order the config names them."""
    return list(dict.fromkeys(seen))


def report_order(languages):
    """A sort key for pandas' sort_index and sort_values: variants in the report's order, languages in the order of
    `languages` (a name marked with a dagger, `name †`, sorts as its name), every other level as it is."""
    rank = {name: i for i, name in enumerate(languages)}

    def key(level):
        if level.name == "variant":
            return level.map(variant_rank)
        if level.name == "language":
            return level.map(lambda name: rank.get(str(name).removesuffix(" †"), len(rank)))
        return level

    return key


# ModelConfig.positional's default (models/recognizer.py): the encoding of a row whose config does not name one. The
# report reads rows, not models, so it cannot ask ModelConfig; tests/test_report_common.py checks that the two agree.
DEFAULT_POSITIONAL = "sinusoidal"
WORDS = ("yes", "no", "open")


def load_theory():
    """report/theory.yaml with every prediction a word of WORDS, or a mapping from positional encodings to words with
    a `default` (the schema is described at the top of the file). Read predictions through `predicted`."""
    theory = yaml.safe_load(THEORY_PATH.read_text())
    for language, entry in theory["languages"].items():
        for variant in VARIANT_ORDER:
            if variant in entry:
                entry[variant] = _prediction(entry[variant], f"{language}.{variant}")
    return theory


def _prediction(value, where):
    # YAML 1.1 reads yes/no as booleans.
    word = {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value
    if isinstance(word, dict):
        by_positional = {str(key): _prediction(v, f"{where}.{key}") for key, v in word.items()}
        if "default" not in by_positional:
            raise ValueError(f"report/theory.yaml: {where}: a prediction by positional encoding needs a `default`")
        return by_positional
    if word not in WORDS:
        raise ValueError(f"report/theory.yaml: {where}: {value!r} is not one of {', '.join(WORDS)} or a mapping by "
                         "positional encoding")
    return word


def predicted(entry, variant, positional=None):
    """What theory predicts for `variant` under the positional encoding `positional` (None: DEFAULT_POSITIONAL), from a
    language's entry of `load_theory`: yes, no or open; None where the entry has no prediction."""
    value = entry.get(variant)
    if isinstance(value, dict):
        return value.get(positional or DEFAULT_POSITIONAL, value["default"])
    return value


def prediction_words(value):
    """A prediction as text: the word, or `yes with fraction, else open` for one that depends on the encoding."""
    if not isinstance(value, dict):
        return value
    named = ", ".join(f"{word} with {positional}" for positional, word in value.items() if positional != "default")
    return f"{named}, else {value['default']}"


def flatten(config, prefix=""):
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Every table splits by these already (seed: over seeds; model.kind and model.attention: the variant, `variant_of`).
SPLIT_ALWAYS = {"language", "seed", "model.attention", "model.kind"}


# The model.kind with attention. The harness measures no attention of any other kind (lstm, rnn, a plugin's model:
# harness/run.py), so their rows have no scale sweep, no saturated limit and no attention probes.
TRANSFORMER = "transformer"


def model_kind(row) -> str:
    return row["config"]["model"].get("kind", TRANSFORMER)


def variant_of(row) -> str:
    """What the tables call a row's model: its attention variant, or its model.kind where that is not a
    transformer (lstm, rnn, a plugin's)."""
    kind = model_kind(row)
    return row["config"]["model"]["attention"] if kind == TRANSFORMER else kind


def left_out_words(rows) -> list[str]:
    """For a section about attention, which the rows of other model kinds are missing from: where `rows` mix
    transformers with such kinds, the sentence (and its blank line) that says why they are not there; else []."""
    kinds = {model_kind(row) for row in rows}
    without = sorted(kinds - {TRANSFORMER})
    if TRANSFORMER not in kinds or not without:
        return []
    names = ", ".join(f"`{kind}`" for kind in without)
    return [f"The {names} cells are left out: the harness measures attention in its own transformer only.", ""]


def flat_config(row) -> dict:
    """A row's config as flat fields, a field the bench leaves out at its default (LEFT_OUT_AT_DEFAULT) read as that
    default: an axis of a default and one other value varies, though only one of its values is written."""
    flat = flatten(row["config"])
    for section, defaults in LEFT_OUT_AT_DEFAULT.items():
        for key, default in defaults.items():
            flat.setdefault(f"{section}.{key}", default)
    return flat


def varying_fields(rows) -> list[str]:
    """Flat config fields (such as train.weight_decay) that take more than one value across the rows."""
    values: dict[str, set] = {}
    for row in rows:
        for key, value in flat_config(row).items():
            values.setdefault(key, set()).add(repr(value))
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in SPLIT_ALWAYS)


def setting(row, fields):
    """The values of the flat config `fields` in one row; a list (train.aux_losses) as its text, which pandas can
    group by."""
    flat = flat_config(row)
    return {field: str(flat[field]) if isinstance(flat[field], (list, dict)) else flat[field] for field in fields}


UNIFORM = "uniform"  # the scale name of the uniform-attention control (probes/evaluate.py, eval.uniform_control)


def scale_value(name):
    """The number a scale name stands for, by which scales sort: the uniform control is the c -> 0 end of the sweep
    (softmax(c s) tends to uniform weights as c -> 0), so 0, before every c; "inf" the saturated limit."""
    if name == UNIFORM:
        return 0.0
    return math.inf if name == "inf" else float(name)


def scale_heading(name):
    """A table's heading for a scale: `c=4`, `c=inf`, and `uniform` for the control."""
    return UNIFORM if name == UNIFORM else f"c={name}"


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


def theory_cell(language, theory, positional=None):
    """soft / saturated / hard as theory predicts them: under `positional` when given, else with every encoding the
    prediction depends on spelled out."""
    entry = theory["languages"].get(language)
    if not entry:
        return "—"
    if positional is None:
        return " / ".join(prediction_words(entry[v]) if v in entry else "—" for v in ATTENTION_VARIANTS)
    return " / ".join(predicted(entry, v, positional) or "—" for v in ATTENTION_VARIANTS)
