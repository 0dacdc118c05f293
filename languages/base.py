"""The language interface, the registry, and the negative sampler every language inherits.

A language is a small class: a name, an alphabet, a one-line definition (its docstring's first line), an exact
membership oracle `accepts` and a sampler `sample` of members of an exact length. Everything else a dataset needs,
negatives above all, is derived here from those two, and every string handed out is checked by the oracle.
"""

import difflib
import importlib.metadata
import itertools
import os
import re
from bisect import bisect_right
from typing import ClassVar

import numpy as np

from satbench.languages.uniform_sampling import random_index

# Token ids shared by every language, so that one model shape can train on several languages. Symbol k of a
# language's alphabet gets id FIRST_SYMBOL + k.
PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3

PLUGIN_GROUP = "satbench.languages"

NEGATIVE_KINDS = ("near_miss", "edit", "shuffle", "random")
# What a drawn string is, recorded with every test string so that accuracy can be read per kind (a model that answers
# one kind of negative with a constant shows there): a member, a negative of one of NEGATIVE_KINDS, one the sampler
# settled by its fallback (enumeration of short strings or uniform random strings, when the mixture keeps failing), or
# one a language drew through its own `negative` method, whose kind the base class cannot know.
STRING_KINDS = ("member", *NEGATIVE_KINDS, "fallback", "own")
# What `satbench languages check` holds the shortcut baselines to: no language may be decidable from its length or
# length parity alone, and the counter languages not from their symbol counts either (ARCHITECTURE.md, "Rules of the
# house": length cannot decide).
LENGTH_BOUNDS = {"length": 0.6, "parity": 0.6}
COUNTS_BOUNDS = {**LENGTH_BOUNDS, "counts": 0.8}
# Draws of the mixture per negative before the sampler falls back to enumeration or to uniform random strings.
NEGATIVE_TRIES = 64
# Lengths whose |alphabet|^n strings are few enough to enumerate when the mixture cannot find a negative.
ENUMERATION_LIMIT = 4096


class UnknownLanguage(ValueError):
    """A name that is neither built in nor registered by a plugin; the message suggests the closest name."""

    def __init__(self, name, known):
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(known)
        super().__init__(f"unknown language '{name}' ({hint})")


class PluginError(ValueError):
    """A plugin that cannot be loaded or registered, or a language whose sampler disagrees with its own oracle."""


