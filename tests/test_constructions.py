import math

import pytest
import torch

from satbench.cli import main
from satbench.construct_command import parse_lengths
from satbench.models import Recognizer, attention_layers, load, saturated_limit, save, scale_attention
from satbench.models.constructions import CONSTRUCTIONS, construct, get_construction
from satbench.models.kinds import check_state_dict
from satbench.probes.theory_check import (
    accuracy_table,
    construction_rows,
    encode,
    evaluation_strings,
    logits,
    n_star,
    predicted_n_star,
)


def critical_strings(name, n):
    return get_construction(name).critical_strings(n)

NAMES = list(CONSTRUCTIONS)


def wrong_at(name, lengths, c=math.inf, samples=8):
    rows = accuracy_table(name, lengths, [c], samples=samples)
    assert rows and all(r["strings"] > 0 for r in rows)
    return {r["length"]: r["wrong"] for r in rows if r["wrong"]}


@pytest.mark.parametrize("name", NAMES)
def test_exact_on_every_string_up_to_length_12_at_the_saturated_limit(name):
    assert wrong_at(name, range(0, 13)) == {}


@pytest.mark.parametrize("name", NAMES)
def test_exact_on_sampled_strings_at_lengths_100_and_500(name):
    strings, labels = evaluation_strings(name, 500)
    assert any(labels) or name != "majority"  # members exist at even lengths for all three
    assert not all(labels)  # and the hard negatives are there
    assert wrong_at(name, [100, 500]) == {}


@pytest.mark.parametrize("name", NAMES)
def test_a_plain_state_dict_of_the_shared_recognizer(name):
    model = construct(name)
    assert type(model) is Recognizer
    check_state_dict(model.config, model.state_dict(), name)


def test_survives_a_checkpoint_round_trip(tmp_path):
    model = load(save(construct("dyck1"), tmp_path / "dyck1.pt"))
    tokens = encode("dyck1", ["(())()", "())(()", "()()()"])
    with saturated_limit(model):
        assert (model(tokens)["logit"] > 0).tolist() == [True, False, True]


def test_majority_is_the_same_function_at_every_scale():
    model = construct("majority")
    for n in (1, 2, 7, 10, 64):
        strings, _ = evaluation_strings("majority", n)
        tokens = encode("majority", strings)
        reference = logits(model, tokens, math.inf)
        for c in (1.0, 10.0, 100.0, 1000.0, 10000.0):
            assert torch.equal(logits(model, tokens, c), reference), (n, c)
    assert predicted_n_star("majority", 1e4) is None
    assert n_star("majority", 10.0, lengths=range(1, 41)) is None
    assert all(row["identical"] for row in accuracy_table("majority", [3, 40], [math.inf, 1.0, 1e4]))
    assert not all(row["identical"] for row in accuracy_table("dyck1", [8], [math.inf, 10.0]))


@pytest.mark.parametrize("name", ["dyck1", "anbn"])
def test_members_are_exact_ties_so_scale_does_not_matter_for_them(name):
    # Every flag of a member is exactly 0, so the selecting head ties everywhere, as in majority.
    model = construct(name)
    strings, labels = evaluation_strings(name, 10)
    members = [s for s, label in zip(strings, labels, strict=True) if label] + critical_strings(name, 200)[1:]
    for n in {len(s) for s in members}:
        tokens = encode(name, [s for s in members if len(s) == n])
        reference = logits(model, tokens, math.inf)
        assert (reference > 0).all()
        for c in (1.0, 100.0, 10000.0):
            assert torch.equal(logits(model, tokens, c), reference)


@pytest.mark.parametrize("name", ["dyck1", "anbn"])
def test_the_critical_string_fails_exactly_where_its_softmax_says(name):
    """The critical string has one attended key of score g against n keys at 0, so at scale c it keeps
    w = e^{cg} / (e^{cg} + n) of the attention and is rejected exactly while w * flag > 1/(2(n+1))."""
    model, c = construct(name), 100.0
    for n in range(2, 61, 2):
        flag = 1 / n if name == "dyck1" else 1 / (n + 1)
        w = math.exp(c * flag) / (math.exp(c * flag) + n)
        margin = w * flag - 1 / (2 * (n + 1))
        if abs(margin) < 1e-3 / n:  # too close to call in fp32
            continue
        rejected = bool(logits(model, encode(name, critical_strings(name, n)[:1]), c) <= 0)
        assert rejected == (margin > 0), (n, margin)


