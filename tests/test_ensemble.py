"""The stacked Ensemble: member i must behave like a standalone Recognizer built from seed i, up to rounding."""

import math

import pytest
import torch
import torch.nn.functional as F

from satbench.models import BOS, PAD, Ensemble, ModelConfig, Recognizer, parameter_norm
from satbench.models.attention import top_set
from satbench.models.layers import _NormLinear, linear, norm, norm_linear
from satbench.models.train import TrainConfig, Trainer

SEEDS = [11, 3, 7]


def config(**overrides):
    values = dict(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32)
    values.update(overrides)
    return ModelConfig(**values)


def standalone(cfg, seed):
    torch.manual_seed(seed)
    return Recognizer(cfg)


def member_batches(seed=0, M=3, B=5, T=9):
    """(M, B, T) tokens, a different padded batch per member, and (M, B) labels."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 6, (M, B, T), generator=g)
    tokens[..., 0] = BOS
    lengths = torch.randint(1, T + 1, (M, B, 1), generator=g)
    tokens = tokens.masked_fill(torch.arange(T) >= lengths, PAD)
    return tokens, torch.randint(0, 2, (M, B), generator=g).float()


def ensemble_loss(out, labels):
    """Sum over members of each member's own mean loss (membership and prefix logits both take part)."""
    per_member = F.binary_cross_entropy_with_logits(out["logit"], labels, reduction="none").mean(dim=1)
    return (per_member + out["prefix_logits"].pow(2).mean(dim=(1, 2))).sum()


@pytest.mark.parametrize(
    "overrides",
    [dict(attention="soft"), dict(attention="saturated"), dict(attention="hard"),
     dict(attention="saturated", surrogate="anneal"), dict(attention="soft", causal=False, positional="learned",
                                                            layer_norm="post", bias=False),
     dict(attention="hard", surrogate="tolerant", positional="none", layer_norm="branch", bias=False),
     dict(attention="soft", positional="none", layer_norm="branch", bias=False, init_scale=0.1)],
    ids=["soft", "saturated-ste", "hard-ste", "saturated-anneal", "soft-bidirectional", "hard-tolerant-homogeneous",
         "soft-homogeneous-small-init"],
)
def test_member_matches_standalone_outputs_and_gradients(overrides):
    cfg = config(**overrides)
    ensemble = Ensemble(cfg, SEEDS).train()
    ensemble.set_inverse_temperature(2.5)
    tokens, labels = member_batches()
    out = ensemble(tokens, internals=True)
    ensemble_loss(out, labels).backward()
    grads = dict(ensemble.stacked.named_parameters())
    for i, seed in enumerate(SEEDS):
        model = standalone(cfg, seed).train()
        model.set_inverse_temperature(2.5)
        for name, p in model.named_parameters():
            assert torch.equal(p, grads[name][i]), name  # initialised exactly like the standalone model
        alone = model(tokens[i], internals=True)
        for key in ("logit", "prefix_logits", "hidden", "attn"):
            assert torch.allclose(out[key][i], alone[key], atol=1e-5), key
        ensemble_loss({k: v[None] for k, v in alone.items()}, labels[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name].grad[i], p.grad, atol=1e-5, rtol=1e-4), name
    ensemble.eval()
    with torch.no_grad():
        evaluated = ensemble(tokens)["logit"]
        for i, seed in enumerate(SEEDS):
            assert torch.allclose(evaluated[i], standalone(cfg, seed).eval()(tokens[i])["logit"], atol=1e-5)


def test_shared_tokens_broadcast_to_every_member():
    ensemble = Ensemble(config(), SEEDS)
    tokens, _ = member_batches()
    shared = ensemble(tokens[0])["logit"]
    assert torch.allclose(shared, ensemble(tokens[0].expand(len(SEEDS), -1, -1).clone())["logit"])
    with pytest.raises(ValueError, match="2 member batches but the ensemble has 3"):
        ensemble(tokens[:2])


