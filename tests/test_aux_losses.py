"""FLaRe's auxiliary losses (train.aux_losses: lm, next_symbols; train.aux_weight): the heads they add, the terms
against hand computations, their targets, what the config refuses, training with them, and cells without them hashing
as before the fields existed."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from satbench.cli import main
from satbench.data import make_dataset, with_next_symbols
from satbench.harness import config as C
from satbench.harness.results import LEFT_OUT_AT_DEFAULT, read_run
from satbench.harness.run import build_dataset, training_split
from satbench.languages.base import BOS, EOS, PAD, get_language
from satbench.models import Ensemble, ModelConfig, Recognizer
from satbench.models.objectives import auxiliary_losses
from satbench.models.train import TrainConfig, train_ensemble

CPU = torch.device("cpu")
VOCAB = 8
MODEL = ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=1, d_ff=16)
BOTH = ("lm", "next_symbols")
RESULTS = Path(__file__).resolve().parents[1] / "results"
NEW_FIELDS = {"data": ("validation_size", "validation_lengths"), "train": ("aux_losses", "aux_weight"),
              "eval": ("select", "checkpoints")}


def tokens_of(language, strings, width):
    """(B, width) tokens: BOS, the symbols, PAD."""
    lang = get_language(language)
    out = torch.full((len(strings), width), PAD, dtype=torch.long)
    out[:, 0] = BOS
    for row, s in enumerate(strings):
        out[row, 1:len(s) + 1] = torch.tensor(lang.encode(s), dtype=torch.long)
    return out


def small_split(language="dyck1", seed=0, size=40):
    return make_dataset(language, train_lengths=(1, 8), test_lengths=(1, 8), train_size=size, test_per_length=1,
                        seed=seed, vocab_size=VOCAB).train


# ---- the heads ---------------------------------------------------------------------------------------------------


def test_aux_heads_give_a_logit_per_token_id_at_every_position():
    """With model.aux_heads a Recognizer outputs lm_logits and aux_next_logits of shape (B, T, vocab), a stacked
    ensemble (M, B, T, vocab); each head comes alone when only it is asked for."""
    tokens = tokens_of("majority", ["ab", "aab", "b"], width=5)
    out = Recognizer(dataclasses.replace(MODEL, aux_heads=BOTH))(tokens)
    assert out["lm_logits"].shape == out["aux_next_logits"].shape == (3, 5, VOCAB)
    ensemble = Ensemble(dataclasses.replace(MODEL, aux_heads=BOTH), [0, 1])
    stacked = ensemble(torch.stack([tokens, tokens.flip(0)]))
    assert stacked["lm_logits"].shape == stacked["aux_next_logits"].shape == (2, 3, 5, VOCAB)
    lm_only = Recognizer(dataclasses.replace(MODEL, aux_heads=("lm",)))(tokens)
    assert "lm_logits" in lm_only and "aux_next_logits" not in lm_only


def test_a_model_without_aux_heads_is_the_model_it_was():
    """Without aux heads there are no lm_head or next_head parameters and no extra outputs; with them, for the same
    seed, every other parameter has the same name and initial value and the membership outputs are the same."""
    torch.manual_seed(0)
    plain = Recognizer(MODEL)
    torch.manual_seed(0)
    extended = Recognizer(dataclasses.replace(MODEL, aux_heads=BOTH))
    names = dict(plain.named_parameters())
    assert not any(name.startswith(("lm_head", "next_head")) for name in names)
    assert plain.lm_head is None and plain.next_head is None
    extra = {name for name, _ in extended.named_parameters()} - set(names)
    assert extra == {"lm_head.weight", "next_head.weight", "next_head.bias"}
    for name, value in extended.state_dict().items():
        if name not in extra:
            assert torch.equal(plain.state_dict()[name], value), name
    tokens = tokens_of("majority", ["ab", "aab", "b"], width=5)
    mine, theirs = plain(tokens), extended(tokens)
    assert set(mine) == {"logit", "prefix_logits"}
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    ensembles = [Ensemble(config, [3, 4]) for config in (MODEL, dataclasses.replace(MODEL, aux_heads=BOTH))]
    for i in range(2):
        alone, extended = (e.member_state_dict(i) for e in ensembles)
        assert all(torch.equal(value, extended[name]) for name, value in alone.items())


def test_an_unknown_aux_head_is_refused_by_name():
    """model.aux_heads takes distinct names of the auxiliary losses only."""
    for heads in (("lm", "lm"), ("language_model",)):
        with pytest.raises(ValueError, match=r"model\.aux_heads"):
            dataclasses.replace(MODEL, aux_heads=heads)


# ---- the terms ---------------------------------------------------------------------------------------------------


def random_outputs(M, B, T, generator):
    return {"lm_logits": torch.randn(M, B, T, VOCAB, generator=generator, requires_grad=True),
            "aux_next_logits": torch.randn(M, B, T, VOCAB, generator=generator, requires_grad=True)}


def next_symbol_batch(seed=0):
    """Two members' batches of dyck1 strings, members and non-members, with their next-symbol targets."""
    split = with_next_symbols(small_split("dyck1", seed), "dyck1", VOCAB)
    rows = [slice(0, 6), slice(6, 12)]
    tokens = torch.stack([split.tokens[r] for r in rows])
    labels = torch.stack([split.labels[r] for r in rows])
    next_labels = torch.stack([split.next_labels[r] for r in rows])
    assert 0 < labels.sum() < labels.numel()
    return tokens, labels, next_labels


