"""Datasets: tensors that spell the strings, oracle labels, balance, held-out test strings, reproducibility, and
shortcut baselines within their bounds (ARCHITECTURE.md, "Rules of the house": length cannot decide)."""

import hashlib
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from satbench import languages
from satbench.data import make_dataset

BUILTIN = ["aa_star", "ab_star", "anbn", "anbncn", "dyck1", "dyck2", "equal", "first", "majority", "parity",
           "shuffle2", "tomita1", "tomita2", "tomita3", "tomita4", "tomita5", "tomita6", "tomita7"]

# Languages whose membership is not a function of the length alone: length and parity must stay near chance.
NOT_DECIDED_BY_LENGTH = [name for name in BUILTIN if name != "aa_star"]
COUNTER_LANGUAGES = ["anbn", "anbncn", "dyck1", "shuffle2", "dyck2"]

# Under pytest-xdist, on one worker: the module's tests take seconds, building `datasets` twice would add one more.
pytestmark = pytest.mark.xdist_group("datasets")


@pytest.fixture(scope="module")
def datasets():
    return {name: make_dataset(name, seed=0) for name in BUILTIN}


def decode(lang, split):
    out = []
    for row, n in zip(split.tokens.tolist(), split.lengths.tolist(), strict=True):
        assert row[0] == languages.BOS and all(t == languages.PAD for t in row[n + 1:])
        out.append("".join(lang.alphabet[t - languages.FIRST_SYMBOL] for t in row[1:n + 1]))
    return out


@pytest.mark.parametrize("name", BUILTIN)
def test_tensors_spell_the_strings_and_labels_follow_the_oracle(datasets, name):
    dataset, lang = datasets[name], languages.get_language(name)
    assert dataset.vocab_size == lang.vocab_size and dataset.label_kind == "membership"
    for split, hi in ((dataset.train, 20), (dataset.test, 40)):
        assert split.tokens.dtype == torch.long and split.tokens.shape == (len(split.strings), 1 + hi)
        assert split.labels.dtype == torch.float32 and split.prefix_labels is None
        assert decode(lang, split) == split.strings
        assert split.labels.tolist() == [float(lang.accepts(s)) for s in split.strings]
        assert int(split.tokens.max()) < lang.vocab_size


@pytest.mark.parametrize("name", BUILTIN)
def test_splits_are_disjoint_and_sized(datasets, name):
    dataset = datasets[name]
    assert not set(dataset.train.strings) & set(dataset.test.strings)
    assert len(dataset.train) == 2000
    assert set(dataset.train.lengths.tolist()) <= set(range(1, 21))
    per_length = Counter(dataset.test.lengths.tolist())
    assert set(per_length.values()) <= {50}, "every usable test length holds test_per_length strings"
    meta = dataset.meta
    assert meta["distinct"] == {"train": len(set(dataset.train.strings)), "test": len(set(dataset.test.strings))}
    assert meta["strings"] == {"train": len(dataset.train), "test": len(dataset.test)}
    assert sum(r["positive"] + r["negative"] for r in meta["per_length"]["train"].values()) == 2000
    assert meta["uses_eos"] is False


@pytest.mark.parametrize("name", BUILTIN)
def test_labels_are_balanced_within_each_length(datasets, name):
    """Where a length has members and non-members, both labels are drawn equally often at that length, unless some
    length of the split has members only (then the split is balanced across lengths, and says so)."""
    dataset, lang = datasets[name], languages.get_language(name)
    for split, key in ((dataset.train, "train"), (dataset.test, "test")):
        labels = Counter(zip(split.lengths.tolist(), split.labels.tolist(), strict=True))
        members_only = [n for n in set(split.lengths.tolist()) if lang.count(n) == lang.strings_of_length(n)]
        across = any(note.startswith(f"{key}: only members exist") for note in dataset.meta["notes"])
        assert across == bool(members_only)
        for n in set(split.lengths.tolist()):
            if 0 < lang.count(n) < lang.strings_of_length(n) and not across:
                assert abs(labels[n, 1.0] - labels[n, 0.0]) <= 1, f"length {n}"
        assert abs(sum(split.labels.tolist()) - len(split) / 2) <= 1


