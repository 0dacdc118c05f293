"""Formal languages with exact membership oracles and exact samplers: plain Python and numpy, no tensors (the datasets
built from them are satbench.data).

Importing the package registers the built-in languages; plugins (entry-point group `satbench.languages`) are loaded
the first time a name is looked up that is not built in, or when all names are listed.
"""

from satbench.languages import automata, context_free, context_sensitive, counter, dyck, regular  # noqa: F401  (importing a family file registers its languages)
from satbench.languages.base import (
    BOS,
    EOS,
    FIRST_SYMBOL,
    PAD,
    PLUGIN_GROUP,
    Language,
    PluginError,
    UnknownLanguage,
    get_language,
    language_names,
    load_plugins,
    register,
)
from satbench.languages.regular import DFALanguage

__all__ = [
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "PAD",
    "PLUGIN_GROUP",
    "DFALanguage",
    "Language",
    "PluginError",
    "UnknownLanguage",
    "get_language",
    "language_names",
    "load_plugins",
    "register",
]
