"""model.qk_norm and model.attention_scale: queries and keys of unit length per head, so a score is attention_scale *
cos(q, k), a scale that no weight can change. Every attention path must compute the same scores: fused and explicit,
stacked and standalone, and the internals the probes read."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from satbench.cli import main
from satbench.harness import config as C
from satbench.models import BOS, PAD, Ensemble, ModelConfig, Recognizer
from satbench.models.saturation import saturated_limit

SMALL = dict(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32)
SEEDS = [11, 3, 7]


def config(**overrides) -> ModelConfig:
    return ModelConfig(**{**SMALL, **overrides})


def build(seed=0, **overrides) -> Recognizer:
    torch.manual_seed(seed)
    return Recognizer(config(**overrides))


def batch(seed=0, B=64, T=12, M=None):
    """(B, T) tokens (or (M, B, T), a batch per member): BOS, random symbols, padding after a random length; and
    labels of the same leading shape."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, T) if M is None else (M, B, T)
    tokens = torch.randint(3, 6, shape, generator=g)
    tokens[..., 0] = BOS
    lengths = torch.randint(1, T + 1, (*shape[:-1], 1), generator=g)
    tokens = tokens.masked_fill(torch.arange(T) >= lengths, PAD)
    return tokens, torch.randint(0, 2, shape[:-1], generator=g).float()


@torch.no_grad()
def scale_queries_and_keys(model: Recognizer, q_factor: float, k_factor: float, heads=None) -> None:
    """Multiply each layer's query map by q_factor and its key map by k_factor: their rows of qkv.weight and of its
    bias, for the heads `heads` (all by default)."""
    for layer in model.attention_layers():
        d, hd = layer.qkv.weight.shape[1], layer.head_dim
        for head in range(layer.n_heads) if heads is None else heads:
            for start, factor in ((0, q_factor), (d, k_factor)):
                rows = slice(start + head * hd, start + (head + 1) * hd)
                layer.qkv.weight[rows] *= factor
                if layer.qkv.bias is not None:
                    layer.qkv.bias[rows] *= factor


def logits_at_the_limit(model, tokens):
    with torch.no_grad(), saturated_limit(model):
        return model(tokens)["logit"]


ARCHITECTURES = [dict(), dict(positional="none"), dict(causal=False, layer_norm="branch", bias=False)]
ARCHITECTURE_IDS = ["pre-ln", "ties", "bidirectional-homogeneous"]
# q and k factors over 1e-3..1e3, none whose product is 1 (which would leave q.k unchanged without any normalisation);
# the last pair scales head 0 alone, which a norm over the whole q would not ignore.
FACTORS = [(1e-3, 1e-3, None), (1e3, 1e3, None), (1e-3, 1e2, None), (7.0, 0.02, None), (1e3, 1e-2, [0])]
FACTOR_IDS = ["small", "large", "opposite", "uneven", "one-head"]


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=ARCHITECTURE_IDS)
@pytest.mark.parametrize("q_factor,k_factor,heads", FACTORS, ids=FACTOR_IDS)
def test_with_qk_norm_the_scale_of_w_q_and_w_k_changes_no_decision(overrides, q_factor, k_factor, heads):
    model = build(seed=5, qk_norm=True, **overrides).eval()
    tokens, _ = batch()
    before_limit, before_soft = logits_at_the_limit(model, tokens), model(tokens)["logit"].detach()
    scale_queries_and_keys(model, q_factor, k_factor, heads)
    after_limit, after_soft = logits_at_the_limit(model, tokens), model(tokens)["logit"].detach()
    assert torch.equal(after_limit > 0, before_limit > 0)
    # The limit's weights are 1/|M| on the same tie sets; only the rounding of cos(q, k) could move a key across the
    # tie floor, and none lies that close to it.
    assert torch.allclose(after_limit, before_limit, atol=1e-6, rtol=0)
    assert torch.allclose(after_soft, before_soft, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=ARCHITECTURE_IDS)