@pytest.mark.parametrize("name", NOT_DECIDED_BY_LENGTH)
def test_length_and_parity_shortcuts_stay_near_chance(datasets, name):
    baselines = datasets[name].baselines
    assert baselines["length"] <= 0.6 and baselines["parity"] <= 0.6
    assert not baselines["length_by_definition"] and not baselines["parity_by_definition"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", COUNTER_LANGUAGES)
def test_counts_shortcut_stays_below_80_percent_on_counter_languages(datasets, name, seed):
    dataset = datasets[name] if seed == 0 else make_dataset(name, seed=seed)
    assert dataset.baselines["counts"] <= 0.8
    assert dataset.baselines["length"] <= 0.6 and dataset.baselines["parity"] <= 0.6


def test_shortcuts_exact_by_definition_are_marked(datasets):
    majority = datasets["majority"].baselines
    assert majority["counts_by_definition"] and majority["counts"] > 0.95
    aa_star = datasets["aa_star"].baselines
    assert aa_star["parity_by_definition"] and aa_star["parity"] == 1.0
    assert not any(datasets["anbn"].baselines[f"{s}_by_definition"] for s in ("length", "parity", "counts"))


def test_lengths_without_members_are_left_out_and_noted(datasets):
    anbn = datasets["anbn"]
    assert set(anbn.train.lengths.tolist()) == set(range(2, 21, 2))
    # a^n b^n has one member per length, all of them in training: the test split holds only longer lengths.
    assert set(anbn.test.lengths.tolist()) == set(range(22, 41, 2))
    assert any("no members at lengths 1, 3, 5" in note for note in anbn.meta["notes"])
    assert any("no held-out members" in note for note in anbn.meta["notes"])


def test_lengths_with_members_only_are_balanced_across_lengths(datasets):
    aa_star = datasets["aa_star"]
    lengths, labels = aa_star.train.lengths.numpy(), aa_star.train.labels.numpy()
    assert (labels[lengths % 2 == 0] == 1).all() and (labels[lengths % 2 == 1] == 0).all()
    assert labels.sum() == len(labels) / 2
    assert any("balanced across lengths" in note for note in aa_star.meta["notes"])


def test_held_out_strings_at_training_lengths(datasets):
    dyck1 = datasets["dyck1"]
    inside = [s for s in dyck1.test.strings if len(s) <= 20]
    assert len(inside) >= 100 and not set(inside) & set(dyck1.train.strings)


@pytest.mark.parametrize("name", BUILTIN)
def test_prefix_labels_follow_the_oracle_on_every_prefix(name):
    dataset = make_dataset(name, train_size=200, test_per_length=4, label_kind="prefix", seed=3)
    lang = languages.get_language(name)
    for split in (dataset.train, dataset.test):
        prefix = split.prefix_labels
        assert prefix.shape == split.tokens.shape and prefix.dtype == torch.float32
        for s, row, label in zip(split.strings, prefix.tolist(), split.labels.tolist(), strict=True):
            assert row[:len(s) + 1] == [float(lang.accepts(s[:i])) for i in range(len(s) + 1)]
            assert set(row[len(s) + 1:]) <= {-1.0}
            assert row[len(s)] == label


def fingerprint(dataset):
    digest = hashlib.sha256()
    for split in (dataset.train, dataset.test):
        for tensor in (split.tokens, split.lengths, split.labels, split.prefix_labels):
            digest.update(tensor.numpy().tobytes())
        digest.update("\n".join(split.strings).encode())
    return digest.hexdigest()


SHUFFLE2 = dict(train_size=300, test_per_length=6, label_kind="prefix")


def test_same_seed_same_bytes():
    here = fingerprint(make_dataset("shuffle2", seed=5, **SHUFFLE2))
    assert here == fingerprint(make_dataset("shuffle2", seed=5, **SHUFFLE2))
    assert here != fingerprint(make_dataset("shuffle2", seed=6, **SHUFFLE2))


@pytest.mark.slow  # a second interpreter: about 2 s of torch and scikit-learn imports for a few ms of datasets
def test_same_seed_same_bytes_even_across_processes():
    """Reproducible to the byte under a different string-hash seed too (no set ordering leaks into the data)."""
    code = ("import sys; sys.path.insert(0, 'tests'); from test_dataset import SHUFFLE2, fingerprint; "
            "from satbench.data import make_dataset; print(fingerprint(make_dataset('shuffle2', seed=5, **SHUFFLE2)))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == fingerprint(make_dataset("shuffle2", seed=5, **SHUFFLE2))


def test_shared_vocab_size_keeps_the_token_ids():
    small, shared = make_dataset("dyck1", train_size=100), make_dataset("dyck1", train_size=100, vocab_size=8)
    assert shared.vocab_size == 8 and torch.equal(small.train.tokens, shared.train.tokens)
    with pytest.raises(ValueError, match="vocab_size 4 is too small for 'dyck2', which needs 7"):
        make_dataset("dyck2", vocab_size=4)


def test_test_split_without_held_out_strings_is_empty_not_an_error():
    dataset = make_dataset("anbn", train_lengths=(1, 10), test_lengths=(1, 10), train_size=100)
    assert len(dataset.test) == 0 and dataset.test.tokens.shape == (0, 11)
    assert dataset.baselines["length"] is None
    assert any("the test split is empty" in note for note in dataset.meta["notes"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"train_lengths": (5, 2)}, "train_lengths: \\(5, 2\\) is not a range"),
    ({"test_lengths": (-1, 3)}, "test_lengths: \\(-1, 3\\) is not a range"),
    ({"train_lengths": 7}, "train_lengths: expected a pair"),
    ({"train_size": 1}, "train_size: expected an integer >= 2"),
    ({"test_per_length": -5}, "test_per_length: expected an integer >= 0"),
    ({"label_kind": "per_token"}, "label_kind 'per_token' is not one of membership, prefix"),
    ({"train_lengths": (1, 1)}, "language 'anbn' has no members of any length in 1..1"),
])
def test_bad_arguments_get_one_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dataset("anbn", **kwargs)


