import math

import numpy as np
import pytest
import torch

from satbench.probes.heads import attended_counts, head_statistics, positions_attended


def one_hot_attention(B=2, H=3, T=5):
    attn = torch.zeros(B, H, T, T)
    for i in range(T):
        attn[:, :, i, (i * 7) % T] = 1.0
    return attn


def uniform_attention(k, B=2, H=3, T=6):
    attn = torch.zeros(B, H, T, T)
    attn[..., :k] = 1.0 / k
    return attn


def test_one_hot_attends_to_one_position():
    counts = positions_attended(one_hot_attention())
    assert counts.shape == (2, 3, 5)
    assert (counts == 1).all()


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_uniform_over_k_attends_to_k_positions(k):
    assert (positions_attended(uniform_attention(k)) == k).all()


def test_threshold_and_layer_axis():
    attn = uniform_attention(3)
    attn[..., 3] = 1e-6  # below the 1e-5 threshold: not a position attended
    stacked = torch.stack([attn, one_hot_attention(T=6)])  # (L=2, B, H, T, T)
    counts = positions_attended(stacked)
    assert counts.shape == (2, 2, 3, 6)
    assert (counts[0] == 3).all() and (counts[1] == 1).all()


def test_masks_drop_padded_keys_and_queries():
    attn = uniform_attention(6)
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    counts = positions_attended(attn, real)
    assert (counts[0] == 6).all()
    assert (counts[1, :, :4] == 4).all()  # the weight on the two padded keys is not counted
    assert (counts[1, :, 4:] == 0).all()  # padded queries
    # an explicit key mask that keeps every key counts the padded keys again
    assert (positions_attended(attn, real, torch.ones(2, 6, dtype=bool))[1, :, :4] == 6).all()


def test_numpy_input():
    assert (positions_attended(uniform_attention(2).numpy()) == 2).all()


# --- on a Recognizer, under the saturated limit -------------------------------------------------------------------

VOCAB, D = 5, 8


def tokens_batch():
    # BOS = 1, symbols 3 and 4, PAD = 0 after the string; 4 + 6 real positions, 3 + 5 of them after BOS
    return torch.tensor([[1, 3, 4, 3, 0, 0], [1, 4, 4, 3, 3, 4]])


def positional_head_model(kind):
    """One layer, one head, no layer norm. Learned positions put 1 in dimension 0 and j/10 in dimension 1.
    kind="latest": key reads dimension 1, query reads dimension 0, so the score j/10 grows with the key position
    and each query's unique maximum is itself (causal). kind="tied": the query is 0, every score ties."""
    from satbench.models import ModelConfig, Recognizer

    model = Recognizer(ModelConfig(vocab_size=VOCAB, d_model=D, n_heads=1, n_layers=1, d_ff=8, layer_norm="none",
                                   positional="learned", max_len=16))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        table = model.positions.position_embedding.weight
        table[:, 0] = 1.0
        table[:, 1] = torch.arange(16) / 10
        qkv = model.blocks[0].attn.qkv.weight  # rows: query 0..D-1, key D..2D-1, value 2D..3D-1
        if kind == "latest":
            qkv[0, 0] = 1.0
        qkv[D, 1] = 1.0
    return model


def test_head_statistics_argmax_like_head():
    stats = head_statistics(positional_head_model("latest"), tokens_batch())
    assert stats["l0h0_attended_mean"] == 1.0
    assert stats["l0h0_attended_std"] == 0.0
    assert stats["l0h0_split_share"] == 0.0
    assert stats["l0h0_argmax_like"] == 1.0
    assert stats["argmax_like_share"] == 1.0


def test_head_statistics_mean_like_head():
    stats = head_statistics(positional_head_model("tied"), tokens_batch())
    # a causal query at column i ties over its i + 1 visible keys; BOS (column 0) is left out
    expected = np.array([2, 3, 4] + [2, 3, 4, 5, 6], dtype=float)
    assert stats["l0h0_attended_mean"] == pytest.approx(expected.mean())
    assert stats["l0h0_attended_std"] == pytest.approx(expected.std())
    assert stats["l0h0_split_share"] == 1.0
    assert stats["l0h0_argmax_like"] == 0.0
    assert stats["split_share"] == 1.0
    counts = attended_counts(positional_head_model("tied"), tokens_batch())
    assert sorted(counts.tolist()) == sorted(expected.astype(int).tolist())


def test_head_statistics_keys_and_ranges_on_a_random_model():
    from satbench.models import ModelConfig, Recognizer

    torch.manual_seed(0)
    model = Recognizer(ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, d_ff=8))
    model.train()
    stats = head_statistics(model, tokens_batch())
    assert model.training  # the mode is put back
    for layer in range(2):
        for head in range(2):
            key = f"l{layer}h{head}"
            assert 1.0 <= stats[f"{key}_attended_mean"] <= 6.0
            assert 0.0 <= stats[f"{key}_split_share"] <= 1.0
            assert stats[f"{key}_argmax_like"] == float(stats[f"{key}_split_share"] < 0.5)
    assert not any(math.isnan(v) for v in stats.values())
    assert attended_counts(model, tokens_batch()).shape == (2 * 2 * 8,)
