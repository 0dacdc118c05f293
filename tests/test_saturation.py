"""saturate, scale_attention and saturated_limit: what they compute and that they always put the model back."""

import copy

import pytest
import torch

from satbench.models import (
    BOS,
    PAD,
    VARIANTS,
    Ensemble,
    ModelConfig,
    Recognizer,
    attention_layers,
    saturate,
    saturated_limit,
    scale_attention,
    uniform_attention,
)


def config(**overrides):
    values = dict(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32)
    values.update(overrides)
    return ModelConfig(**values)


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    return Recognizer(config(**overrides))


def batch(seed=0, rows=6, T=10):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 6, (rows, T), generator=g)
    tokens[:, 0] = BOS
    lengths = torch.randint(2, T + 1, (rows, 1), generator=g)
    return tokens.masked_fill(torch.arange(T) >= lengths, PAD)


def bits(model):
    return [p.detach().clone().view(torch.int32) for p in model.parameters()]


@pytest.mark.parametrize("attention", ["soft", "saturated", "hard"])
def test_saturated_causal_model_gives_future_and_padding_exactly_zero_weight(attention):
    model = build(attention=attention).eval()
    tokens = batch(1)
    T = tokens.shape[1]
    padded_keys = (tokens == PAD)[None, :, None, None, :]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    for context in (lambda: saturate(model, 1000.0), lambda: saturated_limit(model)):
        with context():
            attn = model(tokens, internals=True)["attn"]
        assert torch.isfinite(attn).all()
        assert torch.all(attn[..., future] == 0)
        assert torch.all(attn[padded_keys.expand_as(attn)] == 0)


def test_saturate_scales_every_parameter_and_restores_bit_exactly():
    model = build()
    before = bits(model)
    params = [p.detach().clone() for p in model.parameters()]
    with saturate(model, 1000.0) as same:
        assert same is model
        for p, original in zip(model.parameters(), params, strict=True):
            assert torch.equal(p, original * 1000.0)
    assert all(torch.equal(a, b) for a, b in zip(bits(model), before, strict=True))


def test_saturate_restores_bit_exactly_after_an_exception():
    model = build()
    before = bits(model)
    with pytest.raises(RuntimeError, match="boom"), saturate(model, 3.7):  # 3.7 * x / 3.7 != x for many x
        raise RuntimeError("boom")
    assert all(torch.equal(a, b) for a, b in zip(bits(model), before, strict=True))


def test_saturate_and_friends_accept_an_ensemble():
    ensemble = Ensemble(config(), seeds=[0, 1])
    before = bits(ensemble)
    tokens = batch(2)
    with saturate(ensemble, 7.0):
        scaled = ensemble(tokens)["logit"]
    assert all(torch.equal(a, b) for a, b in zip(bits(ensemble), before, strict=True))
    with saturate(ensemble.member(1), 7.0) as member:
        assert torch.allclose(scaled[1], member(tokens)["logit"], atol=1e-4)
    with saturated_limit(ensemble):
        limit = ensemble(tokens)["logit"]
    with saturated_limit(ensemble.member(0)) as member:
        assert torch.allclose(limit[0], member(tokens)["logit"], atol=1e-5)
    with scale_attention(ensemble, 5.0):
        sharpened = ensemble(tokens)["logit"]
    with scale_attention(ensemble.member(1), 5.0) as member:
        assert torch.allclose(sharpened[1], member(tokens)["logit"], atol=1e-5)
    assert not torch.allclose(sharpened, ensemble(tokens)["logit"], atol=1e-3)


def test_saturated_limit_equals_a_saturated_model_with_the_same_weights():
    soft = build(seed=5, attention="soft").eval()
    trained_saturated = build(seed=5, attention="saturated").eval()
    tokens = batch(3)
    with saturated_limit(soft):
        out = soft(tokens, internals=True)
    reference = trained_saturated(tokens, internals=True)
    assert torch.equal(out["attn"], reference["attn"])
    assert torch.allclose(out["logit"], reference["logit"])
    assert soft.blocks[0].attn.exact_override is None  # knob restored