def test_building_an_ensemble_leaves_the_global_random_stream_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Ensemble(config(), SEEDS)
    assert torch.equal(torch.rand(3), expected)


def test_member_export_and_import_round_trip():
    cfg = config()
    ensemble = Ensemble(cfg, SEEDS)
    tokens, _ = member_batches()
    exported = ensemble.member_state_dict(1)
    assert set(exported) == set(standalone(cfg, 0).state_dict())
    copy = ensemble.member(1)
    assert isinstance(copy, Recognizer) and copy.config == cfg
    assert torch.allclose(copy(tokens[1])["logit"], ensemble(tokens)["logit"][1], atol=1e-5)

    replacement = standalone(cfg, 99).state_dict()
    ensemble.load_member_state_dict(0, replacement)
    assert torch.allclose(ensemble(tokens)["logit"][0], standalone(cfg, 99)(tokens[0])["logit"], atol=1e-5)
    assert all(torch.equal(ensemble.member_state_dict(1)[k], exported[k]) for k in exported)  # neighbours untouched

    wrong = standalone(config(d_model=8), 0).state_dict()
    with pytest.raises(ValueError, match=r"ensemble member 2: parameter 'token_embedding.weight' has shape \(6, 8\)"):
        ensemble.load_member_state_dict(2, wrong)


def test_per_member_clipping_matches_clip_grad_norm_on_each_member():
    cfg = config()
    ensemble = Ensemble(cfg, SEEDS)
    trainer = Trainer(ensemble, TrainConfig())  # its gradients are views of one (M, P) buffer from here on
    tokens, labels = member_batches(1)
    (100 * ensemble_loss(ensemble(tokens), labels)).backward()
    grads = {name: p.grad.clone() for name, p in ensemble.stacked.named_parameters()}
    norms = trainer.clip_gradients(0.5)
    assert norms.shape == (len(SEEDS),)
    for i in range(len(SEEDS)):
        model = ensemble.member(i)
        for name, p in model.named_parameters():
            p.grad = grads[name][i].clone()
        expected = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        assert torch.allclose(norms[i], expected, rtol=1e-5)
        for name, p in model.named_parameters():
            assert torch.allclose(ensemble.stacked.get_parameter(name).grad[i], p.grad, atol=1e-7, rtol=1e-5)
    assert (norms > 0.5).all()  # the test really clipped


def test_one_adamw_over_the_flat_buffer_steps_each_member_like_its_own_adamw():
    # No biases: a key bias has zero gradient in exact arithmetic (softmax ignores a shift shared by all keys), and Adam
    # would blow its rounding noise, which differs between a batched and a single matmul, up to full-size steps.
    cfg = config(attention="saturated", bias=False)
    train = TrainConfig(lr=1e-2, clip=1.0, weight_decay=0.1, schedule="constant", warmup_steps=0)
    ensemble = Ensemble(cfg, SEEDS).train()
    trainer = Trainer(ensemble, train)
    models = [standalone(cfg, seed).train() for seed in SEEDS]
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2, betas=train.betas, weight_decay=0.1) for m in models]
    for step in range(3):
        tokens, labels = member_batches(step)
        trainer.step(tokens, labels)
        for i, (model, opt) in enumerate(zip(models, optimizers, strict=True)):
            F.binary_cross_entropy_with_logits(model(tokens[i])["logit"], labels[i]).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
    for i, model in enumerate(models):
        for name, p in model.named_parameters():
            assert torch.allclose(ensemble.stacked.get_parameter(name)[i], p, atol=1e-5), name


def test_parameter_norm_per_member():
    ensemble = Ensemble(config(positional="learned"), SEEDS)
    norms = ensemble.parameter_norm()
    assert norms.shape == (len(SEEDS),)
    for i in range(len(SEEDS)):
        assert norms[i].item() == pytest.approx(parameter_norm(ensemble.member(i)), rel=1e-12)


