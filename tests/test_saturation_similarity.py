import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from satbench.probes.saturation_similarity import (
    balanced_accuracy,
    cohen_kappa,
    decision_kappa,
    decisions,
    distance_to_saturation,
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


def test_cohen_kappa_is_sklearns_for_every_member():
    generator = torch.Generator().manual_seed(0)
    rates = torch.tensor([0.1, 0.5, 0.9, 0.5, 0.3])[:, None]  # members that accept rarely, evenly, mostly
    a = torch.rand(5, 40, generator=generator) < rates
    b = (torch.rand(5, 40, generator=generator) < 0.8) == a  # mostly alike, so kappa is far from 0
    b[3] = torch.rand(40, generator=generator) < 0.5  # independent of a: kappa near 0, either sign
    real = torch.ones(5, 40, dtype=torch.bool)
    real[1, 25:] = False  # a member with fewer strings: its padding rows must not count
    kappa = cohen_kappa(a, b, real)
    for i in range(5):
        expected = cohen_kappa_score(a[i][real[i]].numpy(), b[i][real[i]].numpy())
        assert kappa[i].item() == pytest.approx(expected, abs=1e-12)
    assert kappa[0] > 0.3 and kappa[2] > 0.3


def test_cohen_kappa_of_constant_classifiers():
    ones, zeros, real = torch.ones(2, 8, dtype=torch.bool), torch.zeros(2, 8, dtype=torch.bool), torch.ones(2, 8) > 0
    assert torch.isnan(cohen_kappa(ones, ones, real)).all()  # alike by necessity: nothing beyond chance to measure
    assert torch.isnan(cohen_kappa(zeros, zeros, real)).all()
    assert cohen_kappa(ones, zeros, real).tolist() == [0.0, 0.0] == [cohen_kappa_score([1] * 8, [0] * 8)] * 2
    varied = torch.arange(8).expand(2, 8) % 2 == 0
    assert cohen_kappa(varied, ones, real).tolist() == [0.0, 0.0]  # a constant side agrees only by chance


def test_balanced_accuracy_is_sklearns_and_half_for_a_constant_classifier():
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(4, 30, generator=generator) < torch.tensor([[0.5], [0.2], [0.8], [0.5]])).float()
    decided = torch.rand(4, 30, generator=generator) < 0.6
    decided[0] = labels[0] > 0.5  # right everywhere
    decided[1] = True  # constant, on unbalanced labels
    labels[3, 20:] = -1  # padding rows of a member with fewer strings
    score = balanced_accuracy(decided, labels)
    for i in range(4):
        real = labels[i] >= 0
        expected = balanced_accuracy_score(labels[i][real].numpy(), decided[i][real].numpy().astype(float))
        assert score[i].item() == pytest.approx(expected, abs=1e-12)
    assert score[0].item() == 1.0 and score[1].item() == 0.5
    only_members = balanced_accuracy(torch.tensor([[True, False, True]]), torch.tensor([[1.0, 1.0, 1.0]]))
    assert only_members.item() == pytest.approx(2 / 3)  # the absent class is left out, as sklearn does


def test_decision_kappa_reads_the_decisions_at_c_1_and_at_the_limit():
    torch.manual_seed(1)
    model = recognizer()
    tokens = random_tokens(n=64)
    with torch.no_grad():
        model.head.bias.fill_(-float(model(tokens)["logit"].median()))  # both decisions occur at c = 1
    exact, limit = decisions(model, tokens), decisions(model, tokens, limit=True)
    assert 0 < limit.float().mean() < 1 and not torch.equal(exact, limit)  # neither trivial nor identical
    kappa = decision_kappa(model, tokens)
    assert kappa == pytest.approx(cohen_kappa_score(exact.numpy(), limit.numpy()), abs=1e-12)
    assert 0 < kappa < 1


def test_tied_attention_agrees_with_its_saturated_limit_beyond_chance():
    torch.manual_seed(2)
    model = recognizer()
    with torch.no_grad():
        # zero queries: every score is 0, so softmax is already the uniform saturated average
        for block in model.blocks:
            d = block.attn.qkv.weight.shape[1]
            block.attn.qkv.weight[:d].zero_()
            block.attn.qkv.bias[:d].zero_()
        model.head.bias.fill_(-float(model(random_tokens(n=64))["logit"].median()))  # both decisions occur
    tokens = random_tokens(n=64)
    assert 0 < decisions(model, tokens).float().mean() < 1
    assert decision_kappa(model, tokens) == 1.0