def test_scale_attention_approaches_the_saturated_limit():
    # Without positions, equal tokens have equal keys: layer 0 has exact ties, which both sides must split evenly.
    model = build(seed=6, positional="none").eval()
    tokens = batch(4)
    with torch.no_grad(), saturated_limit(model):
        limit = model(tokens, internals=True)["attn"][0]  # layer 0: its scores do not depend on the scale upstream
    assert ((limit > 0) & (limit < 1)).any()  # some query splits its attention over a tie
    distances = []
    for c in (1.0, 10.0, 1e3):
        with torch.no_grad(), scale_attention(model, c):
            distances.append(float((model(tokens, internals=True)["attn"][0] - limit).abs().max()))
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 1e-3
    assert all(layer.logit_scale == 1.0 for layer in model.attention_layers())


def test_knobs_are_restored_after_an_exception():
    model = build()
    with pytest.raises(KeyError), scale_attention(model, 100.0), saturated_limit(model):
        assert all(layer.exact_override == "saturated" for layer in model.attention_layers())
        raise KeyError("x")
    assert all(layer.logit_scale == 1.0 and layer.exact_override is None for layer in model.attention_layers())


def test_infinite_scale_is_refused_with_a_pointer_to_saturated_limit():
    model = build()
    with pytest.raises(ValueError, match="saturated_limit"), saturate(model, float("inf")):
        pass
    with pytest.raises(ValueError, match="saturated_limit"), scale_attention(model, float("inf")):
        pass


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("layer_norm", ["post", "pre"])
def test_padding_never_changes_a_logit_at_any_scale(seed, layer_norm):
    """Trailing PADs change the shapes of every matmul, hence the fp32 rounding of every score. Under saturate(c) the
    scores grow to ~1e11, where an absolute tie tolerance held no tie, so which keys tied (and the logit) depended on
    the padding; the relative tolerance keeps the tie sets, and with them the logit."""
    torch.manual_seed(seed)
    model = Recognizer(ModelConfig(vocab_size=6, d_model=32, n_heads=2, n_layers=2, d_ff=64, attention="saturated",
                                   positional="none", layer_norm=layer_norm)).eval()
    g = torch.Generator().manual_seed(100 + seed)
    strings = torch.randint(3, 6, (16, 9), generator=g)
    tokens = torch.cat([torch.full((16, 1), BOS), strings], dim=1)
    padded = torch.cat([tokens, torch.full((16, 4), PAD)], dim=1)
    for context in (lambda: saturate(model, 1.0), lambda: saturate(model, 1000.0), lambda: saturated_limit(model),
                    lambda: scale_attention(model, 1e30)):
        with torch.no_grad(), context():
            plain, extra = model(tokens)["logit"], model(padded)["logit"]
        torch.testing.assert_close(extra, plain, rtol=1e-4, atol=1e-5)


def test_a_future_token_never_changes_a_prefix_logit_at_a_huge_scale():
    """scale_attention(3e38) used to overflow the scores of future keys to +inf, and a masked +inf poisoned the row."""
    model = build(attention="soft", positional="none").eval()
    tokens = batch(3)
    longer = torch.cat([tokens, torch.full((len(tokens), 1), 4)], dim=1)
    longer[:, -1] = torch.where(tokens[:, -1] == PAD, PAD, 4)
    real = tokens != PAD
    with torch.no_grad(), scale_attention(model, 3e38):
        short_logits, long_logits = model(tokens)["prefix_logits"], model(longer)["prefix_logits"][:, :-1]
    assert torch.isfinite(short_logits).all()
    torch.testing.assert_close(long_logits[real], short_logits[real])


@pytest.mark.parametrize("seed", range(3))
def test_in_the_homogeneous_block_parameter_scaling_is_logit_scaling_by_c_to_the_4(seed):
    """x + LN(f(x)) without biases or fixed positions: f(x; c theta) = c^2 f_{logits * c^4}(x; theta) (derived in
    models/recognizer.py, Block). Exact in float64 once LN's epsilon is 0; with it, the decisions still agree."""
    model = build(seed, attention="soft", positional="none", layer_norm="branch", bias=False, d_model=32).eval()
    tokens = batch(seed, rows=32, T=12)

    def both(model, c):
        with torch.no_grad():
            with saturate(model, c):
                by_parameters = model(tokens)["logit"]
            with scale_attention(model, c ** 4):
                by_logits = model(tokens)["logit"]
        return by_parameters, by_logits

    for c in (0.7, 2.0, 3.0, 10.0):
        by_parameters, by_logits = both(model, c)
        assert torch.equal(by_parameters > 0, by_logits > 0)
    exact = copy.deepcopy(model).double()
    for norm in exact.modules():
        if isinstance(norm, torch.nn.LayerNorm):
            norm.eps = 0.0
    for c in (0.7, 2.0, 3.0, 10.0):
        by_parameters, by_logits = both(exact, c)
        torch.testing.assert_close(by_parameters, c ** 2 * by_logits, rtol=1e-10, atol=1e-12)


