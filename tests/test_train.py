"""Training a stacked ensemble: each member trains as it would alone, with its own weight decay."""

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from satbench.data import make_dataset
from satbench.models import Ensemble, ModelConfig, Recognizer
from satbench.models.io import load, save
from satbench.models.train import TrainConfig, Trainer, learning_rate_factor, logged_steps, train_ensemble

MODEL = ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32)
TRAIN = TrainConfig(steps=12, batch_size=8, lr=0.01, warmup_steps=2, clip=0.0, log_every=5)


def split(language="majority", seed=0):
    return make_dataset(language, train_lengths=(1, 6), test_lengths=(1, 6), train_size=64, test_per_length=2,
                        seed=seed, vocab_size=8).train


def reference_training(seed, data, weight_decay, train=TRAIN):
    """One Recognizer, torch's own optimizer with its own weight decay, the same batch order as train_ensemble."""
    torch.manual_seed(seed)
    model = Recognizer(MODEL)
    model.train()
    if train.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                    weight_decay=weight_decay)
    elif train.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(model.parameters(), lr=train.lr, weight_decay=weight_decay)
    else:
        kind = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
        optimizer = kind(model.parameters(), lr=train.lr, betas=train.betas, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(train))
    index = (torch.rand(train.steps, train.batch_size, generator=torch.Generator().manual_seed(seed))
             * len(data)).long()
    for step in range(train.steps):
        out = model(data.tokens[index[step]])
        loss = F.binary_cross_entropy_with_logits(out["logit"], data.labels[index[step]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.state_dict()


def test_members_with_different_weight_decay_train_as_alone():
    splits = [split("majority", 0), split("first", 1)]
    ensemble, logs = train_ensemble(MODEL, TRAIN, [0, 1], splits, torch.device("cpu"), weight_decays=[0.5, 0.0],
                                    progress=False)
    for i, (seed, decay) in enumerate([(0, 0.5), (1, 0.0)]):
        expected = reference_training(seed, splits[i], decay)
        got = ensemble.member_state_dict(i)
        for name, value in expected.items():
            if name.endswith("attn.qkv.bias"):
                # The key bias adds the same score to every key of a query, so its true gradient is 0; Adam divides
                # the rounding noise by its own tiny scale, which makes that slice differ. Compare q and v only.
                d = MODEL.d_model
                got_qv = torch.cat([got[name][:d], got[name][2 * d:]])
                value = torch.cat([value[:d], value[2 * d:]])
                torch.testing.assert_close(got_qv, value, rtol=1e-4, atol=1e-5, msg=name)
                continue
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert [e["step"] for e in logs[0]] == [0, 5, 10, 12]


def test_weight_decay_shrinks_the_norm():
    splits = [split("majority", 0)] * 2
    ensemble, logs = train_ensemble(MODEL, TRAIN, [0, 0], splits, torch.device("cpu"), weight_decays=[0.0, 5.0],
                                    progress=False)
    assert logs[1][-1]["norm"] < logs[0][-1]["norm"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_every_optimizer_trains_each_member_as_torch_would_alone(optimizer):
    lr = 0.005 if optimizer == "rmsprop" else 0.05
    train = dataclasses.replace(TRAIN, optimizer=optimizer, momentum=0.9, schedule="constant", lr=lr)
    splits = [split("majority", 0), split("first", 1)]
    ensemble, _ = train_ensemble(MODEL, train, [0, 1], splits, torch.device("cpu"), weight_decays=[0.5, 0.0],
                                 progress=False)
    for i, (seed, decay) in enumerate([(0, 0.5), (1, 0.0)]):
        expected = reference_training(seed, splits[i], decay, train)
        for name, value in expected.items():
            if name.endswith("attn.qkv.bias"):
                continue  # its key slice has a true gradient of 0 and carries only rounding noise (see above)
            torch.testing.assert_close(ensemble.member_state_dict(i)[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_a_log_schedule_records_log_spaced_steps_with_every_series():
    train = TrainConfig(steps=200, batch_size=8, lr=0.01, schedule="constant", clip=0.0, log_schedule="log",
                        log_points=12)
    steps = logged_steps(train)
    assert steps[0] == 0 and steps[-1] == 200 and steps == sorted(set(steps))
    assert 8 <= len(steps) <= 13  # 12 log-spaced points, the first few rounded onto the same integers, plus 0
    ratios = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert max(ratios) < 3 and steps[1] == 1  # roughly equal factors from 1 to 200
    assert logged_steps(dataclasses.replace(train, log_schedule="linear", log_every=50)) == [0, 50, 100, 150, 200]
    _, logs = train_ensemble(MODEL, train, [0], [split()], torch.device("cpu"), progress=False)
    assert [e["step"] for e in logs[0]] == steps
    assert all(e["norm_with_embeddings"] > e["norm"] > 0 for e in logs[0])


@pytest.mark.parametrize("field, value, message", [("optimizer", "lion", "train.optimizer"),
                                                   ("log_schedule", "exp", "train.log_schedule"),
                                                   ("momentum", 1.0, "train.momentum")])
def test_bad_training_fields_name_themselves(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_a_member_decides_alike_whatever_group_it_is_in():
    # A member is an independent slice of every batched kernel and of the flat buffers, so only rounding depends on
    # the group: vectorized kernels take other code paths (fused multiply-adds, reduction orders) at other offsets
    # and shapes. The decisions agree exactly; losses and norms agree to float32 rounding.
    data = split("majority", 0)
    alone = train_ensemble(MODEL, TRAIN, [0], [data], torch.device("cpu"), progress=False)
    grouped = train_ensemble(MODEL, TRAIN, [3, 0, 5], [split("first", 3), data, split("first", 5)],
                             torch.device("cpu"), weight_decays=[0.1, 0.0, 0.0], progress=False)
    for a, b in zip(alone[1][0], grouped[1][1], strict=True):
        assert a["batch_acc"] == b["batch_acc"]
        for key in ("loss", "norm", "norm_with_embeddings"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    with torch.no_grad():
        mine = alone[0](data.tokens)["logit"][0]
        theirs = grouped[0](data.tokens)["logit"][1]
    assert torch.equal(mine > 0, theirs > 0)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# Slow (make test-all) on the CPU: each compile takes about 10 s, and train.compile is off by default and falls back to
# the uncompiled step, with a warning, where compiling fails.
@pytest.mark.parametrize("attention,device", [
    pytest.param("soft", "cpu", marks=pytest.mark.slow), pytest.param("saturated", "cpu", marks=pytest.mark.slow),
    pytest.param("soft", "cuda", marks=[pytest.mark.gpu, CUDA]),
    pytest.param("hard", "cuda", marks=[pytest.mark.gpu, CUDA])])
def test_a_compiled_step_trains_like_the_uncompiled_one(attention, device):
    """train.compile: 20 steps of the torch.compile'd forward and loss (and the backward compiled with them; CUDA
    graphs on CUDA) give the losses and weights of 20 uncompiled steps, up to the rounding of fused kernels."""
    # No biases: a key bias's true gradient is 0, and Adam blows the rounding noise standing in for it up to full
    # steps, which differ between any two kernels (see test_members_with_different_weight_decay_train_as_alone).
    model = dataclasses.replace(MODEL, attention=attention, bias=False)
    train = dataclasses.replace(TRAIN, steps=20, clip=1.0, weight_decay=0.1)
    data = split("dyck1", 0)
    index = torch.randint(len(data), (20, 2, 8), generator=torch.Generator().manual_seed(0))
    runs = {}
    for compiled in (False, True):
        # Without TF32, which a compiled graph would also apply to the exact variants' scores (see TrainConfig.tf32).
        trainer = Trainer(Ensemble(model, [0, 1]).to(device).train(),
                          dataclasses.replace(train, compile=compiled, tf32=False))
        tokens, labels = data.tokens.to(device), data.labels.to(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [trainer.step(tokens[index[step]], labels[index[step]]) for step in range(20)]
        # A fallback to the uncompiled step would pass this test vacuously.
        assert not [w for w in caught if "train.compile" in str(w.message)]
        runs[compiled] = trainer.ensemble, torch.stack(losses)
    (eager, eager_losses), (compiled, compiled_losses) = runs[False], runs[True]
    assert not torch.equal(eager_losses[0], eager_losses[-1])  # it trained
    tolerance = dict(rtol=1e-4, atol=1e-5) if device == "cpu" else dict(rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(compiled_losses, eager_losses, **tolerance)
    for i in range(2):
        for name, value in eager.member_state_dict(i).items():
            torch.testing.assert_close(compiled.member_state_dict(i)[name], value, rtol=1e-3, atol=1e-4)


def test_bf16_keeps_the_first_layers_tie_sets_of_a_trained_checkpoint(tmp_path):
    """train.bf16 on a trained checkpoint: without positions the first layer's keys are equal wherever the tokens
    are, and its tie sets under bf16 autocast are those of fp32. (That bf16 scores would tie close but different keys
    is tested in tests/test_attention.py; equal keys tie at any precision.) Deeper layers read a residual stream
    rounded to bf16, whose rounding (about 4e-3) is far above the tie tolerance (1e-5): keys equal in exact
    arithmetic but computed along different paths can stop tying there, which no precision of the scores repairs
    (benchmarks/bf16_ties.py counts them). Evaluation never runs in bf16."""
    model = dataclasses.replace(MODEL, attention="saturated", positional="none", n_layers=2)
    train = dataclasses.replace(TRAIN, steps=60)
    ensemble, _ = train_ensemble(model, train, [0], [split("majority", 0)], torch.device("cpu"), progress=False)
    trained = load(save(ensemble, tmp_path / "trained.pt")).member(0).eval()
    tokens = make_dataset("majority", train_lengths=(1, 6), test_lengths=(1, 40), train_size=64, test_per_length=4,
                          seed=1, vocab_size=8).test.tokens
    real = (tokens != 0)[:, None, :, None]  # queries at real tokens, against (B, H, T, T)
    with torch.no_grad():
        fp32 = trained(tokens, internals=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = trained(tokens, internals=True)
    assert bf16["values"].dtype == torch.bfloat16  # autocast did act
    tied_fp32, tied_bf16 = (fp32["attn"][0] > 0) & real, (bf16["attn"][0] > 0) & real
    assert (tied_fp32.sum(-1) > 1).sum() > 100  # many ties to keep
    assert torch.equal(tied_fp32, tied_bf16)


@pytest.mark.parametrize("field", ["compile", "tf32", "bf16", "keep_checkpoints"])
def test_a_switch_that_is_not_a_bool_is_refused_by_name(field):
    with pytest.raises(ValueError, match=rf"^train\.{field}: 'yes' is not true or false$"):
        TrainConfig(**{field: "yes"})


def test_soft_steps_train_an_exact_variant_as_the_soft_model_until_the_switch():
    # A saturated model with train.soft_steps=k is, after k updates, the soft model a run of k steps trains, to the
    # bit: the same init (a variant has no parameters of its own), the same batches (a longer run's batch order
    # starts with the shorter's), the same fused softmax and the same learning-rate schedule over k steps. After the
    # switch it fine-tunes with a fresh optimizer, and parts from a soft model trained on.
    data = split("majority", 0)
    saturated = dataclasses.replace(MODEL, attention="saturated")
    params = {}

    def keep(name):
        def on_log(step, ensemble):
            params[name, step] = ensemble.member_state_dict(0)
        return on_log

    short = dataclasses.replace(TRAIN, steps=4, log_every=4)
    train_ensemble(MODEL, short, [0], [data], torch.device("cpu"), on_log=keep("soft"), progress=False)
    switched = dataclasses.replace(TRAIN, steps=10, log_every=4, soft_steps=4)
    train_ensemble(saturated, switched, [0], [data], torch.device("cpu"), on_log=keep("switched"), progress=False)
    for name, value in params["soft", 4].items():
        assert torch.equal(value, params["switched", 4][name]), name
    train_ensemble(MODEL, dataclasses.replace(switched, soft_steps=0), [0], [data], torch.device("cpu"),
                   on_log=keep("soft on"), progress=False)
    assert any(not torch.equal(v, params["switched", 8][k]) for k, v in params["soft on", 8].items())


def test_the_fine_tuning_after_soft_steps_runs_its_own_warmup_and_schedule():
    factor = learning_rate_factor(dataclasses.replace(TRAIN, steps=10, soft_steps=4, warmup_steps=2))
    alone = learning_rate_factor(dataclasses.replace(TRAIN, steps=4, warmup_steps=2))
    rest = learning_rate_factor(dataclasses.replace(TRAIN, steps=6, warmup_steps=2))
    assert [factor(s) for s in range(4)] == [alone(s) for s in range(4)]
    assert [factor(s) for s in range(4, 10)] == [rest(s) for s in range(6)]


def test_soft_steps_must_leave_steps_for_the_variant():
    for bad in (-1, 12, 1.5, True):
        with pytest.raises(ValueError, match="train.soft_steps"):
            dataclasses.replace(TRAIN, soft_steps=bad)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_an_annealed_tolerance_reaches_zero_at_the_last_step_and_evaluation_uses_the_models(schedule):
    model = dataclasses.replace(MODEL, attention="saturated", surrogate="tolerant", tolerant_tol=0.2, tol=1e-5)
    train = dataclasses.replace(TRAIN, tolerance_schedule=schedule, log_every=1)
    used = {}  # the tolerance each step trained at: on_log runs after the step's tolerance is set, before its update

    def on_log(step, ensemble):
        used[step] = ensemble.attention_layers()[0].tol

    ensemble, _ = train_ensemble(model, train, [0, 1], [split("majority", 0), split("first", 1)],
                                 torch.device("cpu"), on_log=on_log, progress=False)
    series = [used[step] for step in range(train.steps)]
    assert series[0] == pytest.approx(0.2) and series[-1] == 0.0
    assert used[train.steps] == 1e-5  # the last entry logs the trained model as it is evaluated
    assert all(a >= b for a, b in zip(series, series[1:])) and 0 < series[train.steps // 2] < 0.2
    assert [layer.tol for layer in ensemble.attention_layers()] == [1e-5]
    assert [layer.tol for layer in ensemble.member(1).attention_layers()] == [1e-5]
    constant = train_ensemble(model, TRAIN, [0], [split()], torch.device("cpu"), progress=False)[0]
    assert [layer.tol for layer in constant.attention_layers()] == [0.2]  # a constant tolerance evaluates at its own
    # After a soft phase the tolerance falls over the fine-tuning steps alone: from 0.2 at the switch to 0 at the end.
    used.clear()
    train_ensemble(model, dataclasses.replace(train, soft_steps=5), [0], [split()], torch.device("cpu"),
                   on_log=on_log, progress=False)
    assert used[5] == pytest.approx(0.2) and used[train.steps - 1] == 0.0 and used[8] < 0.2


def test_a_member_under_an_annealed_tolerance_trains_as_it_would_alone():
    model = dataclasses.replace(MODEL, attention="saturated", surrogate="tolerant")
    train = dataclasses.replace(TRAIN, tolerance_schedule="linear", soft_steps=3)
    data = split("majority", 0)
    alone = train_ensemble(model, train, [0], [data], torch.device("cpu"), progress=False)
    grouped = train_ensemble(model, train, [4, 0], [split("first", 4), data], torch.device("cpu"), progress=False)
    for a, b in zip(alone[1][0], grouped[1][1], strict=True):
        assert a["batch_acc"] == b["batch_acc"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    with torch.no_grad():
        assert torch.equal(alone[0](data.tokens)["logit"][0] > 0, grouped[0](data.tokens)["logit"][1] > 0)
