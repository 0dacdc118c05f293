"""What several test modules share: the tiny bench grid, and a scratch language registry with a lying language."""

import copy

import pytest

import languages
from languages import base

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