def test_outside_the_homogeneous_block_parameter_scaling_is_not_a_temperature():
    """The pre-LN block with biases: scaling the parameters by 2 matches no logit scale of the form 2^k."""
    model = build(0, attention="soft", positional="none", layer_norm="pre", bias=True, d_model=32).eval()
    tokens = batch(0, rows=32, T=12)
    with torch.no_grad():
        with saturate(model, 2.0):
            by_parameters = model(tokens)["logit"]
        for k in range(7):
            with scale_attention(model, 2.0 ** k):
                by_logits = model(tokens)["logit"]
            ratio = by_parameters / by_logits
            assert (ratio.max() - ratio.min()) > 1e-2 * ratio.abs().mean()


def test_saturated_limit_of_one_layer_saturates_that_layer_alone():
    model = build(seed=7).eval()
    tokens = batch(5)
    with torch.no_grad():
        as_trained = model(tokens, internals=True)
        with saturated_limit(model, layers=[0]):
            first_alone = model(tokens, internals=True)
            assert [layer.exact_override for layer in model.attention_layers()] == ["saturated", None]
        assert all(layer.exact_override is None for layer in model.attention_layers())  # restored
        model.blocks[0].attn.exact_override = "saturated"  # the same by hand
        by_hand = model(tokens, internals=True)
        model.blocks[0].attn.exact_override = None
        with saturated_limit(model):
            every = model(tokens, internals=True)
    assert torch.equal(first_alone["logit"], by_hand["logit"]) and torch.equal(first_alone["attn"], by_hand["attn"])
    assert torch.equal(first_alone["attn"][0], every["attn"][0])  # layer 0: saturated, from the same inputs
    assert not torch.allclose(first_alone["attn"][0], as_trained["attn"][0], atol=1e-3)
    # Layer 1 still computes softmax, of scores that layer 0's saturation changed.
    assert torch.allclose(first_alone["attn"][1], first_alone["scores"][1].softmax(dim=-1), atol=1e-6)
    assert not torch.allclose(first_alone["attn"][1], every["attn"][1], atol=1e-3)
    with pytest.raises(ValueError, match="layers"), saturated_limit(model, layers=[2]):
        pass


def test_an_ensemble_has_one_attention_layer_per_block_in_block_order():
    ensemble = Ensemble(config(n_layers=3), seeds=[0, 1])
    layers = attention_layers(ensemble)
    assert len(layers) == 3 and all(a is block.attn for a, block in zip(layers, ensemble.stacked.blocks, strict=True))
    tokens = batch(6)
    with torch.no_grad(), saturated_limit(ensemble, layers=[1]):
        stacked = ensemble(tokens)["logit"]
    with torch.no_grad(), saturated_limit(ensemble.member(1), layers=[1]) as member:
        assert torch.allclose(stacked[1], member(tokens)["logit"], atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_uniform_attention_weighs_the_allowed_keys_alike_and_restores(causal):
    model = build(seed=8, causal=causal).eval()
    tokens = batch(7)
    with torch.no_grad():
        before = model(tokens)["logit"]
        with uniform_attention(model):
            attn = model(tokens, internals=True)["attn"]  # (L, B, H, T, T)
            assert all(layer.exact_override == "uniform" for layer in model.attention_layers())
        assert torch.equal(model(tokens)["logit"], before)
    assert all(layer.exact_override is None for layer in model.attention_layers())
    assert "uniform" not in VARIANTS  # a control: no model trains with it
    T = tokens.shape[1]
    real = tokens != PAD
    allowed = real[:, None, :] & (torch.ones(T, T, dtype=torch.bool).tril() if causal else True)  # (B, T, T)
    expected = (allowed / allowed.sum(-1, keepdim=True))[None, :, None].float().expand_as(attn)
    queries = real[None, :, None, :, None]  # real queries; a padded query's row is never read
    assert torch.equal(torch.where(queries, attn, 0), torch.where(queries, expected, 0))
    if causal:  # 1 / (i + 1) on every key up to query i
        assert torch.equal(attn[0, 0, 0, 3, :4], torch.full((4,), 0.25))
    with pytest.raises(KeyError), uniform_attention(model):
        raise KeyError("x")
    assert all(layer.exact_override is None for layer in model.attention_layers())