def test_internals_and_mode_carry_a_member_axis():
    ensemble = Ensemble(config(attention="hard"), SEEDS).eval()
    tokens, _ = member_batches()
    out = ensemble(tokens, internals=True)
    assert out["hidden"].shape == (3, 3, 5, 9, 16)
    assert out["attn"].shape == (3, 2, 5, 2, 9, 9)
    assert not ensemble.member(0).training
    assert ensemble.M == 3


def explicit(model):
    """`model` with the fused attention kernel turned off: the explicit path, the reference the fused one must match."""
    for layer in model.attention_layers():
        layer.fused_devices = ()
    return model


@pytest.mark.parametrize(
    "overrides,shared",
    [(dict(causal=True), False), (dict(causal=False), False), (dict(causal=False), True),
     (dict(attention="hard", surrogate="anneal"), False),
     (dict(attention="saturated"), False), (dict(attention="hard"), False),
     (dict(attention="saturated", causal=False), False), (dict(attention="hard", causal=False), False),
     (dict(attention="saturated", surrogate="tolerant"), False),
     # Without positions equal tokens give equal keys: tie sets of several keys, averaged or decided leftmost.
     (dict(attention="saturated", positional="none"), False), (dict(attention="hard", positional="none"), False),
     (dict(attention="saturated", positional="none", causal=False), False),
     (dict(attention="hard", surrogate="tolerant", positional="none"), False)],
    ids=["causal", "bidirectional", "bidirectional-shared-tokens", "anneal", "saturated-ste", "hard-ste",
         "saturated-ste-bidirectional", "hard-ste-bidirectional", "saturated-tolerant", "saturated-ties",
         "hard-ties", "saturated-ties-bidirectional", "hard-tolerant-ties"],
)
def test_fused_attention_folds_members_into_one_kernel_call_per_layer(overrides, shared):
    cfg = config(**overrides)
    ensemble = Ensemble(cfg, SEEDS).train()
    ensemble.set_inverse_temperature(2.0)
    tokens, labels = member_batches(4)
    if shared:
        tokens = tokens[0]
    with torch.profiler.profile() as profile:
        out = ensemble(tokens)
        ensemble_loss(out, labels).backward()
    counts = {event.key: event.count for event in profile.key_averages()}
    assert counts.get("aten::_scaled_dot_product_flash_attention_for_cpu") == cfg.n_layers
    assert counts.get("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == cfg.n_layers
    grads = dict(ensemble.stacked.named_parameters())
    for i, seed in enumerate(SEEDS):
        model = explicit(standalone(cfg, seed).train())
        model.set_inverse_temperature(2.0)
        alone = model(tokens if shared else tokens[i])
        real = (tokens if shared else tokens[i]) != PAD
        assert torch.allclose(out["logit"][i], alone["logit"], atol=1e-5)
        assert torch.allclose(out["prefix_logits"][i][real], alone["prefix_logits"][real], atol=1e-5)
        ensemble_loss({k: v[None] for k, v in alone.items()}, labels[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name].grad[i], p.grad, atol=1e-5, rtol=1e-4), name
        if cfg.positional == "none" and cfg.attention != "soft":  # the case has the ties it is meant to test
            with torch.no_grad():
                scores = model(tokens if shared else tokens[i], internals=True)["scores"]
            tied = top_set(scores, scores > -math.inf, model.attention_layers()[0].tol)
            assert (tied.sum(dim=-1) > 1).any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("causal", [True, False])
def test_on_cuda_each_layer_makes_one_fused_attention_call_for_all_members(causal):
    # The member axis must be folded into the fused kernel's batch: one call per layer, forward and backward.
    cfg = config(causal=causal)
    ensemble = Ensemble(cfg, SEEDS).cuda().train()
    tokens, labels = member_batches(T=16)
    tokens, labels = tokens.cuda(), labels.cuda()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        out = ensemble(tokens)
        ensemble_loss(out, labels).backward()
    kernels = [event for event in profile.key_averages() if event.key.startswith("aten::_scaled_dot_product_")]
    assert sum(event.count for event in kernels if not event.key.endswith("_backward")) == cfg.n_layers
    assert sum(event.count for event in kernels if event.key.endswith("_backward")) == cfg.n_layers
    grads = dict(ensemble.stacked.named_parameters())
    for i, seed in enumerate(SEEDS):
        model = explicit(standalone(cfg, seed).cuda().train())
        alone = model(tokens[i])
        assert torch.allclose(out["logit"][i], alone["logit"], atol=1e-4)
        ensemble_loss({k: v[None] for k, v in alone.items()}, labels[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name].grad[i], p.grad, atol=1e-4, rtol=1e-3), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("overrides", [dict(), dict(attention="saturated"), dict(attention="hard", surrogate="anneal")],
                         ids=["soft", "saturated", "hard-anneal"])
def test_a_cuda_training_step_never_waits_for_the_host(overrides):
    # The learning rate and the inverse temperature are tensors written in place and Adam's step count lives on the
    # device, so nothing in a step reads a value back: torch's sync debug mode raises on any synchronisation.
    ensemble = Ensemble(config(**overrides), SEEDS).cuda().train()
    trainer = Trainer(ensemble, TrainConfig(weight_decay=0.1, clip=1.0))
    tokens, labels = (t.cuda() for t in member_batches(T=16))
    trainer.step(tokens, labels)  # the optimizer allocates its state on the first step
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ensemble.set_inverse_temperature(2.0)
        losses = trainer.step(tokens, labels)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(losses).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layer_norm", ["branch", "pre"])
def test_a_bf16_cuda_step_runs_the_stacked_layer_norm_in_fp32(layer_norm):
    # With layer_norm "branch" the stacked norm reads bf16 linear outputs: its custom autograd Function must cast them
    # to fp32 as autocast does for F.layer_norm, in the backward pass too. With "pre" the norms are folded into the
    # maps after them (models.layers._NormLinear), whose matmuls run in bf16 and whose norm in fp32.
    ensemble = Ensemble(config(layer_norm=layer_norm, attention="saturated"), SEEDS).cuda().train()
    trainer = Trainer(ensemble, TrainConfig(bf16=True))
    tokens, labels = (t.cuda() for t in member_batches(T=16))
    losses = torch.stack([trainer.step(tokens, labels) for _ in range(3)])
    assert torch.isfinite(losses).all() and torch.isfinite(trainer.grad).all()


def test_folded_norm_and_linear_has_the_gradients_of_its_forward():
    # The backward of _NormLinear is written by hand; gradcheck compares it with finite differences, in float64.
    g = torch.Generator().manual_seed(0)
    M, N, d, out = 2, 5, 4, 3
    inputs = [torch.randn(*shape, dtype=torch.float64, generator=g)
              for shape in ((M, N, d), (M, d), (M, d), (M, out, d), (M, out))]
    inputs = [t.requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(lambda *a: _NormLinear.apply(*a, 1e-5), inputs)
    x, ln_weight, _, weight, _ = inputs  # and without biases
    assert torch.autograd.gradcheck(lambda x, w, W: _NormLinear.apply(x, w, None, W, None, 1e-5),
                                    (x, ln_weight, weight))


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_folded_norm_and_linear_computes_the_norm_then_the_linear_map(bf16, monkeypatch):
    # A stacked pre-LN block folds its norm's affine into the map that reads it where the activations outweigh the map
    # (here 4 * 20 = 80 positions per member against 48 outputs). Under autocast the norm stays fp32 and the matmul
    # runs in bf16, as F.layer_norm and a Linear would.
    block = Ensemble(config(), SEEDS).stacked.blocks[0]
    with torch.no_grad():  # a non-trivial affine in the norm
        block.ln_1.weight.uniform_(0.5, 1.5)
        block.ln_1.bias.normal_()
    x = torch.randn(len(SEEDS), 4, 20, 16, generator=torch.Generator().manual_seed(1))
    reference = linear(block.attn.qkv, norm(block.ln_1, x))
    reference.square().sum().backward()
    expected = [p.grad.clone() for p in block.parameters() if p.grad is not None]
    block.zero_grad()
    calls = []
    monkeypatch.setattr(_NormLinear, "apply", lambda *args, apply=_NormLinear.apply: calls.append(1) or apply(*args))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        folded = norm_linear(block.ln_1, block.attn.qkv, x)
    assert calls, "the folded path was not taken"
    assert folded.dtype == (torch.bfloat16 if bf16 else torch.float32)
    tolerance = dict(atol=5e-2, rtol=5e-2) if bf16 else dict(atol=1e-5, rtol=1e-4)
    assert torch.allclose(folded.float(), reference.detach(), **tolerance)
    folded.float().square().sum().backward()
    got = [p.grad for p in block.parameters() if p.grad is not None]
    assert len(got) == len(expected) == 4  # ln_1's weight and bias, qkv's weight and bias
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == torch.float32
        assert torch.allclose(a, b, atol=tolerance["atol"] * b.abs().max(), rtol=tolerance["rtol"])


@pytest.mark.parametrize(
    "overrides",
    [dict(attention="soft"), dict(attention="saturated"), dict(attention="hard"),
     dict(attention="saturated", surrogate="anneal"), dict(causal=False, positional="learned", layer_norm="post"),
     dict(attention="hard", surrogate="tolerant", positional="none", layer_norm="branch", bias=False),
     dict(attention="saturated", layer_norm="none", next_symbols=True), dict(attention="hard", n_layers=1)],
    ids=["soft", "saturated-ste", "hard-ste", "saturated-anneal", "bidirectional-post", "hard-tolerant-branch",
         "no-norm-next-symbols", "one-layer"],
)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_the_logit_only_pass_gives_the_full_passs_logit_and_gradients(overrides, fused):
    # Training on membership labels (Trainer) reads one logit per string, so its pass answers only that query in the
    # last block; for the ensemble and a standalone model alike, the logit and every gradient must be the full pass's.
    cfg = config(**overrides)
    tokens, labels = member_batches(B=8, T=12)
    models = [Ensemble(cfg, SEEDS), standalone(cfg, SEEDS[0])]
    for model, batch, target in zip(models, (tokens, tokens[0]), (labels, labels[0]), strict=True):
        model.train().set_inverse_temperature(2.5)
        if not fused:
            for layer in model.attention_layers():
                layer.fused_devices = ()
        results = []
        for logit_only in (False, True):
            model.zero_grad()
            out = model(batch, logit_only=logit_only)
            assert logit_only == (set(out) == {"logit"})
            F.binary_cross_entropy_with_logits(out["logit"], target).backward()
            results.append((out["logit"].detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
        (full, full_grads), (pruned, pruned_grads) = results
        assert torch.allclose(full, pruned, atol=1e-5)
        for name, grad in full_grads.items():
            assert torch.allclose(grad, pruned_grads[name], atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_the_logit_only_pass_stays_finite_on_an_all_padding_row(causal):
    ensemble = Ensemble(config(attention="saturated", causal=causal), SEEDS).train()
    tokens, labels = member_batches(B=8, T=12)
    tokens[1, 3] = PAD
    logit = ensemble(tokens, logit_only=True)["logit"]
    assert torch.isfinite(logit).all()
    F.binary_cross_entropy_with_logits(logit, labels).backward()
    assert all(torch.isfinite(p.grad).all() for p in ensemble.parameters())


def test_the_logit_only_pass_refuses_internals():
    with pytest.raises(ValueError, match="^Recognizer.forward: logit_only leaves out the internals"):
        Ensemble(config(), SEEDS)(member_batches()[0], internals=True, logit_only=True)
