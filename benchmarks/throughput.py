"""Training throughput: a Python loop over standalone Recognizers against one stacked Ensemble of the same shape.

Both train the same thing: per model, a batch of random padded strings, binary cross-entropy on the membership logit,
backward, gradient clipping at norm 1 and an AdamW step. The unit is model-steps per second: one optimizer step of one
model. The loop may be timed on a subset of the models (--loop-members K); since each of its models steps on its own,
its model-steps/s does not depend on how many models it loops over, so timing a subset is fair and much quicker.

    python benchmarks/throughput.py                        # CPU shape: d=32, 2 layers, 4 heads, T=32, batch 32, M=32
    python benchmarks/throughput.py --device cuda --members 256 --d-model 64 --seq-len 64 --batch 64 \\
        --loop-members 16 --variant soft saturated         # GPU shape

Prints one line per variant and then one JSON line per variant.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without installing

from models import BOS, EOS, PAD, VARIANTS, Ensemble, ModelConfig, Recognizer  # noqa: E402

VOCAB = 6  # PAD, BOS, EOS and three symbols


def random_batches(generator, members, batch, seq_len, device):
    """(members, batch, seq_len) tokens with BOS first and random-length padding, and (members, batch) labels."""
    tokens = torch.randint(EOS + 1, VOCAB, (members, batch, seq_len), generator=generator)
    tokens[..., 0] = BOS
    lengths = torch.randint(seq_len // 2, seq_len + 1, (members, batch, 1), generator=generator)
    tokens = tokens.masked_fill(torch.arange(seq_len) >= lengths, PAD)
    labels = torch.randint(0, 2, (members, batch), generator=generator).float()
    return tokens.to(device), labels.to(device)



def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(params, device):
    return torch.optim.AdamW(params, lr=1e-3, fused=device.type == "cuda")


def time_loop(config, seeds, tokens, labels, steps, warmup, device):
    """Model-steps/s of a Python loop over standalone Recognizers, one AdamW each."""
    models, optimizers = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        model = Recognizer(config).to(device).train()
        models.append(model)
        optimizers.append(make_optimizer(model.parameters(), device))

    def step():
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            loss = F.binary_cross_entropy_with_logits(model(tokens[i])["logit"], labels[i])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return len(models) * steps / (time.perf_counter() - start)


def time_ensemble(config, seeds, tokens, labels, steps, warmup, device):
    """Model-steps/s of one Ensemble: the sum of the members' mean losses, per-member clipping, one AdamW."""
    ensemble = Ensemble(config, seeds).to(device).train()
    optimizer = make_optimizer(ensemble.parameters(), device)

    def step():
        logits = ensemble(tokens)["logit"]  # (M, B)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=1).sum()
        loss.backward()
        ensemble.clip_grad_norm_(1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return ensemble.M * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--members", type=int, default=32, help="ensemble size M")
    parser.add_argument("--loop-members", type=int, default=None, help="time the loop on this many models (default M)")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--d-ff", type=int, default=None, help="default 2 * d_model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32, help="T, BOS included")
    parser.add_argument("--batch", type=int, default=32, help="strings per model per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--variant", nargs="+", default=["soft"], choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    loop_members = args.loop_members or args.members
    if not 1 <= loop_members <= args.members:
        parser.error(f"--loop-members: {loop_members} is not between 1 and --members = {args.members}")
    seeds = list(range(args.members))
    generator = torch.Generator().manual_seed(0)
    tokens, labels = random_batches(generator, args.members, args.batch, args.seq_len, device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} threads"

    results = []
    for variant in args.variant:
        config = ModelConfig(vocab_size=VOCAB, d_model=args.d_model, n_heads=args.heads, n_layers=args.layers,
                             d_ff=args.d_ff or 2 * args.d_model, attention=variant, max_len=args.seq_len)
        loop = time_loop(config, seeds[:loop_members], tokens, labels, args.steps, args.warmup, device)
        ensemble = time_ensemble(config, seeds, tokens, labels, args.steps, args.warmup, device)
        row = {"variant": variant, "device": str(device), "hardware": hardware, "torch": torch.__version__,
               "members": args.members, "loop_members": loop_members, "d_model": args.d_model,
               "d_ff": config.d_ff, "layers": args.layers, "heads": args.heads, "seq_len": args.seq_len,
               "batch": args.batch, "steps": args.steps, "loop_model_steps_per_s": round(loop, 1),
               "ensemble_model_steps_per_s": round(ensemble, 1), "ratio": round(ensemble / loop, 2)}
        results.append(row)
        subset = f", timed on {loop_members} of {args.members} models" if loop_members < args.members else ""
        print(f"{variant:9s} {device.type} ({hardware}) d={args.d_model} L={args.layers} H={args.heads} "
              f"T={args.seq_len} B={args.batch} M={args.members}: loop {loop:,.1f} model-steps/s{subset}; "
              f"ensemble {ensemble:,.1f} model-steps/s; ratio {ensemble / loop:.2f}x", flush=True)
    for row in results:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
