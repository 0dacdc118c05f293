"""How bf16 autocast changes which keys a trained saturated model ties, layer by layer.

Trains a 2-layer saturated model without positions (equal prefixes give equal keys, so it is full of exact ties) for a
few steps, then reads its exact attention on longer held-out strings in fp32 and under bf16 autocast, and counts the
(query, head) pairs whose tied set differs. The scores that decide ties are computed in fp32 either way
(models.attention.attention_scores); what bf16 changes is the residual stream the keys are computed from.

    python benchmarks/bf16_ties.py
"""

import sys
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks.* for a script run by path

from satbench.data import make_dataset  # noqa: E402
from satbench.models import PAD, ModelConfig  # noqa: E402
from satbench.models.train import TrainConfig, train_ensemble  # noqa: E402


def main() -> int:
    model = ModelConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=2, d_ff=32, attention="saturated",
                        positional="none")
    data = make_dataset("majority", train_lengths=(1, 6), test_lengths=(1, 40), train_size=64, test_per_length=4,
                        seed=1, vocab_size=8)
    train = TrainConfig(steps=60, batch_size=8, lr=0.01, warmup_steps=2, clip=0.0)
    ensemble, _ = train_ensemble(model, train, [0], [data.train], torch.device("cpu"), progress=False)
    trained = ensemble.member(0).eval()
    tokens = data.test.tokens
    queries = (tokens != PAD)[:, None, :]  # (B, 1, T) against (B, H, T)
    with torch.no_grad():
        fp32 = trained(tokens, internals=True)["attn"] > 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = trained(tokens, internals=True)["attn"] > 0
    for layer in range(model.n_layers):
        asked = int(queries.sum()) * model.n_heads
        changed = int(((fp32[layer] != bf16[layer]).any(-1) & queries).sum())
        tied = int(((fp32[layer].sum(-1) > 1) & queries).sum())
        print(f"layer {layer + 1}: {changed} of {asked} (query, head) pairs change their tie set under bf16 "
              f"({tied} tie two or more keys in fp32)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
