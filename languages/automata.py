"""Regular languages as data: one YAML file per deterministic finite automaton, loaded into a registered DFALanguage.

A file holds (keys in any order; * = required):

    name*          the language's name: lower-case letters, digits and _, from a letter on
    definition*    one line, printed in the language table of docs/languages.md
    alphabet*      the symbols, as one quoted string of distinct single characters ("01", "ab")
    transitions*   state -> {symbol: next state}; a symbol with no arrow goes to an implicit rejecting sink
    start*         the start state
    accepting*     the list of accepting states
    states         the list of states; by default the states that have a transitions entry. Name every state there
                   when some state has no arrow out (a final state, for instance)
    family         default regular
    sources        the peer studies that use the language, by the keys of report/theory.yaml's `sources`
    decided_by     the shortcuts that decide membership by definition: a list from length, parity, counts
    negative_mixture  weights of the negative kinds edit, shuffle, random (default 0.5, 0.25, 0.25; a file has no
                   near misses)
    note           more text for the docstring: where the language comes from, where peers define it differently

The language is exactly what DFALanguage makes of the automaton: exact membership, counts, uniform samples by path
counting, next_symbols from the live states. Folders of such files are read from three places: the built-in folder
languages/automata/ on import of the `languages` package, and, when plugins are loaded (the first lookup of a name
that is not built in, or a listing), every folder named in the environment variable SATBENCH_AUTOMATA (separated by
os.pathsep) and every folder that a plugin's entry point in the group `satbench.languages` names as a str or Path.
Any problem with a file is a PluginError of one line that names the file.
"""

import os
from pathlib import Path

import yaml

import satbench.languages.base as base
from satbench.languages.base import NAME_PATTERN, PluginError, register
from satbench.languages.regular import DFALanguage

BUILTIN_FOLDER = Path(__file__).with_name("automata")
ENVIRONMENT_VARIABLE = "SATBENCH_AUTOMATA"
REQUIRED = ("name", "definition", "alphabet", "transitions", "start", "accepting")
OPTIONAL = ("states", "family", "sources", "decided_by", "negative_mixture", "note")
SHORTCUTS = ("length", "parity", "counts")


