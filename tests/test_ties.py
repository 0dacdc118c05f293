"""The tie probe: which split queries average different values, and the score gaps of every head."""

import math

import pytest
import torch

from satbench.models import BOS, ModelConfig, Recognizer, eval_mode, saturated_limit
from satbench.probes.heads import query_mask_for
from satbench.probes.ties import member_ties, score_gaps, tie_shares


def test_ties_among_equal_values_split_but_do_not_count():
    # One layer, one string, one head, three queries: q0 sees one key, q1 ties keys 0 and 1 (equal values), q2 ties
    # keys 0 and 2 (different values).
    attn = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])[None, None, None]
    values = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.5]])[None, None, None]
    queries = torch.ones(1, 3, dtype=torch.bool)
    split, distinct = tie_shares(attn, values, queries)
    assert split.tolist() == [2] and distinct.tolist() == [1]
    queries[0, 2] = False  # a query the probe does not look at is not counted
    split, distinct = tie_shares(attn, values, queries)
    assert split.tolist() == [1] and distinct.tolist() == [0]


def test_values_within_the_relative_tolerance_count_as_equal():
    attn = torch.tensor([[0.5, 0.5]])[None, None, None]
    queries = torch.ones(1, 1, dtype=torch.bool)
    for delta, expected in ((1e-7, 0), (1e-2, 1)):
        values = torch.tensor([[1000.0, 0.0], [1000.0 + 1000.0 * delta, 0.0]], dtype=torch.float64)[None, None, None]
        assert tie_shares(attn.double(), values, queries)[1].tolist() == [expected]


def test_score_gaps_are_best_minus_second_best_allowed_score():
    inf = math.inf
    scores = torch.tensor([[[3.0, -inf, -inf], [3.0, 1.0, -inf], [2.0, 2.0, 0.5]]])[None, :, None]  # (L, B, H, T, T)
    queries = torch.ones(1, 3, dtype=torch.bool)
    # Query 0 has one allowed key: no gap. Gaps 2.0 and 0.0: median of two values is the lower one (torch.nanmedian).
    assert score_gaps(scores, queries).tolist() == [[0.0]]
    queries[0, 2] = False
    assert score_gaps(scores, queries).tolist() == [[2.0]]


def test_a_model_without_positions_ties_identical_keys_and_the_shares_are_well_formed():
    torch.manual_seed(0)
    model = Recognizer(ModelConfig(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, attention="saturated",
                                   positional="none"))
    tokens = torch.tensor([[BOS, 3, 3, 3, 3], [BOS, 3, 4, 3, 4]])
    with torch.no_grad(), eval_mode(model):
        exact = model(tokens, internals=True)
        with saturated_limit(model):
            limit = model(tokens, internals=True)
    out = member_ties({k: limit[k] for k in ("attn", "scores", "values")},
                      {k: exact[k] for k in ("attn", "scores", "values")}, query_mask_for(model, tokens), 2.0)
    assert set(out) >= {"split_share_l0", "split_share_l1", "value_distinct_share_l0", "score_gap_l1h1",
                        "score_gap_over_norm", "split_share", "value_distinct_share"}
    for key, value in out.items():
        if key.startswith("split_share") or (key.startswith("value_distinct") and not math.isnan(value)):
            assert 0.0 <= value <= 1.0, key
    assert out["score_gap_over_norm"] == pytest.approx(out["score_gap"] / 2.0)
    # A member whose weight decay drove every parameter to zero has no gap per unit norm (the bench once crashed here).
    collapsed = member_ties({k: limit[k] for k in ("attn", "scores", "values")},
                            {k: exact[k] for k in ("attn", "scores", "values")}, query_mask_for(model, tokens), 0.0)
    assert math.isnan(collapsed["score_gap_over_norm"]) and math.isnan(collapsed["score_gap_over_norm_l0h0"])
    # Layer 0 on the all-3 string: every symbol key is identical, so whatever splits ties identical values.
    first = member_ties({k: limit[k][:, :1] for k in ("attn", "scores", "values")},
                        {k: exact[k][:, :1] for k in ("attn", "scores", "values")},
                        query_mask_for(model, tokens[:1]), 2.0)
    assert first["value_distinct_share_l0"] == 0.0 or math.isnan(first["value_distinct_share_l0"])
