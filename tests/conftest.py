"""What several test modules share: one intra-op thread, the tiny bench grid, a scratch language registry with a lying
language, the example plugin on the path, and the check of a language's next-symbol sets against enumerated members."""

import copy
import itertools
import os
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from satbench import languages
from satbench.languages import base
from satbench.models import kinds

# The tests' models are tiny: a second intra-op thread only adds synchronisation, which on a busy machine, or with
# pytest-xdist's workers sharing its cores, costs far more than the work (the README test: 43 s instead of 12 s on two
# busy cores). The CLI and launcher processes that tests start inherit the setting through the environment.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Two languages x two seeds x two attention variants, small enough to train in seconds on a CPU. Tests take it through
# the `tiny_config` fixture and derive their own with harness.config.apply_overrides (which copies).
TINY = {
    "name": "tiny",
    "languages": ["first", "majority"],
    "seeds": [0, 1],
    "model": {"attention": ["soft", "hard"], "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32},
    "data": {"train_lengths": [1, 6], "test_lengths": [1, 9], "train_size": 200, "test_per_length": 6},
    "train": {"steps": 30, "batch_size": 16, "log_every": 10},
    "eval": {"scales": [1, "inf"]},
    "probes": {"enabled": False},
}


@pytest.fixture
def tiny_config():
    """A fresh copy of the tiny grid: a test may change it freely."""
    return copy.deepcopy(TINY)


@pytest.fixture
def registry(monkeypatch):
    """A scratch copy of the registry, so test languages do not leak into other tests."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_INSTANCES", dict(base._INSTANCES))
    return base._REGISTRY


PLUGIN_SOURCE = Path(__file__).parent / "plugin"


@pytest.fixture
def example_plugin(tmp_path, monkeypatch, registry):
    """tests/plugin laid out as pip installs it: its module next to a .dist-info folder (metadata and entry points, read
    off its pyproject.toml) in a folder put on sys.path, where importlib.metadata finds it like any installed
    distribution. The registry loads its plugins afresh; afterwards the folder leaves sys.path, the module
    sys.modules, and `registry` and monkeypatch put back the languages and the loaded-plugins flag as they were.
    Returns the folder, for the PYTHONPATH of a child process."""
    pyproject = tomllib.loads((PLUGIN_SOURCE / "pyproject.toml").read_text())
    project = pyproject["project"]
    modules = pyproject["tool"]["setuptools"]["py-modules"]
    site = tmp_path / "example_plugin"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    for module in modules:
        shutil.copy(PLUGIN_SOURCE / f"{module}.py", site)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items())
        for group, entries in project["entry-points"].items()))
    for module in modules:
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(site)
    monkeypatch.setattr(base, "_plugins_loaded", False)
    monkeypatch.setattr(kinds, "_plugins", None)  # the model plugins too
    yield site
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def probes(monkeypatch):
    """A scratch copy of the probe registry, so test probes do not leak into other tests."""
    from satbench.probes import registry

    monkeypatch.setattr(registry, "PROBES", dict(registry.PROBES))
    return registry.PROBES


@pytest.fixture
def variant_registry():
    """The attention variants as they were, back after the test: a test may register its own."""
    from satbench.models import attention

    before = dict(attention.VARIANTS)
    yield attention.VARIANTS
    attention.VARIANTS.clear()
    attention.VARIANTS.update(before)


@pytest.fixture
def no_next_symbols(registry):
    """Registers 'no_followers', a language that does not define next_symbols."""

    @languages.register
    class NoFollowers(languages.Language):
        """Strings of a's."""

        name = "no_followers"
        alphabet = "ab"

        def accepts(self, s):
            return set(s) <= {"a"}

        def sample(self, rng, n):
            return "a" * n

    assert languages.get_language("no_followers").next_symbols("") is None
    return "no_followers"


@pytest.fixture
def liar(registry):
    """Registers 'liar', a language whose sampler disagrees with its own oracle."""

    @languages.register
    class Liar(languages.Language):
        """Samples a's, accepts only b's."""

        name = "liar"
        alphabet = "ab"

        def accepts(self, s):
            return set(s) <= {"b"}

        def sample(self, rng, n):
            return "a" * n

    return Liar


def check_next_symbols(lang, members, longest_prefix):
    """lang.next_symbols agrees, on every string up to `longest_prefix` symbols, with the followers that the prefixes
    of `members` show (the caller's members must be long enough for every live prefix to reach one); a foreign
    symbol kills a prefix, and a member's own symbols are always among its next symbols."""
    prefixes = {m[:i] for m in members for i in range(len(m) + 1)}

    def followers(p):
        return "".join(c for c in lang.alphabet if p + c in prefixes)

    for m in range(longest_prefix + 1):
        for p in map("".join, itertools.product(lang.alphabet, repeat=m)):
            assert lang.next_symbols(p) == [followers(p[:i]) for i in range(m + 1)], p
    assert lang.next_symbols("x") == [followers(""), ""]
    member = lang.sample(np.random.default_rng(1), next(n for n in range(4, 12) if lang.count(n)))
    follow = lang.next_symbols(member + "x" + member)
    assert all(member[i] in follow[i] for i in range(len(member)))
    assert follow[len(member) + 1:] == [""] * (len(member) + 1)


@pytest.fixture
def next_symbols_match_members():
    return check_next_symbols