def planted_scores(T=6, seed=0):
    """(1, 1, B, H, T, T) causal scores: row 0 of each head all equal (exactly uniform), the rest random."""
    scores = torch.randn(1, 1, 3, 2, T, T, generator=torch.Generator().manual_seed(seed))
    scores[..., 2, :] = 0.7  # query 2 of every string and head: all its keys tie
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf"))


def test_distance_to_saturation_falls_with_the_scale_and_is_zero_on_ties():
    scores = planted_scores()
    queries = torch.ones(1, 3, scores.shape[-1], dtype=torch.bool)
    distances = []
    for c in (1.0, 3.0, 10.0, 100.0):
        attn = (c * scores).softmax(dim=-1)
        distances.append(distance_to_saturation(attn, scores, queries, [1e-5]).item())
        tied = torch.zeros_like(queries)
        tied[..., 2] = True  # only the query whose keys all tie: softmax is already its limit at any c
        assert distance_to_saturation(attn, scores, tied, [1e-5]).item() == pytest.approx(0.0, abs=1e-7)
    assert distances[0] > distances[1] > distances[2] > distances[3]
    assert distances[0] > 0.1 and distances[3] < 0.01 * distances[0]
    # By hand for c = 1: 0.5 sum_j |a_ij - sat_ij| over the 3 x 2 x T queries.
    attn = scores.softmax(dim=-1)
    top = scores == scores.amax(dim=-1, keepdim=True)
    limit = top / top.sum(dim=-1, keepdim=True)
    assert distances[0] == pytest.approx(float(0.5 * (attn - limit).abs().sum(-1).mean()), abs=1e-6)


def test_distance_to_saturation_of_the_exact_variants():
    """Zero for saturated attention, whose weights are its own limit; for hard attention 1 - 1/|M| on a query whose
    tied set M has several keys (positions none: equal tokens have equal keys, so layer 0 ties)."""
    from satbench.models import eval_mode
    from satbench.probes.heads import query_mask_for

    tokens = random_tokens(n=8)
    queries = query_mask_for(recognizer(), tokens)[None]
    for attention in ("saturated", "hard"):
        torch.manual_seed(3)
        model = recognizer(attention=attention, positional="none")
        with torch.no_grad(), eval_mode(model):
            out = model(tokens, internals=True)
        tols = [layer.tol for layer in model.attention_layers()]
        distance = distance_to_saturation(out["attn"][None], out["scores"][None], queries, tols)[0]
        if attention == "saturated":
            assert distance.tolist() == [0.0, 0.0]
        else:
            tied = (out["scores"][0] >= out["scores"][0].amax(-1, keepdim=True) - 1e-5).sum(-1)  # layer 0: |M|
            expected = ((1 - 1 / tied.double()) * queries[0][:, None]).sum() / (queries.sum() * tied.shape[1])
            assert distance[0].item() == pytest.approx(expected.item(), abs=1e-6) and distance[0] > 0


