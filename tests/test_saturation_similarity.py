import pytest
import torch

from satbench.probes.saturation_similarity import (
    decision_agreement,
    decisions,
    member_saturation_similarity,
    saturation_similarity,
)

VOCAB = 5


def recognizer(**overrides):
    from satbench.models import ModelConfig, Recognizer

    config = dict(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, d_ff=16)
    config.update(overrides)
    return Recognizer(ModelConfig(**config))


def random_tokens(n=16, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (n, length + 1), generator=g)
    tokens[:, 0] = 1
    for b in range(n):  # PAD after strings of varying length
        tokens[b, 1 + (b % length) + 1 :] = 0
    return tokens


def test_keys_ranges_and_state_restored():
    torch.manual_seed(0)
    model = recognizer()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sims = saturation_similarity(model, random_tokens())
    assert set(sims) == {"sim_layer0", "sim_layer1", "sim_layer2", "sim_mean"}
    for v in sims.values():
        assert -1.0 - 1e-9 <= v <= 1.0 + 1e-9
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_c_equal_one_gives_similarity_one():
    torch.manual_seed(0)
    sims = saturation_similarity(recognizer(), random_tokens(), c=1.0)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in sims.values())


def test_layer0_similarity_depends_on_whether_positions_scale():
    torch.manual_seed(0)
    # learned positions and token embeddings both scale with c: the embedding layer keeps its direction exactly
    assert saturation_similarity(recognizer(positional="learned"), random_tokens())["sim_layer0"] == pytest.approx(1.0)
    # the sinusoidal table is fixed while the token embedding grows 1000x: the direction moves
    assert saturation_similarity(recognizer(positional="sinusoidal"), random_tokens())["sim_layer0"] < 0.999


def test_blocks_that_add_nothing_keep_similarity_one():
    torch.manual_seed(0)
    model = recognizer(positional="learned")
    with torch.no_grad():
        for block in model.blocks:  # every residual branch writes zero, so every layer equals the embedding
            block.attn.proj.weight.zero_()
            block.attn.proj.bias.zero_()
            block.mlp.proj.weight.zero_()
            block.mlp.proj.bias.zero_()
    sims = saturation_similarity(model, random_tokens())
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in sims.values())


def test_average_is_over_real_positions_only():
    torch.manual_seed(0)
    model = recognizer()
    tokens = random_tokens(n=2, length=6)  # string 0 is short and padded, string 1 fills the row
    n0, n1 = int((tokens[0] != 0).sum()), int((tokens[1] != 0).sum())
    assert n0 < n1
    both = saturation_similarity(model, tokens)
    alone0 = saturation_similarity(model, tokens[:1, :n0])
    alone1 = saturation_similarity(model, tokens[1:])
    for key in ("sim_layer1", "sim_layer2"):
        expected = (n0 * alone0[key] + n1 * alone1[key]) / (n0 + n1)
        assert both[key] == pytest.approx(expected, abs=1e-6)


def test_decision_agreement_in_unit_interval_and_matches_decisions():
    torch.manual_seed(1)
    model = recognizer()
    tokens = random_tokens(n=64)
    agreement = decision_agreement(model, tokens)
    assert 0.0 <= agreement <= 1.0
    manual = (decisions(model, tokens) == decisions(model, tokens, limit=True)).float().mean().item()
    assert agreement == pytest.approx(manual)


def test_tied_attention_agrees_with_its_saturated_limit():
    torch.manual_seed(2)
    model = recognizer()
    with torch.no_grad():
        # zero queries: every score is 0, so softmax is already the uniform saturated average
        for block in model.blocks:
            d = block.attn.qkv.weight.shape[1]
            block.attn.qkv.weight[:d].zero_()
            block.attn.qkv.bias[:d].zero_()
    assert decision_agreement(model, random_tokens(n=64)) == 1.0


def test_ensemble_members_match_standalone_members():
    from satbench.models import Ensemble, ModelConfig

    ensemble = Ensemble(ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, d_ff=16), seeds=[0, 1])
    ensemble.train()
    shared = random_tokens()
    per_member = torch.stack([random_tokens(seed=0), random_tokens(seed=1)])
    for tokens in (shared, per_member):
        sims = member_saturation_similarity(ensemble, tokens)
        assert len(sims) == 2
        for i in range(2):
            alone = saturation_similarity(ensemble.member(i), tokens if tokens.dim() == 2 else tokens[i])
            assert sims[i] == pytest.approx(alone, abs=1e-5)
    assert ensemble.training


def test_limit_over_training_gives_each_member_its_own_numbers():
    """The probe strings' accuracies, agreement and tie shares, computed for all members in one go, are each
    member's own: as its standalone model gives them on its own strings (padding rows, label -1, left out)."""
    from satbench.models import Ensemble, ModelConfig, eval_mode, saturated_limit
    from satbench.models.objectives import judge_strings
    from satbench.probes.heads import query_mask_for
    from satbench.probes.saturation_similarity import limit_over_training
    from satbench.probes.ties import pooled_shares

    config = ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, d_ff=16, attention="saturated",
                         positional="none")  # equal tokens, equal keys: tie sets of several keys
    ensemble = Ensemble(config, seeds=[0, 1, 2])
    tokens = torch.stack([random_tokens(seed=seed) for seed in range(3)])
    labels = torch.stack([torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(s)) for s in range(3)])
    labels = labels.float()
    labels[1, 10:] = -1  # member 1 has fewer probe strings
    out = limit_over_training(ensemble, tokens, labels)
    assert len(out) == 3
    for i in range(3):
        model, real = ensemble.member(i), labels[i] >= 0
        with torch.no_grad(), eval_mode(model):
            exact = model(tokens[i])
            with saturated_limit(model):
                limit = model(tokens[i], internals=True)
        right_exact = judge_strings(exact, labels[i].clamp(min=0))[0][real]
        right_limit = judge_strings(limit, labels[i].clamp(min=0))[0][real]
        agree = ((exact["logit"] > 0) == (limit["logit"] > 0))[real]
        expected = {"acc_probe": right_exact.float().mean().item(), "acc_limit": right_limit.float().mean().item(),
                    "agree_limit": agree.float().mean().item(),
                    **pooled_shares(limit["attn"], limit["values"], query_mask_for(model, tokens[i]) & real[:, None])}
        assert out[i] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    assert any(member["split_share"] > 0 for member in out)  # ties were there to count
