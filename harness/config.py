"""Bench configs: a YAML grid, checked against typed sections, expanded into cells.

A config has the top-level keys `name`, `languages`, `seeds` and the sections `model`, `data`, `train`, `eval`,
`probes`. Each section is a dataclass that lives with the code it configures (ModelConfig in models/recognizer.py,
TrainConfig in models/train.py, DataConfig in data/dataset.py, EvalConfig in probes/evaluate.py, ProbeConfig in
probes/registry.py) and checks its own values. Any scalar field may be given as a list instead: the list is an axis,
and the grid is the product of all axes, except for axes named together under the top-level key `zip`, which move in
step:

    model: {layer_norm: [pre, branch], bias: [true, false]}
    zip: [[model.layer_norm, model.bias]]     # pre-LN with biases, or the homogeneous block without: 2 cells, not 4

A cell is one fully resolved point of the grid: one language, one seed, and one typed object per section, built and
checked here once; the objects travel down to where each field acts (cell.model to the Recognizer, cell.train to
training, cell.eval to the recognition probe). `Cell.as_dict` is what rows, hashes and grid_cells.json record.

Every check runs before any work, so a typo costs one line and nothing is written.
"""

import copy
import dataclasses
import difflib
import itertools
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from satbench.data import DataConfig
from satbench.languages import get_language
from satbench.models import ModelConfig, get_variant
from satbench.models.kinds import check_kind, stackable
from satbench.models.recurrent import RECURRENT_KINDS
from satbench.models.train import TrainConfig
from satbench.probes.evaluate import EvalConfig
from satbench.probes.registry import ProbeConfig

from . import results
from .results import LEFT_OUT_AT_DEFAULT, canonical_json, encode_inf, read_yaml  # noqa: F401  (used via C.)


class ConfigError(ValueError):
    """One line naming the key and what is wrong with it."""


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "probes": ProbeConfig}
TOP_LEVEL = {"name", "languages", "seeds", "vocab_size", "zip", *SECTIONS}
# Fields of ModelConfig the harness fills in itself.
DERIVED = {"model.vocab_size", "model.next_symbols", "model.aux_heads"}
# Fields of the transformer alone: an axis of them takes its first value in the cells of a recurrent model.kind.
TRANSFORMER_ONLY = {"attention", "surrogate", "anneal_max", "tol", "tolerant_tol", "positional", "layer_norm", "causal",
                    "n_heads", "max_len", "qk_norm", "attention_scale", "bos_key", "d_ff"}
DEFAULT_VOCAB_SIZE = 8  # 3 specials + up to 5 symbols; fixed per config so a cell never depends on its neighbours


def _suggest(word, options):
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- type checks -----------------------------------------------------------------------------------------------

INFINITY = ("inf", ".inf", "infinity")  # how a YAML config writes infinity (YAML 1.1 reads only .inf as a float)


def _is_infinity(value):
    return isinstance(value, str) and value.strip().lower() in INFINITY


def _with_infinity(value, annotation):
    """`value` with each word for infinity where the field (or its list or tuple) holds floats as math.inf; numbers
    and the words of other fields as they are."""
    origin, parts = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        kinds = parts if origin is tuple else parts * len(value)
        return [_with_infinity(v, kind) for v, kind in zip(value, kinds)]
    floats = annotation is float or origin in (typing.Union, types.UnionType) and float in parts
    return math.inf if floats and _is_infinity(value) else value


def _is_scalar(value, kind):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) or _is_infinity(value)
    return isinstance(value, kind)


def _matches(value, annotation):
    """Does `value` (as YAML parsed it) fit the field's annotation?"""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        parts = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and len(value) == len(parts) and all(
            _matches(v, p) for v, p in zip(value, parts))
    if origin is list:
        (part,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, part) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    return _is_scalar(value, annotation)


def _type_name(annotation):
    """How an error names the type a field wants: 'an int', 'a str', 'a list of 2 ints' (YAML writes a tuple as a
    list)."""
    if typing.get_origin(annotation) is tuple:
        parts = typing.get_args(annotation)
        return f"a list of {len(parts)} {_type_name(parts[0]).split(' ', 1)[1]}s"
    name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _axis_values(path, value, annotation):
    """The list of values this field takes across the grid (one value when it is not an axis): a value that fits the
    field's type is one value (a list-typed field such as eval.scales takes a list), a list of such values an axis."""
    if _matches(value, annotation):
        return [_with_infinity(list(value) if isinstance(value, tuple) else value, annotation)]
    if isinstance(value, list) and value and all(_matches(v, annotation) for v in value):
        return [_with_infinity(v, annotation) for v in value]
    if annotation is float and _is_scalar(value, int):
        return [float(value)]
    raise ConfigError(f"{path}: {value!r} is not {_type_name(annotation)} (or a list of them, for an axis)")


