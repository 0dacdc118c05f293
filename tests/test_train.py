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