@pytest.mark.usefixtures("liar")
def test_a_sampler_that_disagrees_with_its_oracle_is_an_error():
    with pytest.raises(languages.PluginError, match=r"language 'liar': sample\(rng, 1\) returned 'a', which is "
                                                    r"rejected by its own accepts\(\)"):
        make_dataset("liar")


def test_balanced_even_with_an_odd_share_per_length():
    dataset = make_dataset("dyck1", train_lengths=(2, 6), test_lengths=(2, 12), train_size=301, test_per_length=7)
    labels = dataset.train.labels.numpy()
    assert len(labels) == 301 and abs(labels.sum() - 150.5) <= 0.5
    assert np.isin(dataset.train.lengths.numpy(), [2, 4, 6]).all()


@pytest.mark.usefixtures("registry")
def test_a_language_that_cannot_count_still_gets_held_out_test_strings():
    @languages.register
    class UncountedDyck(type(languages.get_language("dyck1"))):
        """Dyck-1 without its counts, as a plugin might come."""

        name = "uncounted_dyck1"

        def count(self, n):
            return None

    dataset = make_dataset("uncounted_dyck1", train_size=400, test_per_length=10)
    assert set(dataset.train.lengths.tolist()) == set(range(2, 21, 2))
    inside = [s for s in dataset.test.strings if len(s) <= 20]
    assert inside and not set(inside) & set(dataset.train.strings)
    assert abs(sum(dataset.test.labels.tolist()) - len(dataset.test) / 2) <= 1


def test_the_flare_preset_draws_negatives_from_edits_and_random_strings_only(monkeypatch):
    kinds = []
    original = languages.Language._negative_candidate

    def recording(self, kind, rng, member):
        kinds.append(kind)
        return original(self, kind, rng, member)

    monkeypatch.setattr(languages.Language, "_negative_candidate", recording)
    data = make_dataset("dyck1", train_size=200, test_per_length=4, negatives="flare")
    assert data.meta["negative_mixture"] == {"edit": 0.5, "random": 0.5}
    assert set(kinds) == {"edit", "random"}
    kinds.clear()
    make_dataset("dyck1", train_size=200, test_per_length=4)
    assert "near_miss" in kinds and "shuffle" in kinds
    with pytest.raises(ValueError, match="negatives 'flair' is not one of language, flare"):
        make_dataset("dyck1", negatives="flair")