def test_the_invariance_test_sees_a_head_that_turns(overrides):
    # Turning one head's queries (not scaling them) must change the limit's logits beyond the tolerance above, or
    # that test could not fail.
    model = build(seed=5, qk_norm=True, **overrides).eval()
    tokens, _ = batch()
    before = logits_at_the_limit(model, tokens)
    layer = model.attention_layers()[0]
    with torch.no_grad():
        turned = torch.randn(layer.head_dim, layer.qkv.weight.shape[1], generator=torch.Generator().manual_seed(1))
        layer.qkv.weight[:layer.head_dim] = turned * layer.qkv.weight[:layer.head_dim].norm() / turned.norm()
    after = logits_at_the_limit(model, tokens)
    assert (after - before).abs().max() > 1e-2


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=ARCHITECTURE_IDS)
@pytest.mark.parametrize("q_factor,k_factor,heads", [f for f in FACTORS if f[0] * f[1] != 1],
                         ids=[i for f, i in zip(FACTORS, FACTOR_IDS, strict=True) if f[0] * f[1] != 1])
def test_without_qk_norm_the_same_scaling_changes_the_soft_model(overrides, q_factor, k_factor, heads):
    model = build(seed=5, **overrides).eval()
    tokens, _ = batch()
    before = model(tokens)["logit"].detach()
    scale_queries_and_keys(model, q_factor, k_factor, heads)
    assert (model(tokens)["logit"].detach() - before).abs().max() > 1e-3