def load_file(path) -> type[DFALanguage]:
    """Register the language of one YAML automaton and return its class (the same class when the file was loaded
    before, so that loading a folder twice is harmless)."""
    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise PluginError(f"{path}: cannot be read: {error}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PluginError(f"{path}: not valid YAML: {line}{problem}") from None
    try:
        attributes = _attributes(data)
    except ValueError as error:
        raise PluginError(f"{path}: {error}") from None
    attributes["automaton_file"] = path
    existing = base._REGISTRY.get(attributes["name"])
    if existing is not None:
        if getattr(existing, "automaton_file", None) == path:
            return existing
        where = getattr(existing, "automaton_file", None) or f"{existing.__module__}.{existing.__qualname__}"
        raise PluginError(f"{path}: language '{attributes['name']}' is already defined by {where}")
    cls = type(attributes["name"], (DFALanguage,), attributes)
    try:
        return register(cls)
    except PluginError as error:
        raise PluginError(f"{path}: {error}") from None


def load_folder(folder, origin: str | None = None) -> list[type[DFALanguage]]:
    """Register every *.yaml file of a folder, in the order of their names. `origin` says who named the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        who = f"{origin} names" if origin else "the automata folder"
        raise PluginError(f"{who} {str(folder)!r}, which is not a folder")
    return [load_file(path) for path in sorted(folder.glob("*.yaml"))]


def load_plugin_folders(plugin_folders=()) -> None:
    """Register the automata of the folders named by SATBENCH_AUTOMATA, then of the (origin, folder) pairs that plugins
    name. load_plugins calls this, so that a bad folder or file is reported in one line on a lookup, not on import."""
    for folder in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep):
        if folder:
            load_folder(folder, ENVIRONMENT_VARIABLE)
    for origin, folder in plugin_folders:
        load_folder(folder, origin)


# ---- validation: the YAML mapping -> class attributes ---------------------------------------------------------


def _attributes(data) -> dict:
    """The class attributes of a DFALanguage from a file's mapping; a ValueError says what is wrong, in one line."""
    if not isinstance(data, dict):
        raise ValueError(f"must be a mapping of keys ({', '.join(REQUIRED)}, ...), not {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in REQUIRED + OPTIONAL)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(REQUIRED + OPTIONAL)})")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"missing key {missing[0]!r}")

    name = data["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r} must be lower-case letters, digits and _, from a letter on")
    definition = data["definition"]
    if not isinstance(definition, str) or not definition.strip() or "\n" in definition.strip():
        raise ValueError("definition must be one line of text")
    alphabet = data["alphabet"]
    if not isinstance(alphabet, str):
        raise ValueError(f"alphabet must be a quoted string of symbols such as \"01\", not {alphabet!r} "
                         "(YAML reads unquoted digits as a number)")
    if not alphabet or len(set(alphabet)) != len(alphabet) or any(c.isspace() for c in alphabet):
        raise ValueError(f"alphabet {alphabet!r} must be distinct non-space symbols")

    transitions = data["transitions"]
    if not isinstance(transitions, dict):
        raise ValueError("transitions must map each state to {symbol: next state}")
    if data.get("states") is None:
        states = [_state(q, "transitions") for q in transitions]
    elif isinstance(data["states"], list):
        states = [_state(q, "states") for q in data["states"]]
    else:
        raise ValueError("states must be a list of state names")
    declared = set(states)

    def known(q, where):
        q = _state(q, where)
        if q not in declared:
            raise ValueError(f"{where} names the state {q!r}, which is not declared (states: {', '.join(states)})")
        return q

    table = {q: {} for q in states}
    for q, arrows in transitions.items():
        q = known(q, "transitions")
        if arrows is None:
            continue
        if not isinstance(arrows, dict):
            raise ValueError(f"transitions of state {q!r} must map symbols to states, not {arrows!r}")
        for symbol, target in arrows.items():
            # YAML reads an unquoted digit as a number: 0 and "0" are the same symbol here.
            symbol = str(symbol) if isinstance(symbol, int) and not isinstance(symbol, bool) else symbol
            if not isinstance(symbol, str) or len(symbol) != 1 or symbol not in alphabet:
                raise ValueError(f"transition {q!r} --{symbol!r}--> uses a symbol outside the alphabet {alphabet!r}")
            table[q][symbol] = known(target, f"transition {q!r} --{symbol!r}-->")

    accepting = data["accepting"]
    if not isinstance(accepting, list):
        raise ValueError("accepting must be a list of states")
    note = data.get("note")
    if note is not None:
        _text(note, "note")
    attributes = {
        "__doc__": definition.strip() + (f"\n\n{note.strip()}" if note else ""),
        "__module__": __name__,
        "name": name,
        "definition": definition.strip(),
        "alphabet": alphabet,
        "transitions": table,
        "start": known(data["start"], "start"),
        "accepting": frozenset(known(q, "accepting") for q in accepting),
        "family": _text(data.get("family", "regular"), "family"),
        "sources": tuple(_text(key, "sources") for key in _list(data.get("sources", []), "sources")),
    }
    decided_by = _list(data.get("decided_by", []), "decided_by")
    if any(shortcut not in SHORTCUTS for shortcut in decided_by):
        raise ValueError(f"decided_by {decided_by} may hold only {', '.join(SHORTCUTS)}")
    attributes["decided_by"] = frozenset(decided_by)
    if "negative_mixture" in data:
        mixture = data["negative_mixture"]
        if not isinstance(mixture, dict) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                    for w in mixture.values()):
            raise ValueError("negative_mixture must map negative kinds to numbers")
        attributes["negative_mixture"] = dict(mixture)
    return attributes


def _state(q, where):
    """State names are strings; YAML's numbers are taken as their text, its booleans (yes, no, on, off) refused."""
    if isinstance(q, bool) or not isinstance(q, (str, int, float)):
        raise ValueError(f"{where}: state {q!r} must be a name (quote yes, no, on, off, true, false: YAML reads them "
                         "as booleans)")
    return str(q)


def _text(value, key):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be text, not {value!r}")
    return value


def _list(value, key):
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list, not {value!r}")
    return value


base.load_automata = load_plugin_folders
load_folder(BUILTIN_FOLDER)