def test_the_default_negatives_leave_the_cell_and_its_hash_as_they_were():
    from satbench.harness import config as C
    default = C.expand({"name": "n", "languages": ["dyck1"]}).cells[0]
    flare = C.expand({"name": "n", "languages": ["dyck1"], "data": {"negatives": "flare"}}).cells[0]
    assert "negatives" not in default.as_dict()["data"] and flare.as_dict()["data"]["negatives"] == "flare"
    assert C.cell_hash(default) != C.cell_hash(flare)


@pytest.mark.parametrize("field,value", [("compile", True), ("tf32", True)])
def test_the_default_speed_switches_leave_the_cell_and_its_hash_as_they_were(field, value):
    from satbench.harness import config as C
    default = C.expand({"name": "n", "languages": ["dyck1"]}).cells[0]
    explicit_default = C.expand({"name": "n", "languages": ["dyck1"], "train": {field: not value}}).cells[0]
    switched = C.expand({"name": "n", "languages": ["dyck1"], "train": {field: value}}).cells[0]
    assert field not in default.as_dict()["train"] and C.cell_hash(explicit_default) == C.cell_hash(default)
    assert switched.as_dict()["train"][field] is value and C.cell_hash(switched) != C.cell_hash(default)


def test_every_string_carries_the_kind_the_sampler_drew_it_by(monkeypatch):
    drawn = Counter()
    original = languages.Language.negative_and_kind

    def recording(self, rng, n, mixture=None):
        s, kind = original(self, rng, n, mixture)
        drawn[(s, kind)] += 1
        return s, kind

    monkeypatch.setattr(languages.Language, "negative_and_kind", recording)
    for name in ("dyck1", "majority", "aa_star"):  # aa_star: non-members only where it has no members, by fallback
        drawn.clear()
        dataset = make_dataset(name, train_lengths=(1, 8), test_lengths=(1, 12), train_size=200, test_per_length=8)
        for split in (dataset.train, dataset.test):
            assert len(split.kinds) == len(split)
            assert [kind == "member" for kind in split.kinds] == [label == 1.0 for label in split.labels.tolist()]
            negatives = Counter((s, kind) for s, kind in zip(split.strings, split.kinds, strict=True)
                                if kind != "member")
            assert not negatives - drawn, "a non-member whose kind is not the one it was drawn by"
            assert {kind for _, kind in negatives} <= set(languages.base.STRING_KINDS) - {"member", "own"}
    assert {kind for _, kind in drawn} == {"fallback"}  # the last language, aa_star


def test_a_language_with_its_own_negative_sampler_marks_its_negatives_own(registry):
    @languages.register
    class OwnNegatives(type(languages.get_language("dyck1"))):
        """Dyck-1 with a sampler of negatives of its own."""

        name = "own_negatives"

        def negative(self, rng, n, mixture=None):
            return self.alphabet[0] * n if n else None  # all openers: never balanced

    dataset = make_dataset("own_negatives", train_lengths=(2, 6), test_lengths=(2, 8), train_size=60,
                           test_per_length=4)
    assert set(dataset.test.kinds) == {"member", "own"}


# Fingerprints of datasets built before each string's kind was recorded: recording it changed no byte.
BEFORE_KINDS = {
    ("shuffle2", 5, "language"): "dd6858f070ae9d4521017a1fccc292eb0bb8612d04dd5c2bcde6fb4064191483",
    ("dyck1", 2, "flare"): "f4445caa9cc4035f20c13501feb5e3b04d9f79c186a8801d1aefb9b236974fb3",
}


@pytest.mark.parametrize("name, seed, negatives", list(BEFORE_KINDS))
def test_recording_the_kinds_left_the_datasets_as_they_were(name, seed, negatives):
    size = SHUFFLE2 if name == "shuffle2" else dict(train_size=200, test_per_length=4, label_kind="prefix")
    assert fingerprint(make_dataset(name, seed=seed, negatives=negatives, **size)) == BEFORE_KINDS[(name, seed,
                                                                                                    negatives)]