class Language:
    """Base class: set `name`, `family`, `alphabet`; write the definition as the docstring's first line."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    alphabet: ClassVar[str] = ""
    definition: ClassVar[str] = ""  # filled from the docstring's first line when a subclass does not set it

    # Relative weights of the negative sampler's sources. Kinds that cannot produce a negative for this language
    # (shuffles of a language closed under permutation) should be left out rather than filtered away at run time.
    negative_mixture: ClassVar[dict[str, float]] = {"near_miss": 0.4, "edit": 0.3, "shuffle": 0.2, "random": 0.1}
    # Shortcuts that decide membership by definition (subset of "length", "parity", "counts"): a baseline that
    # scores near 100% there is a fact about the language, printed and marked, not a leak in the data.
    decided_by: ClassVar[frozenset[str]] = frozenset()
    # Upper bounds `satbench languages check` holds the shortcut baselines to (those not in `decided_by`).
    shortcut_bounds: ClassVar[dict[str, float]] = LENGTH_BOUNDS
    # What the linear probes (probes/linear_probe.py) read off the hidden states at every prefix. `counters`: the
    # counts a counter machine for the language keeps, name -> (symbol counted up, symbol counted down); the target is
    # the count over the prefix length, (#up - #down) / i. `prefix_flag`: the name under which "this prefix is in the
    # language" (`prefix_accepts`) is probed; None leaves it out.
    counters: ClassVar[dict[str, tuple[str, str]]] = {}
    prefix_flag: ClassVar[str | None] = "prefix_member"
    # The peer studies that use this language, by the keys of report/theory.yaml's `sources` (bhattamishra2020 for
    # Bhattamishra, Ahuja & Goyal 2020; butoi2025 for FLaRe). The language table prints them.
    sources: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "definition" not in cls.__dict__ and cls.__doc__:
            cls.definition = cls.__doc__.strip().splitlines()[0].strip()

    # ---- what a language defines -------------------------------------------------------------------------------

    def accepts(self, s: str) -> bool:
        """Exact membership; total: a string with a symbol outside the alphabet is rejected, never an error."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> str | None:
        """A member of length exactly n, uniform over the members of that length; None when there is none."""
        raise NotImplementedError

    def near_misses(self, rng: np.random.Generator, s: str) -> list[str]:
        """Hard negatives built from the member s (the sampler keeps those of s's length that `accepts` rejects)."""
        return []

    def count(self, n: int) -> int | None:
        """The number of members of length n, where it is known exactly; None otherwise."""
        return None

    def prefix_accepts(self, s: str) -> list[bool]:
        """accepts(s[:i]) for i = 0 .. len(s). Languages override this with one left-to-right pass."""
        return [self.accepts(s[:i]) for i in range(len(s) + 1)]

    def next_symbols(self, s: str) -> list[str] | None:
        """For i = 0 .. len(s): the symbols c, in alphabet order, such that s[:i] + c begins some member.

        The target of the next-symbol task (Bhattamishra et al. 2020), whose end-of-string bit is `prefix_accepts`.
        None where the language does not define it; such a language cannot be trained on that task.
        """
        return None

    # ---- derived ----------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return FIRST_SYMBOL + len(self.alphabet)

    def encode(self, s: str) -> list[int]:
        """Token ids of the symbols of s (no BOS: the dataset builder adds it)."""
        ids = _symbol_ids(type(self))
        try:
            return [ids[c] for c in s]
        except KeyError as error:
            raise ValueError(f"{s!r} has symbol {error.args[0]!r} outside the alphabet {self.alphabet!r} "
                             f"of '{self.name}'") from None

    def strings_of_length(self, n: int) -> int:
        return len(self.alphabet) ** n

    def negative(self, rng: np.random.Generator, n: int, mixture: dict[str, float] | None = None) -> str | None:
        """A non-member of length exactly n, drawn from the declared mixture (or `mixture`, which a protocol preset
        may impose); None when length n has none.

        Kinds: language near misses of a member, edits of a member that keep the length (substitute, swap two
        symbols, insert one symbol and delete another), a shuffle of a window of a member (keeps the counts), and
        uniform random strings. Every candidate is checked by the oracle; a length where the mixture keeps failing
        is settled by enumeration (short strings) or by uniform random strings.
        """
        return self.negative_and_kind(rng, n, mixture)[0]

    def negative_and_kind(self, rng: np.random.Generator, n: int,
                          mixture: dict[str, float] | None = None) -> tuple[str | None, str | None]:
        """`negative` with the kind that produced it (one of STRING_KINDS; None with no negative). The same draws
        from `rng` as `negative`, so recording the kind leaves every dataset as it was."""
        _check_length(n)
        kinds, cumulative = _mixture(self.negative_mixture if mixture is None else mixture)
        member = self.sample(rng, n)
        if member is not None:
            for _ in range(NEGATIVE_TRIES):
                kind = kinds[bisect_right(cumulative, rng.random() * cumulative[-1])]
                candidate = self._negative_candidate(kind, rng, member)
                if candidate is not None and len(candidate) == n and not self.accepts(candidate):
                    return candidate, kind
        fallback = self._fallback_negative(rng, n)
        return fallback, None if fallback is None else "fallback"

    def _negative_candidate(self, kind, rng, member):
        if kind == "near_miss":
            options = self.near_misses(rng, member)
            return options[random_index(rng, len(options))] if options else None
        if kind == "edit":
            return edit(rng, member, self.alphabet)
        if kind == "shuffle":
            return shuffle_window(rng, member)
        return random_string(rng, len(member), self.alphabet)

    def _fallback_negative(self, rng, n):
        if self.strings_of_length(n) <= ENUMERATION_LIMIT:
            rejected = _rejected_strings(type(self), self, n)
            return rejected[random_index(rng, len(rejected))] if rejected else None
        known = self.count(n)
        if known is not None and known == self.strings_of_length(n):
            return None
        for _ in range(16 * NEGATIVE_TRIES):
            candidate = random_string(rng, n, self.alphabet)
            if not self.accepts(candidate):
                return candidate
        return None

    def __repr__(self):
        return f"<language {self.name}: {self.definition}>"