def test_the_terms_vanish_on_a_batch_of_non_members():
    """Only member strings are read: a batch of non-members contributes zero loss and zero gradient."""
    g = torch.Generator().manual_seed(0)
    tokens, _, next_labels = next_symbol_batch()
    labels = torch.zeros(tokens.shape[:2])
    out = random_outputs(*tokens.shape, g)
    loss = auxiliary_losses(out, tokens, labels, next_labels, {"lm": torch.ones(2), "next_symbols": torch.ones(2)})
    assert torch.equal(loss, torch.zeros(2))
    loss.sum().backward()
    assert not out["lm_logits"].grad.any() and not out["aux_next_logits"].grad.any()


def test_the_lm_term_is_the_next_token_cross_entropy_of_the_members():
    """lm: at positions 0..n of BOS + s the target is the next symbol, EOS after the last; the mean per string, summed
    over the members of the batch, divided by the batch size (non-members included), times each member's weight."""
    g = torch.Generator().manual_seed(1)
    batches = [["ab", "abba", "b", "aaab"], ["bbbb", "a", "ba", "abab"]]
    labels = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    tokens = torch.stack([tokens_of("majority", strings, width=5) for strings in batches])  # "bbbb" fills the width
    out = random_outputs(2, 4, 5, g)
    weights = torch.tensor([0.7, 2.5])
    got = auxiliary_losses({"lm_logits": out["lm_logits"]}, tokens, labels, None, {"lm": weights})
    lang = get_language("majority")
    for m, strings in enumerate(batches):
        total = 0.0
        for b, s in enumerate(strings):
            if labels[m, b]:
                target = torch.tensor([*lang.encode(s), EOS])
                total += F.cross_entropy(out["lm_logits"][m, b, :len(s) + 1], target).item()
        assert got[m].item() == pytest.approx(weights[m].item() * total / len(strings), rel=1e-5)


def test_the_next_symbols_term_is_the_members_mean_bce_over_scored_ids():
    """next_symbols: at every position of a member string the binary cross-entropy of the scored ids (the language's
    symbols and EOS) against with_next_symbols' targets, averaged over those ids, then over the positions 0..n; summed
    over members, divided by the batch size, times the weight; with both terms the loss is their sum."""
    g = torch.Generator().manual_seed(2)
    tokens, labels, next_labels = next_symbol_batch()
    out = random_outputs(*tokens.shape, g)
    weights = {"lm": torch.tensor([0.3, 1.5]), "next_symbols": torch.tensor([2.0, 0.5])}
    got = auxiliary_losses({"aux_next_logits": out["aux_next_logits"]}, tokens, labels, next_labels,
                           {"next_symbols": weights["next_symbols"]})
    scored_ids = [EOS, *range(3, 3 + len(get_language("dyck1").alphabet))]
    for m in range(2):
        total = 0.0
        for b in range(tokens.shape[1]):
            if not labels[m, b]:
                continue
            n = int((tokens[m, b] != PAD).sum()) - 1
            per_position = []
            for i in range(n + 1):
                target = next_labels[m, b, i, scored_ids].float()
                per_position.append(F.binary_cross_entropy_with_logits(
                    out["aux_next_logits"][m, b, i, scored_ids], target).item())
            total += sum(per_position) / len(per_position)
        expected = weights["next_symbols"][m].item() * total / tokens.shape[1]
        assert got[m].item() == pytest.approx(expected, rel=1e-5)
    lm = auxiliary_losses({"lm_logits": out["lm_logits"]}, tokens, labels, None, {"lm": weights["lm"]})
    torch.testing.assert_close(auxiliary_losses(out, tokens, labels, next_labels, weights), lm + got)