@pytest.mark.parametrize("attention_scale", [None, 5.0, 0.25])
@pytest.mark.parametrize("layer_norm", ["pre", "post"])
def test_the_scores_the_probes_read_are_the_scale_times_the_cosine(attention_scale, layer_norm):
    model = build(seed=2, qk_norm=True, attention_scale=attention_scale, layer_norm=layer_norm).eval()
    scale = math.sqrt(SMALL["d_model"] // SMALL["n_heads"]) if attention_scale is None else attention_scale
    assert model.config.attention_scale == scale
    tokens, _ = batch(B=8)
    with torch.no_grad():
        out = model(tokens, internals=True)
        for index, block in enumerate(model.blocks):
            x = out["hidden"][index]
            x = block.ln_1(x) if layer_norm == "pre" else x
            q, k, _ = block.attn.qkv(x).split(SMALL["d_model"], dim=-1)
            q, k = (t.unflatten(-1, (SMALL["n_heads"], -1)).transpose(1, 2) for t in (q, k))  # (B, H, T, hd)
            cosine = F.cosine_similarity(q[..., :, None, :], k[..., None, :, :], dim=-1)
            scores = out["scores"][index]
            seen = scores > float("-inf")
            assert seen.any(dim=-1).all()
            assert torch.allclose(scores[seen], (scale * cosine)[seen], atol=1e-5)
            assert scores[seen].abs().max() <= scale * (1 + 1e-6)


def sdpa_calls(model, tokens, labels):
    """Forward and backward of a training step; returns the number of fused attention kernel calls it made."""
    with torch.profiler.profile() as profile:
        F.binary_cross_entropy_with_logits(model(tokens)["logit"], labels).backward()
    return sum(event.count for event in profile.key_averages() if "scaled_dot_product" in event.key)


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(causal=False), dict(attention_scale=6.0),
     dict(attention="saturated"), dict(attention="saturated", positional="none"),
     dict(attention="saturated", causal=False, attention_scale=0.5), dict(attention="hard", positional="none"),
     dict(attention="saturated", surrogate="anneal")],
    ids=["soft", "soft-bidirectional", "soft-scale-6", "saturated-ste", "saturated-ste-ties",
         "saturated-ste-bidirectional-scale-half", "hard-ste-ties", "saturated-anneal"],
)
def test_the_fused_training_path_equals_the_explicit_one_with_qk_norm(overrides):
    fused, explicit = build(seed=8, qk_norm=True, **overrides).train(), build(seed=8, qk_norm=True, **overrides).train()
    for layer in explicit.attention_layers():
        layer.fused_devices = ()
    for model in (fused, explicit):
        model.set_inverse_temperature(3.0)
    tokens, labels = batch(seed=7, B=16, T=10)
    real = tokens != PAD
    a, b = fused(tokens), explicit(tokens)
    assert torch.allclose(a["logit"], b["logit"], atol=1e-5)
    assert torch.allclose(a["prefix_logits"][real], b["prefix_logits"][real], atol=1e-5)
    fused.zero_grad()
    explicit.zero_grad()
    assert sdpa_calls(fused, tokens, labels) > 0 and sdpa_calls(explicit, tokens, labels) == 0  # each took its path
    for (name, p), q in zip(fused.named_parameters(), explicit.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize(
    "overrides",
    [dict(attention="soft"), dict(attention="saturated"), dict(attention="soft", causal=False, attention_scale=3.0),
     dict(attention="hard", surrogate="tolerant", positional="none", layer_norm="branch", bias=False)],
    ids=["soft", "saturated-ste", "soft-bidirectional-scale-3", "hard-tolerant-homogeneous"],
)
def test_an_ensemble_member_with_qk_norm_is_the_standalone_model_of_its_seed(overrides):
    cfg = config(qk_norm=True, **overrides)
    ensemble = Ensemble(cfg, SEEDS).train()
    tokens, labels = batch(seed=4, B=5, T=9, M=len(SEEDS))
    out = ensemble(tokens, internals=True)
    F.binary_cross_entropy_with_logits(out["logit"], labels, reduction="none").mean(dim=1).sum().backward()
    stacked = dict(ensemble.stacked.named_parameters())
    for i, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        model = Recognizer(cfg).train()
        for name, p in model.named_parameters():
            assert torch.equal(p, stacked[name][i]), name
        alone = model(tokens[i], internals=True)
        for key in ("logit", "prefix_logits", "hidden", "attn", "scores"):
            seen = alone[key] > float("-inf")  # the scores carry -inf on keys a query may not see
            assert torch.equal(seen, out[key][i] > float("-inf")), key
            assert torch.allclose(out[key][i][seen], alone[key][seen], atol=1e-5), key
        F.binary_cross_entropy_with_logits(alone["logit"], labels[i]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(stacked[name].grad[i], p.grad, atol=1e-5, rtol=1e-4), name
    ensemble.eval()
    with torch.no_grad():
        evaluated = ensemble(tokens)["logit"]
        for i in range(len(SEEDS)):
            assert torch.allclose(evaluated[i], ensemble.member(i)(tokens[i])["logit"], atol=1e-5)


@pytest.mark.parametrize(
    "values,message",
    [(dict(attention_scale=2.0), r"^model\.attention_scale: 2\.0 is set but model\.qk_norm is false"),
     (dict(qk_norm=True, attention_scale=0), r"^model\.attention_scale: 0 is not a finite number > 0$"),
     (dict(qk_norm=True, attention_scale=-1.5), r"^model\.attention_scale: -1\.5 is not a finite number > 0$"),
     (dict(qk_norm=True, attention_scale=math.inf), r"^model\.attention_scale: inf is not a finite number > 0$"),
     (dict(qk_norm=True, attention_scale=True), r"^model\.attention_scale: True is not a finite number > 0$"),
     (dict(qk_norm="yes"), r"^model\.qk_norm: 'yes' is not true or false$")],
)
def test_a_bad_qk_norm_config_is_one_clear_error(values, message):
    with pytest.raises(ValueError, match=message):
        config(**values)


def test_qk_norm_without_a_scale_takes_the_square_root_of_the_head_width_and_records_it():
    cfg = config(qk_norm=True, d_model=32, n_heads=2)
    assert cfg.attention_scale == 4.0
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert config(qk_norm=True, attention_scale=3).attention_scale == 3.0 and config().attention_scale is None


def test_the_bench_refuses_a_bad_attention_scale_in_one_line(tmp_path, capsys):
    default = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    argv = ["bench", str(default), "model.attention_scale=0", "--dry-run", "--no-estimate",
            "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.attention_scale: 0 is not a finite number > 0" in err[0], err
    assert not (tmp_path / "run").exists()


def test_qk_norm_on_changes_the_cell_and_its_hash():
    raw = {"name": "n", "languages": ["first"]}
    default = C.expand(raw).cells[0]
    normed = C.expand({**raw, "model": {"qk_norm": True}}).cells[0]
    assert normed.as_dict()["model"]["qk_norm"] is True
    assert normed.as_dict()["model"]["attention_scale"] == math.sqrt(normed.model.d_model // normed.model.n_heads)
    assert C.cell_hash(normed) != C.cell_hash(default)