def checked_sample(language: Language, rng: np.random.Generator, n: int) -> str | None:
    """language.sample(rng, n), held to the language's own oracle: a disagreement is an error, never a bad label."""
    _check_length(n)
    s = language.sample(rng, n)
    if s is not None and (not isinstance(s, str) or len(s) != n or not language.accepts(s)):
        problem = f"has length {len(s)}" if isinstance(s, str) and len(s) != n else "is rejected by its own accepts()"
        raise PluginError(f"language '{language.name}': sample(rng, {n}) returned {s!r}, which {problem}")
    return s


def checked_negative(language: Language, rng: np.random.Generator, n: int, mixture=None) -> str | None:
    """language.negative(rng, n, mixture), held to the language's own oracle."""
    return checked_negative_and_kind(language, rng, n, mixture)[0]


def checked_negative_and_kind(language: Language, rng: np.random.Generator, n: int,
                              mixture=None) -> tuple[str | None, str | None]:
    """`checked_negative` with the negative's kind (STRING_KINDS). A language that overrides `negative` draws through
    its own method, as it always did; its negatives are of kind "own"."""
    _check_length(n)
    if type(language).negative is Language.negative:
        s, kind = language.negative_and_kind(rng, n, mixture)
    else:
        s = language.negative(rng, n) if mixture is None else language.negative(rng, n, mixture)
        kind = None if s is None else "own"
    if s is not None and (not isinstance(s, str) or len(s) != n or language.accepts(s)):
        problem = f"has length {len(s)}" if isinstance(s, str) and len(s) != n else "is accepted by accepts()"
        raise PluginError(f"language '{language.name}': negative(rng, {n}) returned {s!r}, which {problem}")
    return s, kind


# ---- generic edits ---------------------------------------------------------------------------------------------


def random_string(rng: np.random.Generator, n: int, alphabet: str) -> str:
    if len(alphabet) == 1:
        return alphabet * n
    return "".join(np.array(list(alphabet))[rng.integers(0, len(alphabet), size=n)])


def edit(rng: np.random.Generator, s: str, alphabet: str) -> str | None:
    """One length-keeping edit of s: substitute a symbol, swap two symbols, or insert one symbol and delete another."""
    n = len(s)
    if n == 0 or len(alphabet) < 2:
        return None
    op = random_index(rng, 3)
    if op == 0:
        i = random_index(rng, n)
        others = alphabet.replace(s[i], "")
        return s[:i] + others[random_index(rng, len(others))] + s[i + 1:]
    if op == 1:
        i, j = sorted((random_index(rng, n), random_index(rng, n)))
        return s[:i] + s[j] + s[i + 1:j] + s[i] + s[j + 1:] if s[i] != s[j] else None
    deleted = random_index(rng, n)
    rest = s[:deleted] + s[deleted + 1:]
    i = random_index(rng, n)
    return rest[:i] + alphabet[random_index(rng, len(alphabet))] + rest[i:]


def shuffle_window(rng: np.random.Generator, s: str) -> str | None:
    """s with the symbols of a random window (possibly all of s) permuted: the symbol counts stay the same."""
    n = len(s)
    if n < 2:
        return None
    width = 2 + random_index(rng, n - 1)
    start = random_index(rng, n - width + 1)
    window = list(s[start:start + width])
    rng.shuffle(window)
    return s[:start] + "".join(window) + s[start + width:]


# ---- caches per language class ---------------------------------------------------------------------------------

_SYMBOL_IDS: dict[type, dict[str, int]] = {}
_MIXTURES: dict[tuple, tuple] = {}
_REJECTED: dict[tuple[type, int], list[str]] = {}


def _symbol_ids(cls):
    if cls not in _SYMBOL_IDS:
        _SYMBOL_IDS[cls] = {c: FIRST_SYMBOL + k for k, c in enumerate(cls.alphabet)}
    return _SYMBOL_IDS[cls]


def _mixture(weights):
    key = tuple(weights.items())
    if key not in _MIXTURES:
        kinds = tuple(k for k, w in weights.items() if w > 0)
        _MIXTURES[key] = kinds, list(itertools.accumulate(weights[k] for k in kinds))
    return _MIXTURES[key]


