"""The training step of train.compile against the uncompiled one, in one process: model-steps per second of each, and
the seconds the compiled one's first two steps take (the compile). Both in full fp32 (train.tf32 off).

Both Trainers train the same ensemble on the same batch; rounds of 5 steps alternate between them and the median
round is reported, so that a machine whose load changes treats both alike.

    python benchmarks/compiled_step.py                                  # CPU shape: d=32, T=32, batch 32, M=32
    python benchmarks/compiled_step.py --d-model 64 --seq-len 64 --batch 64 --members 8 --variant saturated
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks.* for a script run by path

from benchmarks.throughput import VOCAB, random_batches, synchronize, time_steps  # noqa: E402
from satbench.models import VARIANTS, Ensemble, ModelConfig  # noqa: E402
from satbench.models.train import TrainConfig, Trainer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", nargs="+", default=["soft", "saturated"], choices=VARIANTS)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    tokens, labels = random_batches(torch.Generator().manual_seed(0), args.members, args.batch, args.seq_len, device)
    for variant in args.variant:
        config = ModelConfig(vocab_size=VOCAB, d_model=args.d_model, n_heads=4, n_layers=2, d_ff=2 * args.d_model,
                             attention=variant, max_len=args.seq_len)
        trainers, start_up = {}, {}
        for compiled in (False, True):
            ensemble = Ensemble(config, list(range(args.members))).to(device).train()
            trainers[compiled] = Trainer(ensemble, TrainConfig(lr=1e-3, compile=compiled))
            start = time.perf_counter()
            for _ in range(2):  # the optimizer's state, and the compile
                trainers[compiled].step(tokens, labels)
            synchronize(device)
            start_up[compiled] = time.perf_counter() - start
        rates = {False: [], True: []}
        for _ in range(args.rounds):
            for compiled, trainer in trainers.items():
                seconds = time_steps(lambda trainer=trainer: trainer.step(tokens, labels), 5, device)
                rates[compiled].append(5 * args.members / seconds)
        eager, compiled = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"{variant} on {device.type} d={args.d_model} T={args.seq_len} B={args.batch} M={args.members}: "
              f"uncompiled {eager:,.1f} model-steps/s, compiled {compiled:,.1f} model-steps/s, ratio "
              f"{compiled / eager:.2f}x; first two steps {start_up[False]:.1f} s and {start_up[True]:.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