# ---- the next-symbol targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["dyck1", "majority"])
def test_with_next_symbols_labels_the_members_as_the_next_symbol_task_would(language):
    """with_next_symbols leaves every non-member row unscored (-1) and gives each member row the targets that
    make_dataset(label_kind="next_symbols") gives the same string; the split is otherwise unchanged."""
    membership = make_dataset(language, train_lengths=(1, 8), test_lengths=(1, 8), train_size=120,
                              test_per_length=1, seed=0, vocab_size=VOCAB).train
    split = with_next_symbols(membership, language, VOCAB)
    assert split.next_labels.shape == (*membership.tokens.shape, VOCAB) and split.next_labels.dtype == torch.int8
    assert torch.equal(split.tokens, membership.tokens) and split.strings == membership.strings
    assert membership.next_labels is None  # the original is left as it was
    task = make_dataset(language, train_lengths=(1, 8), test_lengths=(1, 8), train_size=300, test_per_length=1,
                        seed=1, vocab_size=VOCAB, label_kind="next_symbols").train
    assert task.tokens.shape[1] == membership.tokens.shape[1]
    reference = dict(zip(task.strings, task.next_labels, strict=True))
    matched = 0
    for row, (s, label) in enumerate(zip(split.strings, split.labels, strict=True)):
        if not label:
            assert (split.next_labels[row] == -1).all(), s
        elif s in reference:
            assert torch.equal(split.next_labels[row], reference[s]), s
            matched += 1
    assert matched >= 10


# ---- what the config refuses and fills in ------------------------------------------------------------------------

TINY_AUX = {
    "name": "aux",
    "languages": ["dyck1", "majority"],
    "seeds": [0, 1],
    "model": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16},
    "data": {"train_lengths": [1, 6], "test_lengths": [1, 8], "train_size": 80, "test_per_length": 3},
    "train": {"steps": 20, "batch_size": 16, "log_every": 10, "lr": 0.01},
    "eval": {"scales": [1, "inf"], "tie_tolerances": [], "uniform_control": False},
    "probes": {"enabled": False},
}


@pytest.mark.parametrize("overrides, message", [
    (["train.aux_losses=[lm]", "data.label_kind=next_symbols"], "train.aux_losses"),
    (["train.aux_losses=[next_symbols]", "data.label_kind=prefix"], "train.aux_losses"),
    (["train.aux_losses=[lm, grammar]"], "train.aux_losses"),
    (["train.aux_losses=[lm, lm]"], "train.aux_losses"),
    (["train.aux_losses=lm"], "train.aux_losses"),
    (["train.aux_weight=0"], "train.aux_weight"),
    (["train.aux_weight=-1"], "train.aux_weight"),
    (["train.aux_weight={loguniform: [10, 0.01]}"], "train.aux_weight"),
    (["train.aux_weight={uniform: [0.01, 10]}"], "train.aux_weight"),
    (["model.aux_heads=[lm]"], "unknown key 'model.aux_heads'"),
])
def test_bad_aux_settings_are_refused_by_the_config(overrides, message):
    """Auxiliary losses beside a per-prefix label kind, unknown or repeated names, a weight that is not positive or
    not a log-uniform range, and the derived model.aux_heads given by hand: a ConfigError naming the key."""
    with pytest.raises(C.ConfigError, match=message.replace(".", r"\.")):
        C.expand(C.apply_overrides(TINY_AUX, overrides))


@pytest.mark.parametrize("losses", [["grammar"], ["lm", "lm"], ["next_symbols", "lm", "next_symbols"]])
def test_train_config_refuses_unknown_or_repeated_losses(losses):
    """TrainConfig itself refuses names other than lm and next_symbols, and a name given twice, naming the field."""
    with pytest.raises(ValueError, match=r"train\.aux_losses"):
        TrainConfig(aux_losses=losses)


def test_next_symbols_aux_needs_a_language_that_defines_next_symbols(no_next_symbols):
    """The next_symbols term on a language without next_symbols is refused, naming the key and the language; the lm
    term, which needs only the string, is not."""
    raw = C.apply_overrides(TINY_AUX, [f"languages=[{no_next_symbols}]"])
    with pytest.raises(C.ConfigError, match=rf"train\.aux_losses: .*'{no_next_symbols}'"):
        C.expand(C.apply_overrides(raw, ["train.aux_losses=[lm, next_symbols]"]))
    (cell,) = C.expand(C.apply_overrides(raw, ["train.aux_losses=[lm]", "seeds=[0]"])).cells
    assert cell.model.aux_heads == ["lm"]


