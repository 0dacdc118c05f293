"""Training a stacked ensemble: each member trains as it would alone, with its own weight decay."""

import torch
import torch.nn.functional as F

from languages import make_dataset
from models import ModelConfig, Recognizer
from models.train import TrainConfig, learning_rate_factor, train_ensemble

MODEL = ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32)
TRAIN = TrainConfig(steps=12, batch_size=8, lr=0.01, warmup_steps=2, clip=0.0, log_every=5)


def split(language="majority", seed=0):
    return make_dataset(language, train_lengths=(1, 6), test_lengths=(1, 6), train_size=64, test_per_length=2,
                        seed=seed, vocab_size=8).train


def reference_training(seed, data, weight_decay):
    """One Recognizer, torch's own AdamW with weight decay, the same batch order as train_ensemble."""
    torch.manual_seed(seed)
    model = Recognizer(MODEL)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN.lr, betas=TRAIN.betas, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(TRAIN))
    index = (torch.rand(TRAIN.steps, TRAIN.batch_size, generator=torch.Generator().manual_seed(seed))
             * len(data)).long()
    for step in range(TRAIN.steps):
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