# --- loading ---------------------------------------------------------------------------------------------------

def load_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = read_yaml(path, ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    raw.setdefault("name", path.stem)
    return raw


def apply_overrides(raw, overrides):
    """`train.steps=300 seeds=[0,1]`: each value is parsed as YAML and set at its dotted path."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[leaf] = value
    return raw


@dataclass
class Cell:
    """One point of the grid: a language, a seed and the typed section objects the code acts on."""

    language: str
    seed: int
    vocab_size: int
    model: ModelConfig  # with vocab_size and the next-symbol head filled in by the harness
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig
    probes: ProbeConfig

    def as_dict(self) -> dict:
        """The cell as rows, hashes and grid_cells.json record it: plain values, without the model fields the
        harness derives and without LEFT_OUT_AT_DEFAULT fields at their default."""
        out = {"language": self.language, "seed": self.seed, "vocab_size": self.vocab_size}
        for section in SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            for derived in DERIVED:
                if derived.startswith(f"{section}."):
                    del values[derived.split(".", 1)[1]]
            for key, default in LEFT_OUT_AT_DEFAULT.get(section, {}).items():
                if values[key] == default:
                    del values[key]
            out[section] = {k: _plain(v) for k, v in values.items()}
        return out


def _plain(value):
    """Tuples as lists, at any depth: the cell as JSON and YAML read it back."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def cell_hash(cell: Cell) -> str:
    return results.cell_hash(cell.as_dict())


@dataclass
class Grid:
    name: str
    raw: dict  # the config as given, after overrides: what the run directory records
    cells: list[Cell]


def expand(raw):
    """Check every key and value, then return the grid: its cells, each a typed Cell."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"unknown key '{key}'{_suggest(key, TOP_LEVEL)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"name: {name!r} must be a non-empty string without '/'")

    languages = raw.get("languages")
    if isinstance(languages, str):
        languages = [languages]
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise ConfigError("languages: expected a non-empty list of language names")
    if languages == ["all"]:
        from satbench.languages import language_names
        languages = language_names()
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(_is_scalar(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"seeds: {seeds!r} must be a non-empty list of non-negative integers")
    vocab_size = raw.get("vocab_size", DEFAULT_VOCAB_SIZE)
    if not _is_scalar(vocab_size, int) or vocab_size < 3:
        raise ConfigError(f"vocab_size: {vocab_size!r} must be an integer >= 3")
    for language in languages:
        needed = get_language(language).vocab_size  # unknown names raise with a suggestion
        if needed > vocab_size:
            raise ConfigError(f"vocab_size: {vocab_size} is too small for '{language}', which needs {needed}")

    axes = {"language": languages, "seed": seeds}
    for section, cls in SECTIONS.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{section}: expected a mapping, got {given!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f"{section}.{f.name}" not in DERIVED}
        for key in given:
            if key not in fields:
                raise ConfigError(f"unknown key '{section}.{key}'{_suggest(key, fields)}")
        for key, annotation in fields.items():
            if key in given:
                axes[f"{section}.{key}"] = _axis_values(f"{section}.{key}", given[key], annotation)

    cells = []
    for flat in _points(axes, raw.get("zip", [])):
        cell = {"language": flat.pop("language"), "seed": flat.pop("seed"), "vocab_size": vocab_size}
        for section in SECTIONS:
            cell[section] = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(section + ".")}
        if cell["model"].get("kind", "transformer") in RECURRENT_KINDS:
            # The transformer's fields mean nothing to a recurrent model: an axis of them takes its first value, so
            # that a grid whose attention axis meets model.kind lstm gives one lstm cell per language and seed; and
            # it has no soft phase to switch out of. (A plugin's model may read any field: its cells stay as given.)
            for key in TRANSFORMER_ONLY & set(cell["model"]):
                cell["model"][key] = axes[f"model.{key}"][0]
            cell["train"].pop("soft_steps", None)
        cells.append(resolve(cell))
    cells = list({cell_hash(cell): cell for cell in cells}.values())  # the same cell twice trains once
    for cell in cells:
        check_kind(cell.model.kind)
        lo, hi = cell.data.test_lengths
        for a, b in cell.eval.length_bins or []:
            if not lo <= a <= b <= hi:
                raise ConfigError(f"eval.length_bins: [{a}, {b}] is not inside data.test_lengths [{lo}, {hi}]; "
                                  "a bin with no test strings measures nothing")
        if cell.train.soft_steps and not get_variant(cell.model.attention).exact:
            # Its soft phase would be the variant itself, and the optimizer and schedule would restart for nothing.
            raise ConfigError(f"train.soft_steps: {cell.train.soft_steps} steps of soft attention first is for exact "
                              f"variants; model.attention {cell.model.attention} is not one (give soft_steps in a "
                              "zip with model.attention, 0 for it)")
        if cell.train.aux_losses and cell.data.label_kind != "membership":
            raise ConfigError(f"train.aux_losses: {cell.train.aux_losses} are terms beside the membership task; "
                              f"data.label_kind {cell.data.label_kind} trains on per-prefix labels already")
        if "next_symbols" in cell.train.aux_losses and get_language(cell.language).next_symbols("") is None:
            raise ConfigError(f"train.aux_losses: next_symbols needs languages that define next_symbols; "
                              f"'{cell.language}' does not")
        shortest = min(cell.data.train_lengths[0], cell.data.test_lengths[0],
                       *(cell.data.validation_lengths or [math.inf])[:1])
        if not cell.model.bos_key and shortest < 1:
            raise ConfigError("model.bos_key: false leaves the empty string's query no key; give data.train_lengths, "
                              "data.test_lengths and data.validation_lengths from 1")
        if cell.eval.select == "validation" and not cell.data.validation_size:
            raise ConfigError("eval.select: validation chooses a checkpoint on a validation split; give "
                              "data.validation_size (strings of the training lengths, e.g. 1000)")
        if cell.data.label_kind != "membership" and not cell.model.causal:
            raise ConfigError(f"model.causal: data.label_kind {cell.data.label_kind} labels every prefix, "
                              "which a bidirectional model sees past (position i would read the symbol it predicts)")
        if cell.data.label_kind == "next_symbols" and get_language(cell.language).next_symbols("") is None:
            raise ConfigError(f"data.label_kind: next_symbols needs languages that define next_symbols; "
                              f"'{cell.language}' does not")
    return Grid(name=name, raw=raw, cells=cells)


def _points(axes, zipped):
    """Every point of the grid as a flat {path: value}: the product of the axes, where each group of `zipped` paths
    counts as one axis whose i-th value sets the i-th value of every path in it."""
    if not isinstance(zipped, list) or not all(isinstance(g, list) and len(g) > 1 and all(isinstance(p, str) for p in g)
                                               for g in zipped):
        raise ConfigError(f"zip: {zipped!r} must be a list of lists of two or more field paths such as model.bias")
    grouped = {}  # first path of a group or lone axis -> (paths, list of value tuples)
    seen = set()
    for group in zipped:
        for path in group:
            if path not in axes:
                raise ConfigError(f"zip: '{path}' is not a field given in the config")
            if path in seen:
                raise ConfigError(f"zip: '{path}' is named in two groups")
            seen.add(path)
        lengths = {path: len(axes[path]) for path in group}
        if len(set(lengths.values())) > 1:
            raise ConfigError("zip: " + ", ".join(f"{p} has {n} values" for p, n in lengths.items())
                              + "; zipped axes need the same number")
        grouped[group[0]] = (group, list(zip(*(axes[path] for path in group))))
    for path, values in axes.items():
        if path not in seen:
            grouped[path] = ([path], [(v,) for v in values])
    for combination in itertools.product(*(values for _, values in grouped.values())):
        flat = {}
        for (paths, _), values in zip(grouped.values(), combination):
            flat.update(zip(paths, values))
        yield flat


def resolve(cell) -> Cell:
    """Fill in defaults and run each section's checks, once: the typed cell of a point given as plain values."""
    built = {}
    # The model last: it takes fields the harness derives from the other sections, whose own errors come first.
    for section, cls in sorted(SECTIONS.items(), key=lambda item: item[0] == "model"):
        given = dict(cell.get(section, {}))
        if section == "model":
            given["vocab_size"] = cell["vocab_size"]
            # The next-symbol task's head follows from data.label_kind, not from a model field.
            given["next_symbols"] = cell.get("data", {}).get("label_kind") == "next_symbols"
            given["aux_heads"] = tuple(cell.get("train", {}).get("aux_losses", ()))
        try:
            built[section] = cls(**given)
        except ConfigError:
            raise
        except (ValueError, TypeError) as error:
            message = str(error)
            raise ConfigError(message if message.startswith(section) else f"{section}: {message}") from None
    return Cell(language=cell["language"], seed=cell["seed"], vocab_size=cell["vocab_size"], **built)


def load_grid(path, overrides=()):
    return expand(apply_overrides(load_yaml(path), overrides))


# --- cells -----------------------------------------------------------------------------------------------------

# Fields that may differ between the members of one stacked ensemble: each member has its own data, initial
# weights and weight decay.
PER_MEMBER = ("language", "seed", "train.weight_decay")


def group_key(cell: Cell) -> str:
    """Cells that differ only in per-member fields share a model shape and recipe: one stacked ensemble."""
    shared = cell.as_dict()
    if not stackable(cell.model.kind):  # a plugin's model that cannot be stacked trains one member at a time
        return results.canonical_json(shared)
    for path in PER_MEMBER:
        section, _, key = path.rpartition(".")
        (shared[section] if section else shared).pop(key)
    return results.canonical_json(shared)