@pytest.mark.parametrize("name,c", [("dyck1", 10.0), ("dyck1", 100.0), ("anbn", 100.0)])
def test_measured_n_star_is_past_the_bound_and_within_a_factor_2(name, c):
    predicted = predicted_n_star(name, c)
    measured = n_star(name, c, lengths=range(1, 3 * predicted), samples=2)
    assert measured is not None
    # The bound guarantees every length below its prediction, so the model may not fail earlier.
    assert predicted <= measured <= 2 * predicted


def test_predicted_n_star_is_where_the_guarantee_first_fails():
    construction = CONSTRUCTIONS["dyck1"]
    for c in (10.0, 100.0, 1000.0, 10000.0):
        p = predicted_n_star("dyck1", c)
        assert p * math.exp(-c * construction.gap(p)) >= construction.tolerated_leak(p)
        assert all(n * math.exp(-c * construction.gap(n)) < construction.tolerated_leak(n) for n in range(1, p))
    assert [predicted_n_star("dyck1", c) for c in (10, 100, 1000, 10000)] == sorted(
        predicted_n_star("dyck1", c) for c in (10, 100, 1000, 10000))


def test_the_tie_tolerance_sets_no_length_limit_on_the_saturated_limit():
    """The tie tolerance is relative to the row's largest |score|, which in the selecting head is the critical flag 1/n
    itself, so the unflagged keys (score 0) never tie with it: even with tol = 1e-2 the limit rejects the non-members
    of length 96 and 104. (Under the absolute floor of before, tol * max(1, |max|), they tied from n = 1/tol = 100 on,
    and the non-member of length 104 was accepted.)"""
    model = construct("dyck1")
    for layer in attention_layers(model):
        layer.tol = 1e-2
    for n in (96, 104, 400):
        assert logits(model, encode("dyck1", critical_strings("dyck1", n)[:1]), math.inf) <= 0, n


def test_scale_attention_is_restored_after_the_evaluation():
    model = construct("dyck1")
    logits(model, encode("dyck1", ["()"]), 1000.0)
    with scale_attention(model, 1.0):
        assert all(layer.logit_scale == 1.0 for layer in attention_layers(model))
    assert all(layer.exact_override is None for layer in attention_layers(model))


def test_construction_rows_for_the_report():
    rows = construction_rows(lengths=(1, 8))
    assert [r["language"] for r in rows] == NAMES
    for row in rows:
        assert row["variant"] == "hand-built"
        assert set(row["acc"]) == {"1", "1000", "inf"}
        assert row["acc"]["inf"] == 1.0
        assert set(row["acc_by_length"]["inf"]) == set(range(1, 9))
    by_name = {r["language"]: r for r in rows}
    assert len(set(by_name["majority"]["acc"].values())) == 1
    assert by_name["dyck1"]["acc"]["1"] < 1.0  # at c = 1 the 1/n gap is far too small


def test_parse_lengths():
    assert parse_lengths("1..5") == [1, 2, 3, 4, 5]
    assert parse_lengths("1..3,10, 2") == [1, 2, 3, 10]
    for bad in ("1..x", "5..1", "", "-3", "1...4"):
        with pytest.raises(ValueError, match="--lengths"):
            parse_lengths(bad)


def test_cli_prints_the_tables(capsys):
    assert main(["construct", "dyck1", "--lengths", "1..10", "--scales", "10,1000"]) == 0
    out = capsys.readouterr().out
    assert "inf (saturated)" in out and "c=1000" in out
    n_star_line = next(line for line in out.splitlines() if line.split()[:1] == ["10"] and "5" in line.split())
    assert n_star_line.split()[1] == "8"  # measured n*(10) for dyck1: the first even length that fails
    assert main(["construct", "majority", "--lengths", "1..8", "--scales", "1,10000"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical to the saturated limit: c=1 yes, c=10000 yes" in out
    assert "never (all scores tie)" in out


@pytest.mark.parametrize("argv,message", [
    (["construct", "dyk1"], "did you mean 'dyck1'?"),
    (["construct", "anbn", "--lengths", "1..ten"], "--lengths: '1..ten'"),
    (["construct", "anbn", "--scales", "10,0"], "--scales: '0'"),
    (["construct", "anbn", "--samples", "-1"], "--samples must be >= 0, got -1"),
    (["construct", "anbn", "--lengths", "13..14", "--seed", "-1"], "--seed must be >= 0, got -1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exact_at_every_length_up_to_1000_at_the_saturated_limit(name):
    assert wrong_at(name, range(13, 1001), samples=2) == {}