def test_distance_to_saturation_falls_as_the_attention_scale_grows():
    """The exact forward's own internals under scale_attention: its weights are softmax(c s), its scores those at
    c = 1, so layer 0 (whose scores do not depend on c) moves towards its saturated weights as c grows."""
    from satbench.models import eval_mode, scale_attention
    from satbench.probes.heads import query_mask_for

    torch.manual_seed(4)
    model = recognizer()
    tokens = random_tokens(n=8)
    queries = query_mask_for(model, tokens)[None]
    distances = []
    for c in (1.0, 10.0, 1000.0):
        with torch.no_grad(), eval_mode(model), scale_attention(model, c):
            out = model(tokens, internals=True)
        distances.append(distance_to_saturation(out["attn"][None], out["scores"][None], queries, [1e-5, 1e-5])[0, 0])
    assert distances[0] > distances[1] > distances[2]


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
    """The probe strings' accuracies, kappa, balanced accuracies, per-layer numbers and tie shares, computed for all
    members in one go, are each member's own: as its standalone model gives them on its own strings (padding rows,
    label -1, left out), kappa and balanced accuracy as scikit-learn computes them."""
    from satbench.models import Ensemble, ModelConfig, eval_mode, saturated_limit, saturated_weights, uniform_attention
    from satbench.models.objectives import judge_strings
    from satbench.probes.heads import query_mask_for
    from satbench.probes.saturation_similarity import limit_over_training
    from satbench.probes.ties import pooled_shares

    config = ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, d_ff=16, attention="soft",
                         positional="none")  # equal tokens, equal keys: tie sets of several keys at the limit
    ensemble = Ensemble(config, seeds=[0, 1, 2])
    tokens = torch.stack([random_tokens(seed=seed) for seed in range(3)])
    labels = torch.stack([torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(s)) for s in range(3)])
    labels = labels.float()
    labels[1, 10:] = -1  # member 1 has fewer probe strings
    with torch.no_grad():  # every member decides both ways at c = 1, so that kappa has something to compare
        for member, logits in enumerate(ensemble.eval()(tokens)["logit"]):
            distinct = logits.unique()  # sorted; the threshold halfway between two of them, far from any logit
            middle = len(distinct) // 2
            ensemble.stacked.head.bias[member] -= (distinct[middle - 1] + distinct[middle]) / 2
    out = limit_over_training(ensemble.train(), tokens, labels)
    assert len(out) == 3
    for i in range(3):
        model, real = ensemble.member(i), labels[i] >= 0
        targets = labels[i].clamp(min=0)

        def accuracy(result):
            return judge_strings(result, targets)[0][real].float().mean().item()  # noqa: B023

        with torch.no_grad(), eval_mode(model):
            exact = model(tokens[i], internals=True)
            with saturated_limit(model):
                limit = model(tokens[i], internals=True)
            alone = []
            for layer in range(2):
                with saturated_limit(model, layers=[layer]):
                    alone.append(accuracy(model(tokens[i])))
            with uniform_attention(model):
                uniform = accuracy(model(tokens[i]))
        said, said_at_limit = (exact["logit"] > 0)[real].numpy(), (limit["logit"] > 0)[real].numpy()
        queries = query_mask_for(model, tokens[i]) & real[:, None]
        distances = []
        for layer in range(2):
            scores = exact["scores"][layer]
            limit_weights = saturated_weights(scores, scores > float("-inf"), model.attention_layers()[layer].tol)
            tv = 0.5 * (exact["attn"][layer] - limit_weights).abs().sum(-1)  # (B, H, T)
            distances.append(tv.permute(0, 2, 1)[queries].mean().item())
        expected = {"acc_probe": accuracy(exact), "acc_limit": accuracy(limit),
                    "acc_limit_layer0": alone[0], "acc_limit_layer1": alone[1], "acc_uniform": uniform,
                    "kappa_limit": cohen_kappa_score(said, said_at_limit),
                    "balanced_acc_probe": balanced_accuracy_score(labels[i][real].numpy(), said.astype(float)),
                    "balanced_acc_limit": balanced_accuracy_score(labels[i][real].numpy(), said_at_limit.astype(float)),
                    "tv_limit_layer0": distances[0], "tv_limit_layer1": distances[1], "tv_limit": np.mean(distances),
                    **pooled_shares(limit["attn"], limit["values"], queries)}
        assert out[i] == pytest.approx(expected, abs=1e-6, nan_ok=True)
        assert 0 < said.mean() < 1  # kappa was defined
    assert any(member["split_share"] > 0 for member in out)  # ties were there to count
    assert all(member["tv_limit"] > 0 for member in out)  # soft attention at init is far from its limit


def test_next_symbol_targets_leave_kappa_and_balanced_accuracy_undefined():
    from satbench.models import Ensemble, ModelConfig
    from satbench.probes.saturation_similarity import limit_over_training

    ensemble = Ensemble(ModelConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                                    next_symbols=True), seeds=[0, 1])
    tokens = torch.stack([random_tokens(n=6, seed=seed) for seed in range(2)])
    next_labels = torch.randint(0, 2, (*tokens.shape, VOCAB), generator=torch.Generator().manual_seed(0))
    next_labels = next_labels.to(torch.int8).masked_fill((tokens == 0)[..., None], -1)
    out = limit_over_training(ensemble, tokens, torch.ones(2, 6), next_labels)
    for member in out:
        assert math.isnan(member["kappa_limit"]) and math.isnan(member["balanced_acc_limit"])
        assert 0 <= member["acc_limit"] <= 1 and member["acc_limit_layer0"] == member["acc_limit"]
        assert member["tv_limit"] == member["tv_limit_layer0"] > 0