def _rejected_strings(cls, language, n):
    key = (cls, n)
    if key not in _REJECTED:
        _REJECTED[key] = [s for s in map("".join, itertools.product(cls.alphabet, repeat=n))
                          if not language.accepts(s)]
    return _REJECTED[key]


# The longest string the samplers draw. They are exactly uniform: they unrank a big-integer rank among the members of
# length n using counts of n bits, so time and memory grow as n^2 (4096: at most about 2 s and a few MB per string
# on one core; 10^6 would need hours and terabytes). Models here are tested up to a few hundred symbols.
MAX_LENGTH = 4096


def _check_length(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"length must be an integer >= 0, got {n!r}")
    if n > MAX_LENGTH:
        raise ValueError(f"length {n} is above the samplers' limit of {MAX_LENGTH} (exact uniform sampling costs time "
                         "and memory growing as the square of the length; see languages.base.MAX_LENGTH)")


# ---- registry ---------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Language]] = {}
_INSTANCES: dict[str, Language] = {}
_plugins_loaded = False

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


def register(cls):
    """Class decorator: make a Language subclass known by its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Language)):
        raise PluginError(f"register expects a Language subclass, got {cls!r}")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls.name, str) or not NAME_PATTERN.fullmatch(cls.name):
        raise PluginError(f"{where}: name {cls.name!r} must be lower-case letters, digits and _, from a letter on")
    alphabet = cls.alphabet
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet) \
            or any(c.isspace() for c in alphabet):
        raise PluginError(f"language '{cls.name}': alphabet {alphabet!r} must be distinct non-space symbols")
    if not cls.definition or "\n" in cls.definition:
        raise PluginError(f"language '{cls.name}': needs a one-line definition (the docstring's first line)")
    for method in ("accepts", "sample"):
        if getattr(cls, method) is getattr(Language, method):
            raise PluginError(f"language '{cls.name}': {method}() is not implemented")
    unknown = set(cls.negative_mixture) - set(NEGATIVE_KINDS)
    if unknown or not any(w > 0 for w in cls.negative_mixture.values()) \
            or any(w < 0 for w in cls.negative_mixture.values()):
        raise PluginError(f"language '{cls.name}': negative_mixture {cls.negative_mixture} needs non-negative weights "
                          f"over {', '.join(NEGATIVE_KINDS)}, one of them positive")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise PluginError(f"language '{cls.name}' is defined twice: {existing.__module__}.{existing.__qualname__} "
                          f"and {where}")
    _REGISTRY[cls.name] = cls
    return cls


# Registers the YAML automata of the folders named by SATBENCH_AUTOMATA and of the (origin, folder) pairs it is given.
# languages/automata.py sets it on import: base cannot import that module, which builds on base.
load_automata = None


def load_plugins():
    """Register the languages of installed plugins (entry-point group `satbench.languages`), once per process.

    An entry point names a Language subclass, a module whose classes register themselves on import, or a folder (str
    or Path) of YAML automata. The folders named by SATBENCH_AUTOMATA are loaded here too.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    folders = []
    for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            loaded = entry.load()
        except Exception as error:
            raise PluginError(f"language plugin '{entry.name}' ({entry.value}) failed to load: "
                              f"{type(error).__name__}: {error}") from error
        if isinstance(loaded, (str, os.PathLike)):
            folders.append((f"language plugin '{entry.name}' ({entry.value})", loaded))
        elif isinstance(loaded, type) and issubclass(loaded, Language) and _REGISTRY.get(loaded.name) is not loaded:
            register(loaded)
    load_automata(folders)
    _plugins_loaded = True  # only after success: a broken plugin is reported on every lookup, not just the first


def language_names() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def registration_order() -> list[str]:
    """The registered names in the order they were registered (the built-in modules first, then plugins)."""
    load_plugins()
    return list(_REGISTRY)


def get_language(name: str | Language) -> Language:
    """The language registered as `name` (one shared instance, so its counting tables are built once)."""
    if isinstance(name, Language):
        return name
    if not isinstance(name, str):
        raise UnknownLanguage(name, language_names())
    if name not in _REGISTRY:
        load_plugins()
    if name not in _REGISTRY:
        raise UnknownLanguage(name, sorted(_REGISTRY))
    cls = _REGISTRY[name]
    if not isinstance(_INSTANCES.get(name), cls):
        _INSTANCES[name] = cls()
    return _INSTANCES[name]