def test_the_harness_gives_the_model_the_heads_of_the_losses():
    """resolve fills model.aux_heads from train.aux_losses (an axis of loss lists gives each cell its own heads),
    cells with and without the losses train in separate groups, and the derived field stays out of the record."""
    raw = C.apply_overrides(TINY_AUX, ["train.aux_losses=[[], [lm], [lm, next_symbols]]", "seeds=[0]"])
    cells = C.expand(raw).cells
    assert {(tuple(c.train.aux_losses), tuple(c.model.aux_heads)) for c in cells} == {
        ((), ()), (("lm",), ("lm",)), (BOTH, BOTH)}
    assert len({C.group_key(c) for c in cells}) == 3
    assert all("aux_heads" not in c.as_dict()["model"] for c in cells)


def test_the_training_split_carries_next_symbol_targets_only_for_that_term():
    """training_split: the dataset's own training split without the next_symbols term, and with it the same split
    labelled by with_next_symbols."""
    raw = C.apply_overrides(TINY_AUX, ["train.aux_losses=[[lm], [lm, next_symbols]]", "seeds=[0]",
                                       "languages=[dyck1]"])
    lm_only, both = C.expand(raw).cells
    dataset = build_dataset(lm_only, {})
    assert training_split(lm_only, dataset) is dataset.train
    split = training_split(both, dataset)
    assert torch.equal(split.next_labels, with_next_symbols(dataset.train, "dyck1", both.vocab_size).next_labels)


def test_aux_weights_are_drawn_per_seed_and_per_term():
    """{loguniform: ...} draws each term's weight in its range from its own stream: the same for a seed whatever the
    order of the terms, different for the two terms and from the seed's learning rate over the same range."""
    both = TrainConfig(aux_losses=list(BOTH), aux_weight={"loguniform": [0.01, 10]}, lr={"loguniform": [0.01, 10]})
    flipped = TrainConfig(aux_losses=["next_symbols", "lm"], aux_weight={"loguniform": [0.01, 10]})
    for seed in range(20):
        weights = both.aux_weights(seed)
        assert set(weights) == set(BOTH) and all(0.01 <= w <= 10 for w in weights.values())
        assert weights == flipped.aux_weights(seed)
        assert weights["lm"] != weights["next_symbols"] and both.learning_rate(seed) not in weights.values()
    assert TrainConfig(aux_losses=["lm"], aux_weight=0.5).aux_weights(3) == {"lm": 0.5}
    assert TrainConfig().aux_weights(3) == {}


# ---- training with them ------------------------------------------------------------------------------------------


def aux_training(steps, aux_weight):
    return TrainConfig(steps=steps, batch_size=8, lr=0.01, schedule="constant", warmup_steps=0, log_every=10,
                       aux_losses=list(BOTH), aux_weight=aux_weight)


def test_each_member_trains_with_its_own_drawn_weights_as_it_would_alone():
    """Members of one ensemble with drawn aux weights end, after two steps, where a one-member ensemble of the same
    seed and config ends; with another weight they would not."""
    model = dataclasses.replace(MODEL, aux_heads=BOTH)
    train = aux_training(2, {"loguniform": [0.01, 10]})
    splits = [with_next_symbols(small_split("dyck1", s), "dyck1", VOCAB) for s in (0, 1)]
    ensemble, _ = train_ensemble(model, train, [0, 1], splits, CPU, progress=False)
    for i, seed in enumerate((0, 1)):
        alone, _ = train_ensemble(model, train, [seed], [splits[i]], CPU, progress=False)
        got, expected = ensemble.member_state_dict(i), alone.member_state_dict(0)
        for name, value in expected.items():
            if name.endswith("attn.qkv.bias"):
                continue  # its key slice has a true gradient of 0 and carries only rounding noise (tests/test_train.py)
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
        other, _ = train_ensemble(model, dataclasses.replace(train, aux_weight=100.0), [seed], [splits[i]], CPU,
                                  progress=False)
        other = other.member_state_dict(0)
        assert max((got[name] - other[name]).abs().max().item() for name in got) > 1e-4


