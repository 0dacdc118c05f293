"""The Recognizer: config validation, output contract, masking, padding independence, prefixes, parameter norm."""

import itertools

import pytest
import torch

from satbench.models import BOS, PAD, ModelConfig, Recognizer, parameter_norm
from satbench.models.attention import VARIANTS as REGISTERED

VARIANTS = tuple(REGISTERED)  # the built-in variants, as this module is imported


def small_config(**overrides) -> ModelConfig:
    values = dict(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=24)
    values.update(overrides)
    return ModelConfig(**values)


def build(seed=0, **overrides) -> Recognizer:
    torch.manual_seed(seed)
    return Recognizer(small_config(**overrides))


def strings(seed, count=6, lo=0, hi=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 6, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g).tolist()
            for _ in range(count)]


def pad(batch, T):
    """BOS + string + PAD up to T columns."""
    tokens = torch.full((len(batch), T), PAD, dtype=torch.long)
    for row, s in enumerate(batch):
        tokens[row, 0] = BOS
        tokens[row, 1 : 1 + len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens


def test_bad_config_values_raise_one_line_errors():
    with pytest.raises(ValueError, match=r"^model\.attention: 'sofft' is not one of soft, saturated, hard$"):
        small_config(attention="sofft")
    with pytest.raises(ValueError, match=r"^model\.positional: 'rope' is not one of"):
        small_config(positional="rope")
    with pytest.raises(ValueError, match=r"^model\.d_model: 30 is not divisible by model\.n_heads = 4$"):
        small_config(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"^model\.n_layers: 0 is not a positive integer$"):
        small_config(n_layers=0)
    with pytest.raises(ValueError, match=r"^model\.tol: -1"):
        small_config(tol=-1.0)
    with pytest.raises(ValueError, match=r"^model\.causal: 'yes' is not true or false$"):
        small_config(causal="yes")
    with pytest.raises(ValueError, match=r"^model\.d_modle: unknown field"):
        ModelConfig.from_dict({"vocab_size": 6, "d_modle": 8})
    assert ModelConfig.from_dict(small_config().to_dict()) == small_config()


@pytest.mark.parametrize(
    "attention,causal,positional,layer_norm,bias",
    [("soft", True, "sinusoidal", "pre", True), ("saturated", False, "learned", "post", False),
     ("hard", True, "fraction", "none", True), ("soft", False, "none", "pre", False),
     ("saturated", True, "none", "branch", False)],
)
def test_output_shapes(attention, causal, positional, layer_norm, bias):
    model = build(attention=attention, causal=causal, positional=positional, layer_norm=layer_norm, bias=bias)
    tokens = pad(strings(0), 10)
    out = model(tokens, internals=True)
    assert out["logit"].shape == (6,)
    assert out["prefix_logits"].shape == (6, 10)
    assert out["hidden"].shape == (3, 6, 10, 16)
    assert out["attn"].shape == (2, 6, 2, 10, 10)
    assert set(model(tokens)) == {"logit", "prefix_logits"}
    if not bias:
        assert not any(name.endswith("bias") for name, _ in model.named_parameters())


@pytest.mark.parametrize("attention,causal,training", list(itertools.product(VARIANTS, (True, False), (True, False))))
def test_attention_never_reaches_padding_or_the_future(attention, causal, training):
    model = build(attention=attention, causal=causal).train(training)
    batch = strings(1, lo=1)
    tokens = pad(batch, 11)
    attn = model(tokens, internals=True)["attn"]  # (L, B, H, T, T)
    real = tokens != PAD
    padded_keys = (~real)[None, :, None, None, :].expand_as(attn)
    assert padded_keys.any() and torch.all(attn[padded_keys] == 0)
    if causal:
        future = torch.ones(11, 11, dtype=torch.bool).triu(diagonal=1)
        assert torch.all(attn[..., future] == 0)
    # Each real query's weights sum to one.
    sums = attn.sum(dim=-1)  # (L, B, H, T)
    assert torch.allclose(sums.permute(1, 3, 0, 2)[real], torch.ones(1), atol=1e-6)


@pytest.mark.parametrize(
    "attention,causal,positional,training",
    [(a, c, p, t) for a in VARIANTS for c in (True, False) for p in ("sinusoidal", "learned", "fraction", "none")
     for t in (False, True)],
)
def test_outputs_do_not_depend_on_trailing_padding(attention, causal, positional, training):
    model = build(attention=attention, causal=causal, positional=positional).train(training)
    batch = strings(2)
    short, long = pad(batch, 9), pad(batch, 16)
    a, b = model(short, internals=True), model(long, internals=True)
    assert torch.allclose(a["logit"], b["logit"], atol=1e-5)
    assert torch.allclose(a["prefix_logits"], b["prefix_logits"][:, :9], atol=1e-5)
    assert torch.all(b["prefix_logits"][:, 9:] == 0)
    real = short != PAD
    assert torch.allclose(a["hidden"][:, real], b["hidden"][:, :, :9][:, real], atol=1e-5)
    # The fused CUDA path would skip the padding mask for causal models; the CPU path is the same computation.
    assert torch.allclose(model(short)["logit"], a["logit"], atol=1e-6)


@pytest.mark.parametrize("attention", VARIANTS)
def test_causal_prefix_logits_are_the_logits_of_the_prefixes(attention):
    model = build(attention=attention, causal=True).eval()
    s = [3, 4, 4, 5, 3, 5, 4]
    full = model(pad([s], 8))["prefix_logits"][0]
    alone = model(pad([s[:i] for i in range(len(s) + 1)], 8))["logit"]
    assert torch.allclose(full, alone, atol=1e-5)


def test_membership_logit_is_read_at_the_last_real_position_or_at_bos():
    tokens = pad(strings(3, lo=1), 10)
    last = (tokens != PAD).sum(dim=1) - 1
    causal = build(causal=True)(tokens)
    assert torch.equal(causal["logit"], causal["prefix_logits"][torch.arange(6), last])
    bidirectional = build(causal=False)(tokens)
    assert torch.equal(bidirectional["logit"], bidirectional["prefix_logits"][:, 0])


def test_an_all_padding_row_gives_finite_outputs_and_gradients():
    for attention in VARIANTS:
        model = build(attention=attention).train()
        tokens = pad(strings(4, lo=1), 9)
        tokens[2] = PAD
        out = model(tokens, internals=True)
        assert all(torch.isfinite(v).all() for key, v in out.items() if key != "scores")  # scores: -inf where masked
        (out["logit"].sum() + out["prefix_logits"].sum()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_training_mode_forward_is_exact_for_ste_and_annealed_for_anneal():
    tokens = pad(strings(5, lo=2), 10)
    ste = build(attention="saturated", surrogate="ste")
    exact = ste.eval()(tokens)["logit"]
    assert torch.allclose(ste.train()(tokens)["logit"], exact, atol=1e-5)

    anneal = build(attention="saturated", surrogate="anneal").train()
    soft = build(attention="soft").train()  # same seed, same weights
    anneal.set_inverse_temperature(1.0)
    assert torch.allclose(anneal(tokens)["logit"], soft(tokens)["logit"], atol=1e-6)
    anneal.set_inverse_temperature(1e4)
    assert torch.allclose(anneal(tokens)["logit"], anneal.eval()(tokens)["logit"], atol=1e-3)


def test_learned_positions_reject_inputs_longer_than_max_len():
    model = build(positional="learned", max_len=8)
    with pytest.raises(ValueError, match="exceeds model.max_len = 8"):
        model(pad(strings(0), 9))


def test_parameter_norm_excludes_embeddings_and_counts_everything_else():
    for positional in ("learned", "fraction"):
        model = build(positional=positional)
        expected = torch.sqrt(sum(p.double().pow(2).sum() for name, p in model.named_parameters()
                                  if "embedding" not in name)).item()
        assert parameter_norm(model) == pytest.approx(expected, rel=1e-12)
        with torch.no_grad():
            model.token_embedding.weight.mul_(5)
            model.positions.position_embedding.weight.mul_(5)
        assert parameter_norm(model) == pytest.approx(expected, rel=1e-12)
        with torch.no_grad():
            model.head.weight.add_(1.0)
        assert parameter_norm(model) > expected


def test_same_seed_same_model():
    tokens = pad(strings(6), 9)
    assert torch.equal(build(seed=3)(tokens)["logit"], build(seed=3)(tokens)["logit"])
    assert not torch.equal(build(seed=3)(tokens)["logit"], build(seed=4)(tokens)["logit"])


@pytest.mark.parametrize(
    "overrides",
    [dict(causal=True), dict(causal=False), dict(attention="saturated", surrogate="anneal", causal=True)],
    ids=["causal", "bidirectional", "anneal"],
)
def test_fused_softmax_path_matches_the_explicit_one(overrides):
    fused, explicit = build(seed=8, **overrides).train(), build(seed=8, **overrides).train()
    for layer in explicit.attention_layers():
        layer.fused_devices = ()
    for model in (fused, explicit):
        model.set_inverse_temperature(3.0)
    tokens = pad(strings(7), 10)
    real = tokens != PAD
    a, b = fused(tokens), explicit(tokens)
    assert torch.allclose(a["logit"], b["logit"], atol=1e-5)
    assert torch.allclose(a["prefix_logits"][real], b["prefix_logits"][real], atol=1e-5)
    a["logit"].sum().backward()
    b["logit"].sum().backward()
    for (name, p), q in zip(fused.named_parameters(), explicit.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