def test_training_with_the_terms_lowers_them():
    """Forty steps with both terms lower each of them on the training split, from the untrained members' values."""
    model = dataclasses.replace(MODEL, aux_heads=BOTH)
    splits = [with_next_symbols(small_split("dyck1", s, size=80), "dyck1", VOCAB) for s in (0, 1)]
    tokens = torch.stack([s.tokens for s in splits])
    labels = torch.stack([s.labels for s in splits])
    next_labels = torch.stack([s.next_labels for s in splits])
    ones = torch.ones(2)

    def terms(ensemble):
        with torch.no_grad():
            out = ensemble.eval()(tokens)
            return {name: auxiliary_losses({head: out[head]}, tokens, labels, next_labels, {name: ones})
                    for name, head in (("lm", "lm_logits"), ("next_symbols", "aux_next_logits"))}

    before = terms(Ensemble(model, [0, 1]))
    trained, _ = train_ensemble(model, aux_training(40, 1.0), [0, 1], splits, CPU, progress=False)
    after = terms(trained)
    for name in BOTH:
        assert (after[name] < before[name]).all(), name


def write(tmp_path, raw, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / name), "--quiet", "--no-report"]) == 0
    return {(r["config"]["language"], r["config"]["seed"]): r for r in read_run(tmp_path / name)}


def test_a_bench_with_both_terms_runs_and_records_them(tmp_path):
    """A tiny bench with aux_losses [lm, next_symbols] and drawn weights writes a row per cell whose config records
    the losses and the weights' range and whose metrics carry each cell's drawn weights; its training differs from
    the same bench without the terms, whose rows record neither."""
    raw = C.apply_overrides(TINY_AUX, ["train.aux_losses=[lm, next_symbols]",
                                       "train.aux_weight={loguniform: [0.1, 10]}"])
    rows = write(tmp_path, raw, "aux")
    cells = {(c.language, c.seed): c for c in C.expand(raw).cells}
    assert set(rows) == set(cells)
    for where, row in rows.items():
        cell = cells[where]
        assert row["hash"] == C.cell_hash(cell)
        assert row["config"]["train"]["aux_losses"] == list(BOTH)
        assert row["config"]["train"]["aux_weight"] == {"loguniform": [0.1, 10]}
        drawn = cell.train.aux_weights(cell.seed)
        assert row["metrics"]["aux_weights"] == pytest.approx(drawn, rel=1e-5)
        assert "aux_heads" not in row["config"]["model"]
    plain = write(tmp_path, TINY_AUX, "plain")
    for where, row in plain.items():
        assert "aux_losses" not in row["config"]["train"] and "aux_weights" not in row["metrics"]
        assert row["log"][-1]["loss"] != rows[where]["log"][-1]["loss"]


# ---- cells without the new fields hash as before -----------------------------------------------------------------


def test_cells_at_the_new_fields_defaults_record_none_of_them():
    """A cell with every new field at its default records none of them (so its hash is the one from before they
    existed); the defaults given explicitly hash the same; any other value is recorded and changes the hash."""
    (cell,) = C.expand(C.apply_overrides(TINY_AUX, ["seeds=[0]", "languages=[dyck1]"])).cells
    record = cell.as_dict()
    for section, names in NEW_FIELDS.items():
        for name in names:
            assert name not in record[section], f"{section}.{name}"
            assert LEFT_OUT_AT_DEFAULT[section][name] == getattr(getattr(cell, section), name)
    explicit = copy.deepcopy(TINY_AUX)
    explicit.update(seeds=[0], languages=["dyck1"])
    explicit["data"].update(validation_size=0, validation_lengths=None)
    explicit["train"].update(aux_losses=[], aux_weight=1.0)
    explicit["eval"].update(select="final", checkpoints=10)
    (same,) = C.expand(explicit).cells
    assert C.cell_hash(same) == C.cell_hash(cell)
    changes = ["data.validation_size=20", "train.aux_losses=[lm]",
               "train.aux_weight=2.0", "eval.select=best_test", "eval.checkpoints=4"]
    for change in changes:
        (other,) = C.expand(C.apply_overrides(explicit, [change])).cells
        section, name = change.split("=")[0].split(".")
        assert name in other.as_dict()[section], change
        assert C.cell_hash(other) != C.cell_hash(cell), change


@pytest.mark.parametrize("run", ["cpu", "flare", "b20"])
def test_published_runs_keep_their_cell_hashes(run):
    """The grids of published runs, recorded before these fields, expand today into the cells they recorded."""
    folder = RESULTS / run
    grid = C.expand(C.load_yaml(folder / "config.yaml"))
    recorded = json.loads((folder / "grid_cells.json").read_text())["cells"]
    assert [C.cell_hash(c) for c in grid.cells] == recorded
